"""rosbag2 round trips (sqlite3 and mcap) with standard and custom types, and stamp matching on read."""
from pathlib import Path

import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros.bag_io import BagWriter, bag_topics, read_camera_frames
from nut_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from nut_ros.ros.cdr import serialize
from nut_ros.ros.compressed import compress_depth, compress_image
from nut_ros.ros.gaussian_msgs import gaussian_cloud_to_msg, msg_to_gaussian_cloud
from nut_ros.ros.images import depth_to_image, image_to_depth_m, image_to_rgb, numpy_to_image
from nut_ros.ros.msg_types import make_header, msg_class

FLAVORS = ["rosbags", pytest.param("rclpy", marks=pytest.mark.ros)]
STORAGES = ["sqlite3", "mcap"]
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
INTR = Intrinsics(100.0, 100.0, 15.5, 11.5, 32, 24)


def _rgb(i):
    return np.full((24, 32, 3), (i * 10, 255 - i, 7), np.uint8)


def _depth(i):
    return np.full((24, 32), 1.0 + 0.5 * i, np.float32)


def _random_cloud(n):
    from nut_ros.pipeline.types import GaussianCloud
    from nut_ros.ros.gaussian_msgs import LAYOUT

    rng = np.random.default_rng(n)
    return GaussianCloud(metric=True, **{k: rng.random((n, w) if w > 1 else n, dtype=np.float32)
                                         for k, w in LAYOUT.items()})


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_custom_types_roundtrip(tmp_path, storage, flavor):
    from rosbags.highlevel import AnyReader

    cloud = _random_cloud(5000)
    stats_cls = msg_class("nut_ros_msgs/msg/PipelineStats", flavor)
    path = tmp_path / "out"
    with BagWriter(path, storage) as bag:
        for i in range(3):
            bag.write("/nut_ros/gaussians", T0 + i * 100 * MS,
                      gaussian_cloud_to_msg(cloud, T0 + i * 100 * MS, "cam", depth_source="topic", flavor=flavor))
        stat = stats_cls(header=make_header(T0, "cam", flavor), backend="torch", model="small", depth_source="topic",
                         metric=True, frames_received=10, frames_processed=9, frames_dropped_queue=1,
                         frames_dropped_invalid=0, frames_lost=2, gaussians_live=5000, latency_encode_ms=1.5,
                         latency_decode_ms=2.5, latency_render_ms=3.5, latency_total_ms=9.0, rate_hz=12.0)
        bag.write("/nut_ros/stats", T0, stat)
        bag.add_topic("/raw_image", "sensor_msgs/msg/Image")
        bag.write_raw("/raw_image", T0, serialize(numpy_to_image(_rgb(1), "rgb8", T0, "cam", flavor)))
    assert bag_topics(path) == {"/nut_ros/gaussians": "nut_ros_msgs/msg/GaussianSet",
                                "/nut_ros/stats": "nut_ros_msgs/msg/PipelineStats",
                                "/raw_image": "sensor_msgs/msg/Image"}
    # A reader that knows nothing about nut_ros_msgs decodes them from the definitions stored in the bag.
    with AnyReader([path]) as reader:
        assert all(c.msgdef.data for c in reader.connections)
        decoded = {}
        for connection, _, raw in reader.messages():
            decoded.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    assert len(decoded["/nut_ros/gaussians"]) == 3
    back = msg_to_gaussian_cloud(decoded["/nut_ros/gaussians"][2])
    assert all(np.array_equal(getattr(back, k), getattr(cloud, k)) for k in ("positions", "rotations", "opacities"))
    got = decoded["/nut_ros/stats"][0]
    assert (got.backend, got.frames_dropped_queue, got.gaussians_live, got.rate_hz) == ("torch", 1, 5000, 12.0)
    assert np.array_equal(image_to_rgb(decoded["/raw_image"][0]), _rgb(1))


