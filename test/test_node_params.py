"""Node parameters: the shipped params file, the declared catalogue, validation errors and run-time changes."""
import dataclasses
import threading
import time
from pathlib import Path

import pytest
import yaml

from nut_ros.ros.params import NodeParams, ParamError, catalogue, load_params_file

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "nut_ros.yaml"


def test_params_file_keys_equal_declared_parameters():
    section = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]
    assert list(section) == list(catalogue()), "config/nut_ros.yaml drifted from nut_ros/ros/params.py"


def test_params_file_loads_into_typed_parameters():
    params = load_params_file(PARAMS_FILE)
    assert params == NodeParams(), "the shipped file should spell out the defaults"
    for f in dataclasses.fields(params):
        assert type(getattr(params, f.name)) is type(f.default if f.default is not dataclasses.MISSING
                                                      else f.default_factory())


@pytest.mark.parametrize("values, fragment", [
    ({"backend": "tflite"}, "backend='tflite' is not one of torch, onnxruntime, tensorrt"),
    ({"render_times": [1.0, 2.5]}, "render_times=[1.0, 2.5] is outside [0.0, 2.0]"),
    ({"render_times": []}, "render_times must name 1 to 8 times, got 0"),
    ({"render_times": [1.0] * 9}, "render_times must name 1 to 8 times, got 9"),  # each a render per frame
    ({"input_width": 256}, "input_width and input_height must both be 0"),
    ({"depth_scale": 0.0}, "depth_scale=0.0 is outside"),
    ({"device": "gpu"}, "device='gpu' is not cpu, cuda or cuda:N"),
    ({"device": "cuda:x"}, "device='cuda:x' is not cpu, cuda or cuda:N"),
    ({"model": "huge"}, "model='huge' is not a model configuration (small, streamsplat, tiny)"),
    ({"image_transport": "theora"}, "image_transport='theora'"),
    ({"sync_buffer": 0}, "sync_buffer=0 is outside [1, 100]"),
    ({"publish_points": "yes"}, "publish_points must be of type bool"),
    ({"max_rate": True}, "max_rate must be of type float"),
    ({"render_times": [1, "x"]}, "render_times must be a list of numbers"),
    ({"render_times": None}, "ROS parameters cannot hold an empty list"),  # `[]` in a params file arrives unset
    ({"render_times": [0.5, 1.0, 0.5]}, "render_times=[0.5, 1.0, 0.5] names a time twice"),
    ({"no_such_param": 1}, "unknown nut_ros parameters: no_such_param"),
    ({"device": "cuda", "backend": "onnxruntime", "compile": True}, "bf16 and compile apply to the torch backend"),
    ({"max_rate": 0.5}, "max_gap_s at least 4 s"),
    ({"max_rate": 1.0}, "max_gap_s at least 2 s"),
    ({"max_rate": 5.0, "max_gap_s": 0.0}, "max_gap_s=0.0 is outside"),
])
def test_invalid_values_name_the_parameter(values, fragment):
    with pytest.raises(ParamError) as err:
        NodeParams.from_dict(values)
    assert fragment in str(err.value)


def test_all_errors_are_reported_at_once():
    with pytest.raises(ParamError) as err:
        NodeParams.from_dict({"backend": "x", "depth_source": "lidar", "max_rate": -1.0})
    assert all(name in str(err.value) for name in ("backend", "depth_source", "max_rate"))


def test_a_slow_rate_needs_a_longer_gap():
    assert NodeParams.from_dict({"max_rate": 0.5, "max_gap_s": 4.0}).max_gap_s == 4.0
    assert NodeParams.from_dict({"max_rate": 2.0}).max_rate == 2.0


def test_integers_are_accepted_for_floats():
    assert NodeParams.from_dict({"render_times": [1, 2], "max_rate": 5}).render_times == [1.0, 2.0]


