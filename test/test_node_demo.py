"""The README's demo (`nut_ros_demo`): bundled clip, clear refusal without weights, a short full run."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from nut_ros.tools import demo

REPO = Path(__file__).resolve().parents[1]


def test_bundled_clip_is_small_licensed_and_attributed():
    frames = sorted(demo.CLIP_DIR.glob("*.jpg"))
    assert len(frames) == 60
    assert sum(f.stat().st_size for f in frames) < 2 * 1024 * 1024
    assert cv2.imread(str(frames[0])).shape == (288, 512, 3)
    data = demo.CLIP_DIR.parent
    assert "Apache License" in (data / "LICENSE.sam2").read_text()
    assert "02_cups.mp4" in (data / "README.md").read_text()


def test_bundled_moving_clip_is_small_licensed_and_attributed():
    """The desk clip: 30 undistorted 320x240 frames, a pose and a Kinect depth map for each, CC BY 4.0 credited."""
    from nut_ros.ros.odometry import read_poses

    frames = sorted((demo.DESK_DIR / "rgb").glob("*.jpg"))
    kinect = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) / 1000.0
              for f in sorted((demo.DESK_DIR / "kinect").glob("*.png"))]
    assert len(frames) == len(kinect) == len(read_poses(demo.DESK_DIR / "poses.txt")) == demo.DESK_FRAMES
    size = sum(f.stat().st_size for f in [*frames, *(demo.DESK_DIR / "kinect").glob("*.png")])
    assert size < 2 * 1024 * 1024
    assert cv2.imread(str(frames[0])).shape == (240, 320, 3) and kinect[0].shape == (240, 320)
    assert 0.5 < np.median(kinect[0][kinect[0] > 0]) < 3.0 and (kinect[0] > 0).mean() > 0.5  # a desk, in metres
    credits = (demo.CLIP_DIR.parent / "README.md").read_text()
    assert "freiburg1_rpy" in credits and "CC BY 4.0" in credits


def test_rviz_fixed_frame_is_the_demo_frame():
    config = yaml.safe_load((REPO / "config" / "nut_ros.rviz").read_text())
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == demo.FRAME_ID


RVIZ_TYPES = {
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2",
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
}


def test_rviz_config_shows_node_outputs():
    from nut_ros.ros import topics

    config = yaml.safe_load((REPO / "config" / "nut_ros.rviz").read_text())
    published = {topics.output_topic(name): kind for name, kind in topics.OUTPUT_TYPES.items()}
    shown = {}
    for display in config["Visualization Manager"]["Displays"]:
        if "Topic" not in display:
            continue
        topic, kind = display["Topic"]["Value"], RVIZ_TYPES[display["Class"]]
        assert published.get(topic) == kind, f"RViz shows {topic} as {kind}, which the node does not publish"
        shown[topic] = kind
        if topic in (topics.output_topic(n) for n in topics.MAP_OUTPUTS):  # late RViz gets the last map
            assert display["Topic"]["Durability Policy"] == "Transient Local", topic
    metric = ("points", "depth", "image", "obstacle_markers", "map_points")
    assert set(shown) == {topics.output_topic(n) for n in metric + tuple(topics.RELATIVE.values())}


def test_demo_refuses_to_run_without_weights(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "--random-init" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_keeps_foreign_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    assert demo.main(["--out", str(tmp_path), "--random-init"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_demo_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    assert demo.main(["--out", str(tmp_path / "out"), "--random-init"]) == 2
    assert f"cannot create the output folder {tmp_path / 'out'}" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "mine"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package as a colcon install sees it: no config/ beside it, nothing under sys.prefix, the ament index
    without nut_ros; returns a function that installs config/nut_ros.yaml into a share folder."""
    import ament_index_python.packages as ament

    def not_indexed(name):
        raise ament.PackageNotFoundError(name)

    monkeypatch.setattr(demo, "PACKAGE", tmp_path / "site-packages" / "nut_ros")
    monkeypatch.setattr("sys.prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(ament, "get_package_share_directory", not_indexed)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)

    def install(share: Path) -> Path:
        (share / "config").mkdir(parents=True)
        path = share / "config" / "nut_ros.yaml"
        path.write_text((REPO / "config" / "nut_ros.yaml").read_text())
        return path

    return install


def test_params_file_is_found_on_the_ament_prefix_path(tmp_path, monkeypatch, installed):
    path = installed(tmp_path / "install" / "share" / "nut_ros")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'other'}:{tmp_path / 'install'}")
    assert demo.params_file() == path


def test_params_file_is_found_through_the_ament_index(tmp_path, monkeypatch, installed):
    import ament_index_python.packages as ament

    path = installed(tmp_path / "indexed" / "share" / "nut_ros")
    monkeypatch.setattr(ament, "get_package_share_directory", lambda name: str(tmp_path / "indexed" / "share" / name))
    assert demo.params_file() == path


