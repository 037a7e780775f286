"""Lengths without metric scale never reach the topics whose readers take metres (REP-118 depth, REP-103 points)."""
import numpy as np
import pytest

from nut_ros.pipeline.types import GaussianCloud, Intrinsics, RenderedView, StepResult
from nut_ros.ros import topics
from nut_ros.ros.conversions import image_to_depth_m, pointcloud2_to_points
from nut_ros.ros.outputs import STEP_OUTPUTS, VIEW_OUTPUTS, step_messages, view_messages
from nut_ros.ros.params import NodeParams
from nut_ros.ros.processor import processor_settings

H, W, N = 6, 8, 5


def _result(metric: bool, source: str) -> StepResult:
    rng = np.random.default_rng(3)
    cloud = GaussianCloud(rng.uniform(0.5, 2.0, (N, 3)).astype(np.float32), np.full((N, 3), 0.01, np.float32),
                          np.tile(np.float32([1, 0, 0, 0]), (N, 1)), np.full(N, 0.9, np.float32),
                          rng.uniform(0, 1, (N, 3)).astype(np.float32), np.zeros((N, 3), np.float32), metric)
    depth = np.full((H, W), 1.5, np.float32)
    views = [RenderedView(1_000_000_000, 1.0, np.zeros((H, W, 3), np.uint8), depth, np.ones((H, W), np.float32))]
    return StepResult(1_000_000_000, "cam", metric, source, views, cloud, Intrinsics(10.0, 10.0, W / 2, H / 2, W, H))


@pytest.mark.parametrize("metric, source", [(True, "topic"), (True, "odometry"), (False, "motion"), (False, "none")])
def test_depth_and_points_go_to_the_metric_topics_only_with_metric_scale(metric, source):
    enabled = set(VIEW_OUTPUTS + STEP_OUTPUTS)
    result = _result(metric, source)
    (view,) = view_messages(result, "cam", enabled, "rclpy")
    step = step_messages(result, "cam", enabled, "rclpy")
    depth, points = ("depth", "points") if metric else ("relative/depth", "relative/points")
    assert set(view) == {depth, "image", "camera_info"} and set(step) == {points, "gaussians"}
    assert step["gaussians"].metric == metric, "the GaussianSet keeps one topic and says which"
    np.testing.assert_array_equal(image_to_depth_m(view[depth]), result.views[0].depth)
    np.testing.assert_array_equal(pointcloud2_to_points(step[points])[0], result.gaussians.positions)


def test_one_publish_switch_governs_an_output_and_its_relative_twin():
    on = processor_settings(NodeParams(perception=True)).outputs
    assert {"depth", "relative/depth", "points", "relative/points", "map_points", "relative/map_points"} <= on
    off = processor_settings(NodeParams(perception=True, publish_depth=False, publish_points=False,
                                        publish_map_points=False)).outputs
    assert not off & {"depth", "relative/depth", "points", "relative/points", "map_points", "relative/map_points"}
    assert not processor_settings(NodeParams(perception=False)).outputs & set(topics.PERCEPTION_OUTPUTS)
    assert topics.output_topic(topics.RELATIVE["depth"]) == "/nut_ros/relative/depth"
