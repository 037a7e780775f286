"""GaussianCloud <-> nut_ros_msgs/GaussianSet."""
import numpy as np
import pytest

from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.gaussian_cdr import gaussian_set_cdr
from nut_ros.ros.gaussian_msgs import LAYOUT, gaussian_cloud_to_msg, gaussian_set_times_ns, msg_to_gaussian_cloud
from nut_ros.ros.msg_types import float32_field

FLAVORS = ["rosbags", pytest.param("rclpy", marks=pytest.mark.ros)]


def random_cloud(n, metric=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=(n, width) if width > 1 else n).astype(np.float32)
              for name, width in LAYOUT.items()}
    return GaussianCloud(metric=metric, **arrays)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("count", [0, 1, 3000])
def test_gaussian_set_roundtrip(flavor, count):
    cloud = random_cloud(count, metric=count % 2 == 0)
    msg = gaussian_cloud_to_msg(cloud, 1_000_000_123, "cam_optical", valid_time_ns=1_050_000_000,
                                depth_source="topic", flavor=flavor)
    msg = deserialize(serialize(msg), "nut_ros_msgs/msg/GaussianSet", flavor)
    assert ((msg.count, msg.metric, msg.depth_source, msg.header.frame_id)
            == (count, cloud.metric, "topic", "cam_optical"))
    assert gaussian_set_times_ns(msg) == (1_000_000_123, 1_050_000_000)
    back = msg_to_gaussian_cloud(msg)
    assert back.metric == cloud.metric and back.count == count
    for name in LAYOUT:
        got, want = getattr(back, name), getattr(cloud, name)
        assert got.shape == want.shape and got.dtype == np.float32 and np.array_equal(got, want), name


def test_valid_time_defaults_to_stamp():
    msg = gaussian_cloud_to_msg(random_cloud(2), 77, "cam", flavor="rosbags")
    assert gaussian_set_times_ns(msg) == (77, 77)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_inconsistent_sizes_raise(flavor):
    cloud = random_cloud(10)
    cloud.rotations = cloud.rotations[:, :3]
    with pytest.raises(ConversionError, match=r"GaussianCloud\.rotations"):
        gaussian_cloud_to_msg(cloud, 0, "cam", flavor=flavor)
    msg = gaussian_cloud_to_msg(random_cloud(10), 0, "cam", flavor=flavor)
    msg.velocities = float32_field(np.zeros(29, np.float32), flavor)
    with pytest.raises(ConversionError, match=r"GaussianSet\.velocities: expected 30"):
        msg_to_gaussian_cloud(msg)
    msg = gaussian_cloud_to_msg(random_cloud(10), 0, "cam", flavor=flavor)
    msg.count = 11
    with pytest.raises(ConversionError, match=r"GaussianSet\.positions"):
        msg_to_gaussian_cloud(msg)


@pytest.mark.parametrize("frame_id, depth_source",
                         [("", ""), ("cam", "topic"), ("camera_optical", "none"), ("a" * 13, "xy")])
@pytest.mark.parametrize("count", [0, 1, 257])
def test_direct_cdr_is_byte_identical_to_rosbags(frame_id, depth_source, count):
    """All string-length / padding combinations; rosbags writes zero padding, as gaussian_set_cdr does."""
    cloud = random_cloud(count, metric=bool(count % 2))
    fast = gaussian_set_cdr(cloud, 1_234_567_890_123, frame_id, 1_234_600_000_000, depth_source)
    msg = gaussian_cloud_to_msg(cloud, 1_234_567_890_123, frame_id, 1_234_600_000_000, depth_source, flavor="rosbags")
    assert fast == serialize(msg)


@pytest.mark.ros
def test_direct_cdr_decodes_in_rclpy():
    cloud = random_cloud(1000)
    msg = deserialize(gaussian_set_cdr(cloud, 5, "cam_optical", 9, "topic"), "nut_ros_msgs/msg/GaussianSet", "rclpy")
    back = msg_to_gaussian_cloud(msg)
    assert gaussian_set_times_ns(msg) == (5, 9) and msg.depth_source == "topic" and back.metric
    assert all(np.array_equal(getattr(back, k), getattr(cloud, k)) for k in LAYOUT)
    with pytest.raises(ConversionError, match=r"GaussianCloud\.colors"):
        cloud.colors = cloud.colors[:-1]
        gaussian_set_cdr(cloud, 0, "cam")