def test_a_missing_params_file_is_a_clear_error(tmp_path, installed, capsys):
    with pytest.raises(FileNotFoundError, match="config/nut_ros.yaml not found: looked for .*AMENT_PREFIX_PATH"):
        demo.params_file()
    assert demo.main(["--out", str(tmp_path / "out"), "--random-init"]) == 2
    assert "nut_ros_demo: config/nut_ros.yaml not found" in capsys.readouterr().err


def test_ping_pong_plays_the_clip_back_and_forth():
    assert demo.ping_pong(9, 4) == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert demo.ping_pong(3, 1) == [0, 0, 0]


def test_clip_bag_has_images_and_camera_info(tmp_path):
    from nut_ros.ros.bag_io import bag_topics, read_camera_frames

    assert demo.write_clip_bag(demo.CLIP_DIR, tmp_path / "bag", frames=3) == 3
    assert bag_topics(tmp_path / "bag") == {demo.IMAGE_TOPIC: "sensor_msgs/msg/Image",
                                            demo.INFO_TOPIC: "sensor_msgs/msg/CameraInfo"}
    frames = list(read_camera_frames(tmp_path / "bag", demo.IMAGE_TOPIC, info_topic=demo.INFO_TOPIC))
    assert [f.stamp_ns - demo.START_NS for f in frames] == [0, 66733333, 133466667]
    assert all(f.info is not None and f.image.header.frame_id == demo.FRAME_ID for f in frames)


@pytest.mark.ros
@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--random-init", "--frames", "8", "--desk-frames", "4", "--rate", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    desk = report["desk"]  # the moving RGB-D clip with its poses as odometry, perception on
    assert desk["frames_in"] == desk["frames_received"] == 4 and desk["node_exit_code"] == 0
    assert desk["frames_processed"] >= 1 and desk["metric"]
    assert desk["frames_with_obstacles"] + desk["frames_without_obstacles"] == desk["frames_processed"]
    assert desk["outputs_recorded"]["/nut_ros/depth"] >= 1  # metric: the depth image (a first frame may miss it)
    assert all(cv2.imread(p).shape == (144, 3 * 256, 3) for p in desk["pictures"])
    # the node ran compiled (its log has no fallback to eager), and so did the desk clip's
    assert report["frames_in"] == report["frames_received"] == 8 and report["compile"] is desk["compile"] is True
    assert report["frames_processed"] >= 2 and report["node_exit_code"] == 0
    assert report["frames_processed"] + report["frames_dropped_queue"] + report["frames_dropped_invalid"] == 8
    assert report["outputs_recorded"]["/nut_ros/image"] == report["frames_processed"]
    assert len(report["pictures"]) >= 2 and all(cv2.imread(p).shape == (144, 3 * 256, 3) for p in report["pictures"])
    printed = capsys.readouterr().out
    assert "output bag:" in printed and "throughput" in printed
    # a second run into the same folder replaces the previous demo's files; this one with the eager network
    assert demo.main(["--out", str(out), "--random-init", "--frames", "3", "--desk-frames", "0", "--rate", "2",
                      "--no-compile"]) == 0
    second = json.loads((out / "report.json").read_text())
    assert second["frames_in"] == 3 and second["compile"] is False and "desk" not in second


def test_depth_pictures_colour_values_and_say_when_there_is_no_depth():
    from nut_ros.tools.demo import colorize_depth

    ramp = np.tile(np.linspace(1.0, 5.0, 64), (36, 1))
    ramp[:, :4] = np.nan
    picture = colorize_depth(ramp)
    assert (picture[:, :4] == 0).all() and picture[:, 8:].any(axis=-1).all()  # NaN black, values coloured
    assert (picture[:, 8] != picture[:, 60]).any()  # near and far differ
    empty = colorize_depth(np.full((144, 256), np.nan))
    assert 0 < (empty.max(axis=-1) > 0).mean() < 0.2  # a few lines of text on black, not a colour map


def test_the_report_says_eager_when_the_node_fell_back(tmp_path):
    """The report's ``compile`` is what the node ran: false when its log says it fell back to the eager network."""
    from nut_ros.ros.processor import COMPILE_FALLBACK

    log = tmp_path / "node.log"
    log.write_text(f"[WARN] [1796681382.0] [nut_ros]: {COMPILE_FALLBACK}, the network runs eagerly: CppCompileError\n")
    assert not demo.ran_compiled(True, log)
    log.write_text("[INFO] [1796681382.0] [nut_ros]: warmed up in 9.0 s (graph capture, compile, kernel builds)\n")
    assert demo.ran_compiled(True, log) and not demo.ran_compiled(False, log)