def _camera_bag(path: Path, storage: str, flavor: str, compressed: bool):
    """10 images at 10 Hz; depth at the same stamps + 3 ms jitter but written late and missing for frame 4;
    CameraInfo only once, at the start."""
    with BagWriter(path, storage) as bag:
        bag.write("/cam/info", T0, intrinsics_to_camera_info(INTR, T0, "cam", flavor))
        for i in range(10):
            stamp = T0 + i * 100 * MS
            image = (compress_image(_rgb(i), "rgb8", "png", stamp_ns=stamp, frame_id="cam", flavor=flavor) if compressed
                     else numpy_to_image(_rgb(i), "rgb8", stamp, "cam", flavor))
            bag.write("/cam/image" + ("/compressed" if compressed else ""), stamp + MS, image)
            if i != 4:
                depth = (compress_depth(_depth(i), stamp_ns=stamp + 3 * MS, flavor=flavor) if compressed
                         else depth_to_image(_depth(i), stamp + 3 * MS, "cam", "16UC1", flavor))
                bag.write("/cam/depth", stamp + 40 * MS, depth)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("compressed", [False, True])
def test_read_camera_frames_matches_by_stamp(tmp_path, storage, flavor, compressed):
    _camera_bag(tmp_path / "cam", storage, flavor, compressed)
    topic = "/cam/image" + ("/compressed" if compressed else "")
    frames = list(read_camera_frames(tmp_path / "cam", topic, "/cam/depth", "/cam/info", tolerance_ns=10 * MS))
    kept = [i for i in range(10) if i != 4]  # frame 4 waits for its depth, and is superseded by frame 5 (as live)
    assert [f.stamp_ns for f in frames] == [T0 + i * 100 * MS for i in kept]
    for i, frame in zip(kept, frames):
        assert np.array_equal(image_to_rgb(frame.image), _rgb(i))
        assert camera_info_to_intrinsics(frame.info) == INTR
        np.testing.assert_allclose(image_to_depth_m(frame.depth), _depth(i), rtol=0, atol=0.01)
    # A tighter tolerance than the 3 ms depth offset matches nothing; no depth topic -> every image, no depth.
    assert list(read_camera_frames(tmp_path / "cam", topic, "/cam/depth", tolerance_ns=MS)) == []
    alone = list(read_camera_frames(tmp_path / "cam", topic))
    assert len(alone) == 10 and all(f.depth is None and f.info is None for f in alone)


def test_missing_topic_names_the_present_ones(tmp_path):
    _camera_bag(tmp_path / "cam", "mcap", "rosbags", False)
    with pytest.raises(KeyError, match=r"/cam/image \(sensor_msgs/msg/Image\)"):
        next(read_camera_frames(tmp_path / "cam", "/camera/color/image_raw"))
    with pytest.raises(KeyError, match="CameraInfo"):
        next(read_camera_frames(tmp_path / "cam", "/cam/image", info_topic="/cam/depth"))


def test_writer_rejects_type_change_and_undeclared_raw(tmp_path):
    with BagWriter(tmp_path / "b", "sqlite3") as bag:
        bag.write("/x", T0, numpy_to_image(_rgb(0), "rgb8", flavor="rosbags"))
        with pytest.raises(ValueError, match="already has type"):
            bag.add_topic("/x", "sensor_msgs/msg/CameraInfo")
        with pytest.raises(KeyError, match="add_topic"):
            bag.write_raw("/y", T0, b"")


@pytest.mark.parametrize("discard", [True, False])
def test_an_error_while_writing_discards_the_bag_only_when_asked(tmp_path, discard):
    """make_bag and the replay discard a bag cut short by an error; a recording cut short keeps what it has."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(RuntimeError, match="cut short"):
        with BagWriter(tmp_path / "bag", "sqlite3", discard_on_error=discard) as w:
            w.write("/cam/image", 1, numpy_to_image(rgb, "rgb8", 1, "cam", "rosbags"))
            raise RuntimeError("cut short")
    assert (tmp_path / "bag").exists() != discard
    if not discard:
        assert "/cam/image" in bag_topics(tmp_path / "bag")