@pytest.mark.ros
def test_node_parameters_come_from_the_params_file_with_descriptors():
    import rclpy
    from rclpy.node import Node

    from nut_ros.ros.params import declare_and_read

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(PARAMS_FILE), "-p", "max_rate:=7",
                                      "-p", "render_times:=[1, 2]"])
    try:
        node = Node("nut_ros", context=context)
        params = declare_and_read(node)
        assert params.max_rate == 7.0 and params.render_times == [1.0, 2.0] and params.model == "tiny"
        assert type(params.max_rate) is float, "integers are accepted for float parameters, as documented"
        descriptor = node.describe_parameter("input_qos_depth")
        assert descriptor.integer_range[0].to_value == 100 and "only while unconfigured" in descriptor.description
        assert "only while unconfigured" not in node.describe_parameter("max_rate").description
        assert "best_effort" in node.describe_parameter("input_reliability").additional_constraints
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def lifecycle_node():
    import rclpy
    from rclpy.parameter import Parameter

    from nut_ros.ros.lifecycle_node import NutRosNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=150)
    node = NutRosNode(context=context, parameter_overrides=[Parameter("random_init", value=True)])
    yield node
    node.close()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.ros
def test_lifecycle_node_declares_exactly_the_catalogue(lifecycle_node):
    declared = set(lifecycle_node._parameters) - {"use_sim_time", "start_type_description_service"}
    assert declared == set(catalogue())


@pytest.mark.ros
def test_parameters_change_at_run_time_when_dynamic_and_say_why_not_otherwise(lifecycle_node):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = lifecycle_node
    assert node.set_parameters([Parameter("model", value="small")])[0].successful, "unconfigured: anything goes"
    node.set_parameters([Parameter("model", value="tiny"), Parameter("motion_prior", value="flow")])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    refused = node.set_parameters([Parameter("model", value="small")])[0]
    assert not refused.successful and "only while the node is unconfigured" in refused.reason
    assert "lifecycle set" in refused.reason and "cleanup" in refused.reason
    bad = node.set_parameters([Parameter("render_times", value=[5.0])])[0]
    assert not bad.successful and "render_times=[5.0] is outside" in bad.reason
    wrong = node.set_parameters([Parameter("max_rate", value="fast")])[0]
    assert not wrong.successful and "max_rate must be of type float" in wrong.reason
    assert node.set_parameters([Parameter("max_rate", value=5)])[0].successful, "an int for a float"
    assert node.set_parameters([Parameter("publish_points", value=False),
                                Parameter("render_times", value=[1.0, 0.5])])[0].successful
    assert node.params.max_rate == 5.0 and type(node.params.max_rate) is float
    node._apply_pending()  # what the worker does between frames
    outputs = node.processor.settings.outputs
    assert not {"points", "relative/points"} & outputs and "image" in outputs, "one switch for both point topics"
    assert node.processor.pipeline.config.render_times == (1.0, 0.5)
    import numpy as np

    from nut_ros.pipeline.types import Frame

    for i in range(2):  # a pair: the flow prior's thread runs
        node.processor.pipeline.push(Frame(np.full((48, 64, 3), 50 * i, np.uint8), 10**9 + i * 10**8))
    assert any(t.name.startswith("nut_ros_flow") for t in threading.enumerate()), "the flow prior's thread runs"
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and node.processor is None

    deadline = time.monotonic() + 5
    while any(t.name.startswith("nut_ros_flow") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("nut_ros_flow") for t in threading.enumerate()), "cleanup frees it"
    assert node.set_parameters([Parameter("model", value="tiny")])[0].successful
    # unconfigured, one change after another: each is checked against the ones set before it
    assert node.set_parameters([Parameter("max_gap_s", value=4.0)])[0].successful
    assert node.set_parameters([Parameter("max_rate", value=0.5)])[0].successful
    too_slow = node.set_parameters([Parameter("max_rate", value=0.25)])[0]
    assert not too_slow.successful and "max_gap_s at least 8 s" in too_slow.reason
    assert node.set_parameters([Parameter("max_rate", value=5.0), Parameter("max_gap_s", value=1.0)])[0].successful


@pytest.mark.ros
def test_out_of_range_override_is_refused_by_ros():
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.node import Node

    from nut_ros.ros.params import declare_and_read

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "-p", "input_qos_depth:=1000"])
    try:
        node = Node("nut_ros", context=context)
        with pytest.raises(InvalidParameterValueException, match="input_qos_depth"):
            declare_and_read(node)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_array_values_as_ros_gives_them_are_accepted():
    import array

    assert NodeParams.from_dict({"render_times": array.array("d", [1.0, 0.5])}).render_times == [1.0, 0.5]


@pytest.mark.parametrize("text, says", [("model: [tiny\n", "is not valid YAML"), ("", "is not a ROS params file"),
                                        ("just a string\n", "is not a ROS params file"),
                                        ("/**:\n  ros__parameters: [1, 2]\n", "must be a mapping"),
                                        ("model: tiny\n", "/model is 'tiny', not a node's section")])
