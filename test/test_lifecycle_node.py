"""The lifecycle node's ROS wiring: the TF listener across failed configures, and where its input subscriptions land
under remapping."""
import os
import sys
import time

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


@pytest.mark.ros
@pytest.mark.parametrize("with_sequence_numbers", [True, False])
def test_images_published_while_inactive_are_not_counted_lost(fresh_node, capfd, with_sequence_numbers):  # noqa: F811
    """Deactivate, then activate again: the publisher went on (its sequence numbers, or the stamps of a bag, jumped)
    while the node was not subscribed, which is no loss; the first image after activation starts a fresh baseline,
    and gaps while active still count."""
    import numpy as np
    from rclpy.lifecycle import TransitionCallbackReturn

    from nut_ros.ros.conversions import numpy_to_image

    node = fresh_node(depth_source="none")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    rgb = np.full((48, 64, 3), 90, np.uint8)
    period = 100_000_000  # 10 Hz

    def image(seq):
        info = {"publication_sequence_number": seq, "publisher_gid": "camera"} if with_sequence_numbers else None
        node._on_image(numpy_to_image(rgb, "rgb8", 10**12 + seq * period, "cam"), info)

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    for seq in range(1, 6):
        image(seq)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    capfd.readouterr()
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    for seq in range(9, 14):  # 3 images published while inactive (0.3 s of a bag: under max_gap_s, one stream)
        image(seq)
    assert node.processor.losses.lost == 0 and node.processor.health.lost == 0
    assert "lost" not in capfd.readouterr().err
    image(15)  # one lost while active
    assert node.processor.losses.lost == 1 and node.processor.health.lost == 1
    assert "1 input images lost so far" in capfd.readouterr().err


@pytest.mark.ros
@pytest.mark.parametrize("perception", [False, True])
def test_perception_outputs_have_publishers_only_with_perception(fresh_node, perception):  # noqa: F811
    """Without perception nothing is ever published on its outputs: no publisher there (``ros2 topic echo`` would
    wait forever on one); the other outputs have theirs either way."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from nut_ros.ros import topics

    namespace = f"/perception_{str(perception).lower()}_{os.getpid()}"  # (not another test's, or process's, node)
    node = fresh_node(["--ros-args", "-r", f"__ns:={namespace}"], perception=perception)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    perception_topics = {topics.output_topic(n, namespace) for n in topics.PERCEPTION_OUTPUTS}
    expected = {topics.output_topic(n, namespace) for n in topics.OUTPUT_TYPES} - perception_topics
    if perception:
        expected |= perception_topics
    deadline = time.monotonic() + 30
    while True:  # (the graph learns of the node's own publishers through discovery, not at once)
        published = {name for name, _ in node.get_publisher_names_and_types_by_node(topics.NODE_NAME, namespace)}
        if expected <= published or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert expected <= published, published
    assert (perception_topics <= published) if perception else not (perception_topics & published), published
