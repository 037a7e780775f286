"""nut_ros_replay end to end on a tiny RGB-D bag written here (small randomly initialised model)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nut_ros.core.checkpoint import save_checkpoint
from nut_ros.core.geometry import Intrinsics
from nut_ros.core.model import build_model
from nut_ros.ros.bag_io import BagWriter
from nut_ros.ros.camera_info import intrinsics_to_camera_info
from nut_ros.ros.images import numpy_to_image
from nut_ros.tools.replay_eval import main

H, W, N_FRAMES = 60, 80, 6
K = Intrinsics(70.0, 70.0, 39.5, 29.5, W, H)


def scene(i: int) -> np.ndarray:
    """A smooth pattern sliding right by 2 px per frame."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    u = u - 2 * i
    rgb = np.stack([0.5 + 0.4 * np.sin(u / 7), 0.5 + 0.4 * np.cos(v / 5), 0.5 + 0.3 * np.sin((u + v) / 9)], -1)
    return (rgb * 255).round().astype(np.uint8)


def replay_cam_bag(tmp_path, replay, image, with_depth, *options) -> Path:
    """Write 7 frames at 30 Hz on /cam/* (``image(i, stamp)``: frame i's Image message; a 2 m 16UC1 depth image
    where ``with_depth(i)``; CameraInfo every frame) and replay them with stride 2 (and ``options``): the output
    folder."""
    bag = tmp_path / "input"
    with BagWriter(bag, storage="sqlite3") as w:
        for i in range(7):
            stamp = 10**9 + i * 33_333_333
            w.write("/cam/image", stamp, image(i, stamp))
            if with_depth(i):
                w.write("/cam/depth", stamp, numpy_to_image(np.full((H, W), 2000, np.uint16), "16UC1", stamp, "cam",
                                                            "rosbags"))
            w.write("/cam/info", stamp, intrinsics_to_camera_info(K, stamp, "cam", "rosbags"))
    out = tmp_path / "out"
    assert main([str(bag), "--out", str(out), "--image-topic", "/cam/image", "--depth-topic", "/cam/depth",
                 "--info-topic", "/cam/info", "--checkpoint", str(replay.parent / "tiny_small_res.safetensors"),
                 "--stride", "2", "--quiet", *options]) == 0
    return out


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    bag = tmp / "input"
    with BagWriter(bag, storage="sqlite3") as w:
        for i in range(N_FRAMES):
            stamp = 10**9 + i * 33_333_333
            depth = np.full((H, W), 2000, np.uint16)
            depth[:5] = 0  # invalid rows
            w.write("/cam/image", stamp, numpy_to_image(scene(i), "rgb8", stamp, "cam", "rosbags"))
            w.write("/cam/depth", stamp, numpy_to_image(depth, "16UC1", stamp, "cam", "rosbags"))
            w.write("/cam/info", stamp, intrinsics_to_camera_info(K, stamp, "cam", "rosbags"))
    torch.manual_seed(0)
    ckpt = tmp / "tiny_small_res.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    out = tmp / "out"
    rc = main([str(bag), "--out", str(out), "--image-topic", "/cam/image", "--depth-topic", "/cam/depth",
               "--info-topic", "/cam/info", "--checkpoint", str(ckpt), "--stride", "2", "--render-times", "0.5",
               "1.0", "--quiet"])
    assert rc == 0
    return out


