"""Perception outputs -> ObstacleArray, MarkerArray, map PointCloud2 + GaussianSet (rosbags flavor without ROS;
rclpy flavor where nut_ros_msgs is built with the obstacle messages)."""
import uuid

import numpy as np
import pytest

from nut_ros.perception.types import Obstacle, ObstacleList
from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.obstacle_msgs import map_messages, marker_id, obstacle_markers, obstacles_to_msg
from nut_ros.ros.pointcloud import pointcloud2_to_points


def _has_obstacle_msgs() -> bool:
    try:
        from nut_ros_msgs.msg import ObstacleArray  # noqa: F401
    except ImportError:
        return False
    return True


FLAVORS = ["rosbags", pytest.param("rclpy", marks=[pytest.mark.ros, pytest.mark.skipif(
    not _has_obstacle_msgs(), reason="nut_ros_msgs built before the obstacle messages: run make setup")])]


def obstacle_list(n):
    rng = np.random.default_rng(n)
    obs = [Obstacle(uuid.UUID(int=int(rng.integers(0, 2**62)) << 60 | i, version=4), rng.normal(size=3),
                    rng.normal(size=3), rng.uniform(0.2, 1, 3), np.diag(rng.uniform(0.01, 0.1, 3)),
                    np.diag(rng.uniform(0.01, 0.1, 3)), float(rng.uniform(0.1, 1)), int(rng.integers(1, 100)))
           for i in range(n)]
    return ObstacleList(1_700_000_000_123_456_789, "cam_optical", True, obs)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("n", [0, 3])
def test_obstacle_array_roundtrip(flavor, n):
    obs = obstacle_list(n)
    msg = deserialize(serialize(obstacles_to_msg(obs, flavor)), "nut_ros_msgs/msg/ObstacleArray", flavor)
    assert msg.header.frame_id == "cam_optical" and msg.metric and len(msg.obstacles) == n
    for got, want in zip(msg.obstacles, obs.obstacles):
        assert bytes(bytearray(got.id.uuid)) == want.id.bytes
        np.testing.assert_allclose([got.position.x, got.position.y, got.position.z], want.position)
        np.testing.assert_allclose([got.velocity.x, got.velocity.y, got.velocity.z], want.velocity)
        np.testing.assert_allclose([got.size.x, got.size.y, got.size.z], want.size)
        np.testing.assert_allclose(np.reshape(got.position_covariance, (3, 3)), want.position_covariance)
        np.testing.assert_allclose(np.reshape(got.velocity_covariance, (3, 3)), want.velocity_covariance)
        assert got.age == want.age and abs(got.confidence - want.confidence) < 1e-6
        assert got.header.stamp.sec == 1_700_000_000 and got.header.stamp.nanosec == 123_456_789


@pytest.mark.parametrize("flavor", FLAVORS)
def test_markers_box_and_arrow_per_obstacle_after_a_delete_all(flavor):
    obs = obstacle_list(2)
    msg = deserialize(serialize(obstacle_markers(obs, 2.0, flavor=flavor)), "visualization_msgs/msg/MarkerArray",
                      flavor)
    m = msg.markers
    assert len(m) == 5 and m[0].action == 3  # DELETEALL
    for k, ob in enumerate(obs.obstacles):
        box, arrow = m[1 + 2 * k], m[2 + 2 * k]
        assert box.type == 1 and arrow.type == 0 and box.id == 2 * marker_id(ob) and arrow.id == box.id + 1
        np.testing.assert_allclose([box.pose.position.x, box.pose.position.y, box.pose.position.z], ob.position)
        np.testing.assert_allclose([box.scale.x, box.scale.y, box.scale.z], ob.size)
        tip = arrow.points[1]
        np.testing.assert_allclose([tip.x, tip.y, tip.z], ob.position + ob.velocity)
        assert box.header.frame_id == "cam_optical" and 0 <= box.id < 2**31


def test_map_messages():
    n = 500
    rng = np.random.default_rng(0)
    cloud = GaussianCloud(rng.normal(size=(n, 3)).astype(np.float32), np.full((n, 3), 0.02, np.float32),
                          np.tile(np.float32([1, 0, 0, 0]), (n, 1)), np.ones(n, np.float32),
                          rng.uniform(0, 1, (n, 3)).astype(np.float32), np.zeros((n, 3), np.float32), metric=True)
    points, gaussians = map_messages(cloud, 5_000_000_000, "odom", "topic", flavor="rosbags")
    xyz, rgb = pointcloud2_to_points(points)
    np.testing.assert_array_equal(xyz, cloud.positions)
    assert np.abs(rgb / 255.0 - cloud.colors).max() <= 0.5 / 255 + 1e-6
    assert gaussians.count == n and gaussians.header.frame_id == "odom" and gaussians.metric


@pytest.mark.parametrize("lifetime, sec, nanosec", [(2.0, 2, 0), (0.25, 0, 250_000_000), (1.9999999996, 2, 0)])
def test_marker_lifetime_is_a_normalised_duration(lifetime, sec, nanosec):
    msg = obstacle_markers(obstacle_list(1), lifetime, flavor="rosbags")
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in msg.markers} == {(sec, nanosec)}
