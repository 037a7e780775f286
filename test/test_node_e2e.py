"""End to end: the node as its own process (perception on), fed an RGB-D bag over DDS (loopback, private domain),
every output topic checked from the recorded bag; the replay path (``FrameProcessor`` over the same bag) gives the
same frames, output arrays and perception messages."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros import topics

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SHIPPED_WEIGHTS = REPO / "nut_ros" / "weights" / "tiny.safetensors"  # random init until they are shipped
FRAMES = 4
W, H = 320, 180
K = Intrinsics(fx=280.0, fy=280.0, cx=159.5, cy=89.5, width=W, height=H)
NEAR, FAR = 1.5, 2.5  # the synthetic depth ramp, metres
FRAME_ID = "test_camera_optical_frame"
T0 = 1_700_000_000 * 10**9
IMAGE, DEPTH, INFO = "/cam/color/image_raw", "/cam/depth/image_raw", "/cam/color/camera_info"


def _write_rgbd_bag(path: Path) -> list[int]:
    """Bundled clip frames with a 16UC1 depth ramp (NEAR..FAR left to right, a few invalid pixels) and K."""
    from nut_ros.ros.bag_io import BagWriter
    from nut_ros.ros.conversions import depth_to_image, intrinsics_to_camera_info, numpy_to_image

    ramp = np.broadcast_to(np.linspace(NEAR, FAR, W, dtype=np.float32), (H, W)).copy()
    ramp[:10, :10] = np.nan  # invalid pixels: written as 0 mm
    stamps = []
    with BagWriter(path, "sqlite3") as bag:
        for i in range(FRAMES):
            stamp = T0 + i * 100_000_000
            bgr = cv2.imread(str(REPO / "nut_ros" / "data" / "cups" / f"{3 * i:03d}.jpg"))
            rgb = cv2.cvtColor(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            bag.write(INFO, stamp, intrinsics_to_camera_info(K, stamp, FRAME_ID, "rosbags"))
            bag.write(DEPTH, stamp, depth_to_image(ramp, stamp, FRAME_ID, "16UC1", "rosbags"))
            bag.write(IMAGE, stamp, numpy_to_image(rgb, "rgb8", stamp, FRAME_ID, "rosbags"))
            stamps.append(stamp)
    return stamps


def _read(bag: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    out: dict[str, list] = {}
    with AnyReader([bag], default_typestore=rosbags_typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for c, _, raw in reader.messages():
            out.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
    out["__types__"] = types
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from nut_ros.ros.node_session import run_node_on_bag

    folder = tmp_path_factory.mktemp("e2e")
    stamps = _write_rgbd_bag(folder / "in")
    result = run_node_on_bag(
        folder / "in", folder / "out", folder / "node.log", IMAGE, REPO / "config" / "nut_ros.yaml",
        overrides={"random_init": not SHIPPED_WEIGHTS.is_file(), "input_reliability": "reliable",
                   "depth_source": "topic", "perception": True,
                   "diagnostics_period": 0.5},
        remap={topics.IMAGE: IMAGE, topics.DEPTH: DEPTH, topics.CAMERA_INFO: INFO}, rate=PLAY_RATE)
    return result, stamps, _read(folder / "out")


PLAY_RATE = 0.1  # 1 s between frames: a rate the node keeps up with on a loaded 2-core machine


def test_node_runs_and_exits_cleanly(session):
    result, stamps, _ = session
    log = result.log_path.read_text()
    assert result.exit_code == 0, log
    s = result.stats
    assert s.frames_received == FRAMES
    assert s.frames_processed >= 2, "the first and the newest frame are always processed"
    assert s.frames_processed + s.frames_dropped_queue == FRAMES and s.frames_dropped_invalid == 0, log
    assert s.metric and s.depth_source == "topic" and s.backend == "torch" and s.model == "tiny"
    assert s.gaussians_live == 2 * 144 * 256 // 4, "the live map holds the pair's 2N Gaussians"
    assert 0 < s.latency_encode_ms and 0 < s.latency_render_ms <= s.latency_total_ms


def test_every_output_topic_has_the_declared_type(session):
    _, _, out = session
    expected = {topics.output_topic(n): t for n, t in topics.OUTPUT_TYPES.items()}
    expected[topics.DIAGNOSTICS] = topics.DIAGNOSTICS_TYPE
    assert out["__types__"] == expected
    relative = {topics.output_topic(n) for n in topics.RELATIVE.values()}
    for topic in expected:  # a metric run (depth topic): nothing on the relative twins
        assert bool(out.get(topic)) != (topic in relative), f"{topic}: {len(out.get(topic, []))} recorded"


def test_outputs_carry_input_stamps_and_frame_ids(session):
    result, stamps, out = session
    from nut_ros.ros.conversions import stamp_to_ns

    per_frame = [topics.output_topic(n) for n in ("depth", "image", "camera_info", "points", "gaussians",
                                                  "obstacles")]
    seen = None
    for topic in per_frame:
        msgs = out[topic]
        got = [stamp_to_ns(m.header.stamp) for m in msgs]
        assert len(msgs) == result.stats.frames_processed, topic
        assert set(got) <= set(stamps) and got == sorted(got), f"{topic}: stamps {got} not input stamps {stamps}"
        assert stamps[0] in got and stamps[-1] in got
        assert {m.header.frame_id for m in msgs} == {FRAME_ID}
        seen = got if seen is None else seen
        assert got == seen, "all outputs of a frame share its stamp"
    for g in out[topics.output_topic("gaussians")]:
        assert stamp_to_ns(g.valid_time) == stamp_to_ns(g.header.stamp)
    markers = out[topics.output_topic("obstacle_markers")]
    assert [stamp_to_ns(m.markers[0].header.stamp) for m in markers] == seen, "markers every processed frame"
    assert {m.header.frame_id for a in markers for m in a.markers} == {FRAME_ID}
    for name in ("map_points", "map"):  # without odometry the map is in the key frame, at most once per map_period
        maps = out[topics.output_topic(name)]
        assert {m.header.frame_id for m in maps} == {f"{FRAME_ID}_keyframe"}
        assert {stamp_to_ns(m.header.stamp) for m in maps} <= set(seen)


def test_rendered_images_sizes_and_values(session):
    _, _, out = session
    from nut_ros.ros.conversions import camera_info_to_intrinsics, image_to_depth_m, image_to_rgb

    for img, depth, info in zip(out[topics.output_topic("image")], out[topics.output_topic("depth")],
                                out[topics.output_topic("camera_info")]):
        assert (img.encoding, img.width, img.height) == ("rgb8", 256, 144)
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", 256, 144)
        assert image_to_rgb(img).shape == (144, 256, 3)
        k = camera_info_to_intrinsics(info)
        assert k == K.scaled(256, 144), "rendered CameraInfo is the input K at the model resolution"
        d = image_to_depth_m(depth)
        assert not np.isinf(d).any() and np.isfinite(d).mean() > 0.5
        finite = d[np.isfinite(d)]
        # guaranteed by the pipeline's shared metric frame: depths in [far / 40, 1.02 far] metres
        assert finite.min() >= FAR / 40 and finite.max() <= 1.03 * FAR
        assert NEAR / 1.2 <= np.median(finite) <= FAR * 1.2, "plausible metric depth for a 1.5-2.5 m scene"


def test_points_and_gaussians_are_finite_metric_and_consistent(session):
    _, _, out = session
    from nut_ros.ros.conversions import msg_to_gaussian_cloud, pointcloud2_to_points

    for pc, gs in zip(out[topics.output_topic("points")], out[topics.output_topic("gaussians")]):
        xyz, rgb = pointcloud2_to_points(pc)
        cloud = msg_to_gaussian_cloud(gs)
        assert gs.metric and gs.depth_source == "topic" and cloud.count == gs.count == xyz.shape[0] > 0
        assert rgb is not None and rgb.dtype == np.uint8
        np.testing.assert_allclose(xyz, cloud.positions, rtol=0, atol=0)
        for name in ("positions", "scales", "rotations", "opacities", "colors", "velocities"):
            assert np.isfinite(getattr(cloud, name)).all(), name
        z = cloud.positions[:, 2]
        assert z.min() > 0 and z.max() <= 1.03 * FAR
        u = K.fx * cloud.positions[:, 0] / z + K.cx
        lo, hi = np.percentile(u, [5, 95])  # random weights move some Gaussians out of the view
        assert -0.2 * W < lo < 0.2 * W and 0.8 * W < hi < 1.2 * W, "points are in the camera's optical frame"


def test_stats_and_diagnostics(session):
    result, _, out = session
    stats = out[topics.output_topic("stats")]
    assert stats[-1].frames_processed == result.stats.frames_processed
    counts = [s.frames_received for s in stats]
    assert counts == sorted(counts), "counters never go down"
    statuses = [a.status[0] for a in out[topics.DIAGNOSTICS]]
    assert {s.name for s in statuses} == {"/nut_ros: pipeline"}  # the fully qualified node name
    assert 0 in {s.level for s in statuses}, "OK while frames were being processed"
    keys = {kv.key: kv.value for kv in statuses[-1].values}
    assert keys["backend"] == "torch" and keys["metric"] == "true" and int(keys["frames_received"]) == FRAMES
    assert float(keys["latency_obstacles_ms"]) > 0 and int(keys["perception_frames_skipped"]) >= 0


def test_replay_through_the_processor_equals_the_node(session, tmp_path):
    """One per-frame path: the bag through ``FrameProcessor`` offline gives the node's frames and arrays."""
    import dataclasses

    import torch

    from nut_ros.ros.bag_io import BagClock
    from nut_ros.ros.conversions import image_to_depth_m, image_to_rgb, pointcloud2_to_points, stamp_to_ns
    from nut_ros.ros.lifecycle_node import build_pipeline, processor_settings
    from nut_ros.ros.params import load_params_file
    from nut_ros.ros.processor import FrameProcessor
    from nut_ros.tools.replay_eval import replay_matches

    result, stamps, out = session
    node_stamps = sorted(stamp_to_ns(m.header.stamp) for m in out[topics.output_topic("image")])
    assert len(node_stamps) == result.stats.frames_processed >= FRAMES - 1, "the node (nearly) kept up"
    params = dataclasses.replace(load_params_file(REPO / "config" / "nut_ros.yaml"), depth_source="topic",
                                 perception=True, random_init=not SHIPPED_WEIGHTS.is_file())
    torch.manual_seed(0)
    clock = BagClock()
    processor = FrameProcessor(build_pipeline(params), processor_settings(params), clock, "rosbags")
    outputs = {}
    for matched in replay_matches(result.log_path.parent / "in", processor, clock, IMAGE, DEPTH, INFO, None):
        if matched.stamp_ns not in node_stamps:  # a frame the busy node dropped (newest-only hand-off)
            continue
        outcome = processor.process(matched)
        assert outcome.drop is None, outcome.drop
        for name, stamp, msg in outcome.messages:
            outputs.setdefault(name, {})[stamp] = msg
    assert sorted(outputs["image"]) == node_stamps
    for name in ("obstacles", "map_points"):  # the perception stage saw the same frames: same messages, same stamps
        assert sorted(outputs.get(name, {})) == sorted(stamp_to_ns(m.header.stamp)
                                                       for m in out[topics.output_topic(name)]), name
    node = {name: {stamp_to_ns(m.header.stamp): m for m in out[topics.output_topic(name)]}
            for name in ("image", "depth", "points")}
    for stamp in node_stamps:
        a, b = image_to_rgb(outputs["image"][stamp]), image_to_rgb(node["image"][stamp])
        assert np.abs(a.astype(int) - b).max() <= 1, "same rendered colours (rounding aside)"
        np.testing.assert_allclose(image_to_depth_m(outputs["depth"][stamp]), image_to_depth_m(node["depth"][stamp]),
                                   rtol=1e-4, atol=1e-4, equal_nan=True)
        xyz_a, rgb_a = pointcloud2_to_points(outputs["points"][stamp])
        xyz_b, rgb_b = pointcloud2_to_points(node["points"][stamp])
        assert xyz_a.shape == xyz_b.shape
        np.testing.assert_allclose(xyz_a, xyz_b, rtol=1e-4, atol=1e-4)