def test_report_contents(replay):
    report = json.loads((replay / "report.json").read_text())
    s = report["summary"]
    assert (s["frames_total"], s["key_frames"], s["interp_frames"], s["interp_skipped"]) == (6, 3, 2, 1)
    assert report["meta"]["input_depth"] and report["meta"]["model_resolution"] == [48, 96]
    for kind in ("key", "interp"):
        assert 0 < s[kind]["psnr"] < 60 and 0 < s[kind]["psnr_256"] < 60
        assert -1 <= s[kind]["ssim"] <= 1 and -1 <= s[kind]["ssim_256"] <= 1
    assert 10 < s["blend"]["psnr"] < 60  # blending neighbours of a slowly sliding pattern is close
    frames = report["frames"]
    assert [f["index"] for f in frames if f["kind"] == "interp"] == [1, 3]
    assert all(f["pair_time"] == pytest.approx(0.5, abs=1e-6) for f in frames if f["kind"] == "interp")
    # metric depth of a 2 m plane: every rendered depth lies in the plane's normalisation range
    assert s["depth"]["depth_abs_rel"] < 0.06 and s["depth"]["depth_delta1"] == 1.0
    assert s["latency_ms"]["total"]["p50"] > 0 and s["gaussians_live"] == 2 * 24 * 48
    md = (replay / "report.md").read_text()
    assert "| interpolated |" in md and "blend baseline" in md and "AbsRel" in md
    for png in ("psnr.png", "latency.png", "depth.png"):
        assert (replay / png).read_bytes()[:4] == b"\x89PNG"


def test_output_bag(replay):
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    counts, msgs = {}, {}
    with AnyReader([replay / "outputs"], default_typestore=rosbags_typestore()) as reader:
        for conn, _, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            msgs[conn.topic] = reader.deserialize(raw, conn.msgtype)
    assert counts == {"/nut_ros/depth": 5, "/nut_ros/image": 5, "/nut_ros/camera_info": 5, "/nut_ros/points": 3,
                      "/nut_ros/gaussians": 3, "/nut_ros/stats": 3, "/diagnostics": 3}
    g = msgs["/nut_ros/gaussians"]
    assert g.metric and g.depth_source == "topic" and g.count == len(g.positions) // 3 > 0
    z = np.asarray(g.positions).reshape(-1, 3)[:, 2]
    assert np.all((z > 1.9) & (z < 2.11))
    depth = np.frombuffer(bytes(msgs["/nut_ros/depth"].data), np.float32)
    assert np.nanmedian(depth) == pytest.approx(2.0, abs=0.11)
    stats = msgs["/nut_ros/stats"]
    assert stats.frames_processed == 3 and stats.metric and stats.model == "tiny"


