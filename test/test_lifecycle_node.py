"""The lifecycle node's ROS wiring: the TF listener across failed configures, and where its input subscriptions land
under remapping."""
import sys

import pytest

from test_node_params import FakeTf2, fresh_node  # noqa: F401 - fresh_node is a fixture


@pytest.mark.ros
def test_failed_configures_leave_no_tf_listener_behind(fresh_node, monkeypatch):  # noqa: F811
    """The listener is made before the pipeline: a configure that fails after it unregisters it again, so failed
    configures do not pile up /tf subscriptions, and a later configure without camera_frame has no TF."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from nut_ros.ros import lifecycle_node

    monkeypatch.setitem(sys.modules, "tf2_ros", FakeTf2)
    node = fresh_node(use_odometry=True, camera_frame="camera_optical")

    def tf_subscriptions():
        return sum(sub.topic_name in ("/tf", "/tf_static") for sub in node.subscriptions)

    build = lifecycle_node.build_pipeline

    def no_weights(params, log):
        raise FileNotFoundError("no weights")

    monkeypatch.setattr(lifecycle_node, "build_pipeline", no_weights)
    for attempt in range(2):
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert tf_subscriptions() == 0, attempt
        assert node._tf is None and node._tf_node_listener is None and node._mount_checked is None
    monkeypatch.setattr(lifecycle_node, "build_pipeline", build)
    assert node.set_parameters([Parameter("camera_frame", value="")])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert tf_subscriptions() == 0 and node._tf is None, "no camera_frame: no TF"


@pytest.mark.ros
def test_transport_topics_follow_their_base_topics_remapping(fresh_node):  # noqa: F811
    """As image_transport: ``image_raw/compressed`` is the remapped ``image_raw`` + ``/compressed``; a transport
    topic remapped itself (the launch file's compressed_image_topic) keeps its own rule."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from nut_ros.ros import topics

    node = fresh_node(["--ros-args", "-r", "image_raw:=/camera/color/image_raw", "-r", "depth:=/camera/depth",
                       "-r", "depth/compressedDepth:=/other/depth"], input_reliability="reliable",
                      image_transport="compressed", depth_transport="compressedDepth")
    assert topics.input_topic(node, topics.COMPRESSED_IMAGE) == "/camera/color/image_raw/compressed"
    assert topics.input_topic(node, topics.CAMERA_INFO) == "/camera_info"
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    subscribed = {sub.topic_name for sub in node.subscriptions}
    assert {"/camera/color/image_raw/compressed", "/other/depth", "/camera_info"} <= subscribed, subscribed