def test_a_params_file_that_is_not_one_is_named(tmp_path, text, says):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamError, match=says):
        load_params_file(path)


NESTED_NS_SECTION = "/robot:\n  nut_ros:\n    ros__parameters:\n      interp_window: 0.5\n"
WILDCARD_NS_SECTION = "/**:\n  nut_ros:\n    ros__parameters:\n      interp_window: 0.5\n"


@pytest.mark.parametrize("text", [WILDCARD_NS_SECTION,
                                  "/*:\n  ros__parameters:\n    interp_window: 0.25\n" + WILDCARD_NS_SECTION,
                                  "/*:\n  ros__parameters:\n    interp_window: 0.5\n",
                                  "/nut_ros:\n  ros__parameters:\n    interp_window: 0.5\n",
                                  "nut_ros:\n  ros__parameters:\n    interp_window: 0.5\n"])
def test_the_sections_rcl_applies_to_the_root_node_apply(tmp_path, text):
    """As rcl reads a params file for the node /nut_ros (the tools run it in the root namespace): the later of two
    sections wins."""
    path = tmp_path / "params.yaml"
    path.write_text(text)
    warnings = []
    assert load_params_file(path, warn=warnings.append).interp_window == 0.5 and warnings == []


@pytest.mark.parametrize("key", ["/robot/nut_ros", "/robot/*", "/robot/**", "/*/nut_ros", "/nut_ros/*"])
def test_sections_of_other_namespaces_do_not_apply(tmp_path, key):
    """rcl matches the whole name (``/*`` one name, ``/**`` any namespaces): a node /nut_ros gets none of these."""
    path = tmp_path / "params.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    interp_window: 0.25\n"
                    f"{key}:\n  ros__parameters:\n    interp_window: 0.5\n")
    warnings = []
    assert load_params_file(path, warn=warnings.append).interp_window == 0.25
    assert warnings == [f"{path}: section {key} does not apply to the node /nut_ros: ignored"]
    path.write_text(NESTED_NS_SECTION)
    assert load_params_file(path, warn=warnings.append).interp_window == 0.0


def test_other_nodes_sections_and_unknown_names_are_warned_about_not_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("/robot/camera:\n  ros__parameters:\n    interp_window: 0.5\n"
                    "/**:\n  ros__parameters:\n    max_rte: 2.0\n    interp_samples: 7\n    flow:\n      size: 3\n")
    warnings = []
    params = load_params_file(path, warn=warnings.append)
    assert params.interp_window == 0.0 and params.interp_samples == 7
    assert warnings == [f"{path}: section /robot/camera does not apply to the node /nut_ros: ignored",
                        f"{path}: unknown parameters ignored: flow.size, max_rte"]