def test_a_bag_nothing_can_be_made_of_fails_and_says_why(tmp_path, capsys):
    """A bag of 16-bit images (a depth stream given as the camera) is refused frame by frame before the pipeline:
    the report counts every refusal with its reason and the command fails instead of writing an empty report."""
    bag = tmp_path / "input"
    with BagWriter(bag, storage="sqlite3") as w:
        for i in range(4):
            stamp = 10**9 + i * 33_333_333
            w.write("/cam/image", stamp, numpy_to_image(np.full((H, W), 1000, np.uint16), "mono16", stamp, "cam",
                                                        "rosbags"))
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model("tiny", image_size=(48, 96)), ckpt)
    out = tmp_path / "out"
    rc = main([str(bag), "--out", str(out), "--image-topic", "/cam/image", "--checkpoint", str(ckpt), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no frame" in err and "mono16" in err
    s = json.loads((out / "report.json").read_text())["summary"]
    assert s["key_frames"] == 0 and sum(s["input_drops"].values()) == 4
    assert all("mono16" in reason for reason in s["input_drops"])
    assert "Frames refused before the pipeline" in (out / "report.md").read_text()


def test_a_wrong_image_topic_names_the_bag_s_topics_and_writes_nothing(replay, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/camera/image_raw", "--quiet"])
    assert rc == 1 and "'/camera/image_raw'" in (err := capsys.readouterr().err) and "/cam/depth, /cam/image" in err
    assert not out.exists()


@pytest.mark.parametrize("options, says", [
    (["--image-topic", "/cam/image", "--depth-topic", "/cam/image"], "must have a topic of their own"),
    (["--image-topic", "/cam/image", "--params", "{params}"], "is not valid YAML"),
    (["--image-topic", "/cam/image", "--out", "{file}/out"], "cannot create the output folder"),
])
def test_setup_faults_get_one_line_reasons(replay, tmp_path, capsys, options, says):
    (tmp_path / "params.yaml").write_text("model: [tiny\n")
    (tmp_path / "file").write_text("")
    options = [o.format(params=tmp_path / "params.yaml", file=tmp_path / "file") for o in options]
    rc = main([str(replay.parent / "input"), "--out", str(tmp_path / "out"), *options, "--quiet"])
    assert rc == 1 and says in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--stride", "--max-frames"])
def test_counts_below_one_are_refused(replay, tmp_path, option):
    with pytest.raises(SystemExit) as exit_:
        main([str(replay.parent / "input"), "--out", str(tmp_path / "out"), option, "0"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_depth_max_that_leaves_no_depth_usable_is_refused(replay, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main([str(replay.parent / "input"), "--out", str(tmp_path / "out"), "--depth-max", value])
    assert exit_.value.code == 2 and "--depth-max" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_params_are_read_as_the_node_reads_them(replay, tmp_path, capsys):
    """A wildcard-namespace section applies (rcl applies ``/**/nut_ros`` to the node /nut_ros) and an unknown name
    is warned about, as by the node, instead of ending the replay."""
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  nut_ros:\n    ros__parameters:\n      interp_window: 0.5\n      max_rte: 2.0\n")
    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/cam/image", "--info-topic",
               "/cam/info", "--params", str(params), "--checkpoint", str(replay.parent / "tiny_small_res.safetensors"),
               "--max-frames", "3", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and f"nut_ros_replay: warning: {params}: unknown parameters ignored: max_rte" in err, err
    assert json.loads((out / "report.json").read_text())["meta"]["interp_window"].startswith("0.5 ")


def test_the_installed_params_file_is_found_on_the_ament_prefix_path(replay, tmp_path, monkeypatch):
    """After a colcon build the package's config lies under <install prefix>/share/nut_ros, not beside it."""
    import ament_index_python.packages as ament

    import nut_ros.tools.demo as demo
    from nut_ros.tools.replay_eval import build_parser, replay_params

    def not_indexed(name):
        raise ament.PackageNotFoundError(name)

    share = tmp_path / "install" / "share" / "nut_ros" / "config"
    share.mkdir(parents=True)
    (share / "nut_ros.yaml").write_text("/**:\n  ros__parameters:\n    interp_samples: 7\n")
    monkeypatch.setattr(demo, "PACKAGE", tmp_path / "site-packages" / "nut_ros")
    monkeypatch.setattr("sys.prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(ament, "get_package_share_directory", not_indexed)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    args = build_parser().parse_args([str(replay.parent / "input"), "--out", str(tmp_path / "out")])
    assert replay_params(args).interp_samples == 7


@pytest.mark.parametrize("option, topic, says", [
    ("--odom-topic", "/cam/info", "--odom-topic '/cam/info' is a sensor_msgs/msg/CameraInfo topic in "),
    ("--odom-topic", "/cam/odom", "--odom-topic '/cam/odom' is not in "),
    ("--info-topic", "/cam/depth", "--info-topic '/cam/depth' is a sensor_msgs/msg/Image topic in "),
    ("--info-topic", "/camera/camera_info", "--info-topic '/camera/camera_info' is not in "),
])
def test_a_given_info_or_odometry_topic_the_bag_lacks_is_refused(replay, tmp_path, capsys, option, topic, says):
    """An explicit --info-topic or --odom-topic missing from the bag, or of another type (a PoseStamped "odom", say),
    is a setup fault that names the bag's topics of the right type, not a replay on a 60° guess or without poses."""
    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/cam/image", option, topic,
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and says in err, err
    assert ("(CameraInfo topics: /cam/info)" if option == "--info-topic" else "(Odometry topics: none)") in err
    assert not out.exists()


def test_a_bag_without_the_default_camera_info_topic_is_replayed_with_a_warning(replay, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/cam/image", "--checkpoint",
               str(replay.parent / "tiny_small_res.safetensors"), "--max-frames", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and ("warning: --info-topic's default '/camera/camera_info' is not in "
                        f"{replay.parent / 'input'} (CameraInfo topics: /cam/info): the pipeline assumes a 60° "
                        "horizontal field of view") in err, err
    assert "--odom-topic" not in err  # a bag without odometry is no fault
    assert json.loads((out / "report.json").read_text())["meta"]["info_topic"] is None


@pytest.mark.parametrize("render_time", ["0.5", "1.5"])
def test_render_times_without_pair_time_1_are_replayed_and_scored(replay, tmp_path, render_time):
    """Render times the node accepts but that leave out pair time 1: the key frames are still scored at pair time 1,
    the report is written and the output bag holds the views the node would publish."""
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/cam/image", "--depth-topic",
               "/cam/depth", "--info-topic", "/cam/info", "--checkpoint",
               str(replay.parent / "tiny_small_res.safetensors"), "--render-times", render_time, "--max-frames", "3",
               "--quiet"])
    s = json.loads((out / "report.json").read_text())["summary"]
    assert rc == 0 and s["key_frames"] == 2 and 0 < s["key"]["psnr"] < 60 and s["depth"]["depth_abs_rel"] < 0.06
    with AnyReader([out / "outputs"], default_typestore=rosbags_typestore()) as reader:
        images = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == "/nut_ros/image"]
    first, second = (10**9 + i * 33_333_333 for i in (0, 2))
    view = first + round(float(render_time) * (second - first))  # the second key frame's view, at its pair time
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images] == [first, view]


def test_images_lost_in_stamp_matching_are_reported(replay, tmp_path, capsys):
    """Images that never become frames (superseded while waiting for depth, an invalid header stamp, still waiting
    when the bag ends) are counted by reason in the summary and on the report's Frames line; frames are numbered
    by match."""
    def image(i, stamp):
        msg = numpy_to_image(scene(i), "rgb8", stamp, "cam", "rosbags")
        if i == 4:
            msg.header.stamp.nanosec = 1_500_000_000
        return msg

    # image 2 is superseded by image 3; image 6 waits for its depth when the bag ends
    out = replay_cam_bag(tmp_path, replay, image, lambda i: i not in (2, 6))
    report = json.loads((out / "report.json").read_text())
    s = report["summary"]
    assert (s["images_received"], s["frames_total"], s["key_frames"]) == (7, 4, 2)
    assert s["match_drops"] == {"invalid header stamp": 1,
                                "superseded or evicted while waiting for depth or a first CameraInfo": 1,
                                "still waiting for depth or a first CameraInfo when the replay ended": 1}
    assert [(f["index"], f["stamp_ns"]) for f in report["frames"]] == [
        (0, 10**9), (2, 10**9 + 3 * 33_333_333), (1, 10**9 + 33_333_333)]
    md = (out / "report.md").read_text()
    assert ("Frames: 4 images matched by stamp of 7 received (lost in stamp matching: 1 invalid header stamp; "
            "1 superseded or evicted while waiting for depth or a first CameraInfo; 1 still waiting for depth or a "
            "first CameraInfo when the replay ended); frame indices count the matched images") in md
    assert "4 of 7 images matched (3 lost in stamp matching" in capsys.readouterr().out


def test_report_labels_what_each_figure_measures(replay):
    """The key row copying the input is the exact-match upper bound (truth against itself), not a baseline; depth
    scored against the depth the pipeline was given says so; the pipeline's throughput stands apart from the
    replay's wall-clock rate."""
    s = json.loads((replay / "report.json").read_text())["summary"]
    assert s["copy"]["psnr"] == pytest.approx(58.92, abs=0.01) and s["copy"]["ssim"] == pytest.approx(1.0)
    assert "throughput_fps" not in s and 0 < s["wall_fps"] < s["pipeline_fps"]
    md = (replay / "report.md").read_text()
    assert "| key: the input against itself (exact-match upper bound, not a baseline) | 58.92 | 1.000 |" in md
    assert "copy-the-input baseline" not in md and "| depth (truth = the input depth) |" in md
    assert f"Pipeline throughput: {s['pipeline_fps']:.2f} key frames/s (key frames over the sum of " in md
    assert f"Wall-clock rate: {s['wall_fps']:.2f} key frames/s (the whole replay: " in md


def test_a_bag_damaged_half_way_ends_the_replay_with_a_reason(replay, tmp_path, capsys, monkeypatch):
    import nut_ros.tools.replay_eval as replay_eval

    read = replay_eval.bag_messages

    def damaged(path, wanted):  # the storage fails after three messages, as a corrupted sqlite3 page makes it
        for i, message in enumerate(read(path, wanted)):
            if i == 3:
                raise RuntimeError("database disk image is malformed")
            yield message

    monkeypatch.setattr(replay_eval, "bag_messages", damaged)
    out = tmp_path / "out"
    rc = main([str(replay.parent / "input"), "--out", str(out), "--image-topic", "/cam/image", "--checkpoint",
               str(replay.parent / "tiny_small_res.safetensors"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "after 3 messages: RuntimeError: database disk image is malformed" in err, err
    assert not (out / "outputs").exists()  # the output bag of a failed replay is discarded


@pytest.mark.parametrize("bad", [1, 2])  # a held-out frame, a key frame (stride 2)
def test_a_refused_frame_keeps_the_key_frames_those_of_the_bag(replay, tmp_path, bad):
    """A frame the node refuses (here an encoding it cannot use) is counted, and the key frames stay every
    ``stride``-th frame of the bag, so the frames the pipeline gets keep their roles (ground-truth depth never
    reaches it with ``--no-input-depth``)."""
    def image(i, stamp):
        return (numpy_to_image(scene(i)[..., 0].astype(np.uint16), "mono16", stamp, "cam", "rosbags") if i == bad
                else numpy_to_image(scene(i), "rgb8", stamp, "cam", "rosbags"))

    out = replay_cam_bag(tmp_path, replay, image, lambda i: True, "--no-input-depth")
    frames = json.loads((out / "report.json").read_text())["frames"]
    keys = [f["index"] for f in frames if f["kind"] == "key"]
    assert keys == [i for i in (0, 2, 4, 6) if i != bad]
    assert all(f["depth_source"] == "none" for f in frames if f["kind"] == "key")


def test_the_console_line_names_the_protocols_and_prints_the_baselines():
    """PSNR at the model resolution and in the 256² protocol, the held-out frames' blend and flow-warp baselines
    beside them, and the depth AbsRel (scale+shift) beside a constant's and a ramp's."""
    from nut_ros.tools.replay_eval import console_scores

    scores = {"psnr": 30.123, "psnr_256": 31.456, "ssim": 0.9, "ssim_256": 0.9}
    depth = {"depth_abs_rel_affine": 0.1234, "depth_abs_rel_affine_constant": 0.2, "depth_abs_rel_affine_ramp": 0.3,
             "frames": {"depth_abs_rel_affine": 7}}
    summary = {"key": scores, "interp": scores, "blend": dict(scores, psnr=20.0), "flow_warp": dict(scores, psnr=25.0),
               "depth": depth}
    line = console_scores(summary)
    assert "PSNR (model resolution / 256²): key frames 30.12 / 31.46" in line
    assert "(blend 20.00 / 31.46, flow warp 25.00 / 31.46)" in line
    assert "depth AbsRel, scale+shift aligned, 0.123 (constant 0.200, ramp 0.300) on 7 key frames" in line
    assert "depth" not in console_scores({k: v for k, v in summary.items() if k != "depth"})


def test_a_depth_topic_left_unused_is_named(tmp_path, capsys):
    """A bag made by nut_ros_make_bag with --depth holds /camera/depth; replayed without --depth-topic, the replay
    says how to use it (as input depth and ground truth) instead of dropping depth scoring silently."""
    import cv2

    from nut_ros.tools.make_bag import make_bag

    color, depth = tmp_path / "color", tmp_path / "depth"
    color.mkdir(), depth.mkdir()
    for i in range(3):
        cv2.imwrite(str(color / f"{i}.png"), np.full((48, 96, 3), 40 * i, np.uint8))
        cv2.imwrite(str(depth / f"{i}.png"), np.full((48, 96), 2000, np.uint16))
    make_bag(color, tmp_path / "bag", depth_dir=depth)
    assert main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--random-init", "--quiet"]) == 0
    assert "has /camera/depth, not used: pass --depth-topic /camera/depth" in capsys.readouterr().err