@pytest.fixture
def fresh_node():
    """A node of its own (lifecycle transitions change it), unconfigured; with its executor spinning; ``cli_args``:
    its command line (``["--ros-args", "-r", ...]``)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from nut_ros.ros.lifecycle_node import NutRosNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=151)
    made = []

    def make(cli_args=None, **params):
        overrides = {"random_init": True, "autostart": False, "motion_prior": "flow", **params}
        node = NutRosNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
                          cli_args=cli_args)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        made.append((node, executor))
        return node
    yield make
    for node, executor in made:
        node.close()
        executor.shutdown()
        node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.ros
def test_a_diagnostics_period_set_while_unconfigured_applies_at_configure(fresh_node):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = fresh_node(diagnostics_period=1.0)
    assert node.set_parameters([Parameter("diagnostics_period", value=0.25)])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node._diag_timer.timer_period_ns == 250_000_000
    assert node.set_parameters([Parameter("diagnostics_period", value=0.5)])[0].successful  # configured: at once
    assert node._diag_timer.timer_period_ns == 500_000_000


class FakeTf2:
    """tf2_ros as the node uses it (not installable from PyPI): a Buffer whose lookup gives a fixed mount, and a
    TransformListener that subscribes to /tf and /tf_static on the node and whose unregister() destroys them."""

    MOUNT = (0.1, 0.2, 0.3)

    class Buffer:
        def lookup_transform(self, target, source, time):
            from geometry_msgs.msg import TransformStamped

            t = TransformStamped()
            t.header.frame_id, t.child_frame_id = target, source
            t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = FakeTf2.MOUNT
            t.transform.rotation.w = 1.0
            return t

    class TransformListener:
        def __init__(self, buffer, node):
            from geometry_msgs.msg import TransformStamped

            self.node = node
            self.subs = [node.create_subscription(TransformStamped, topic, lambda m: None, 10)
                         for topic in ("/tf", "/tf_static")]

        def unregister(self):
            for sub in self.subs:
                self.node.destroy_subscription(sub)


@pytest.mark.ros
def test_the_tf_mount_is_looked_up_again_after_cleanup_and_its_listener_goes(fresh_node, monkeypatch):
    import sys

    import numpy as np

    from nut_ros.ros.odometry import pose_to_odometry

    monkeypatch.setitem(sys.modules, "tf2_ros", FakeTf2)
    node = fresh_node(use_odometry=True, camera_frame="camera_optical")

    def tf_subscriptions():
        return sum(sub.topic_name in ("/tf", "/tf_static") for sub in node.subscriptions)

    for cycle in range(2):
        node.trigger_configure()
        node._on_odometry(pose_to_odometry(np.eye(4), 10**12 + cycle, "odom", "base_link", "rclpy"))
        np.testing.assert_allclose(node.processor.poses.mount[:3, 3], FakeTf2.MOUNT, err_msg=f"cycle {cycle}")
        assert tf_subscriptions() == 2, cycle
        node.trigger_cleanup()
        assert tf_subscriptions() == 0, cycle


@pytest.mark.ros
def test_no_pose_until_the_tf_mount_is_known_and_a_changed_mount_clears_the_poses(fresh_node, monkeypatch):
    """With camera_frame, odometry is not buffered (and frames get no pose, not one built with camera_mount) until
    TF has the mount; a mount that changes in TF replaces the old one and clears the poses taken under it."""
    import sys

    import numpy as np

    from nut_ros.ros import lifecycle_node
    from nut_ros.ros.odometry import pose_to_odometry

    class LateTf2(FakeTf2):
        mount = None  # not in TF yet

        class Buffer:
            def lookup_transform(self, target, source, time):
                if LateTf2.mount is None:
                    raise LookupError(f"{target} -> {source}: frame does not exist")
                t = FakeTf2.Buffer().lookup_transform(target, source, time)
                t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = LateTf2.mount
                return t

    monkeypatch.setitem(sys.modules, "tf2_ros", LateTf2)
    monkeypatch.setattr(lifecycle_node, "MOUNT_CHECK_S", 0.0)  # looked up again at every message
    node = fresh_node(use_odometry=True, camera_frame="camera_optical", camera_mount=[0.0, 0.0, 9.0, 0.0, 0.0, 0.0])
    node.trigger_configure()
    t0 = 10**12

    def odometry(i):
        node._on_odometry(pose_to_odometry(np.eye(4), t0 + i * 10**7, "odom", "base_link", "rclpy"))

    def camera_at(i):
        return node.processor.poses.camera_pose(t0 + i * 10**7)

    for i in range(3):
        odometry(i)
    assert camera_at(1) is None and len(node.processor.poses) == 0, "no pose with camera_mount meanwhile"
    LateTf2.mount = (0.1, 0.2, 0.3)
    for i in range(3, 6):
        odometry(i)
    np.testing.assert_allclose(camera_at(4)[:3, 3], LateTf2.mount)
    LateTf2.mount = (0.5, 0.0, 0.0)
    odometry(20)
    assert camera_at(4) is None, "the poses under the old mount are gone"
    np.testing.assert_allclose(camera_at(20)[:3, 3], LateTf2.mount)
    assert node.processor.diagnostic_values()["odometry_resets"] == 1


@pytest.mark.ros
def test_an_invalid_camera_info_is_named_in_the_warning(fresh_node, capfd):
    import numpy as np

    from nut_ros.core.geometry import Intrinsics
    from nut_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image
    from nut_ros.ros.input_sync import Matched

    node = fresh_node()
    node.trigger_configure()
    stamp = 10**12
    info = intrinsics_to_camera_info(Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48), stamp, "cam")
    info.k = [0.0] * 9
    image = numpy_to_image(np.full((48, 64, 3), 90, np.uint8), "rgb8", stamp, "cam")
    capfd.readouterr()
    node._process(Matched(stamp, image, None, info), time.perf_counter())
    err = capfd.readouterr().err
    assert "invalid CameraInfo on /camera_info" in err and "no CameraInfo on" not in err, err
