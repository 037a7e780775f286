"""Node parameters: the shipped params file, the declared catalogue and validation errors."""
import ast
import dataclasses
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


def test_node_declares_parameters_only_through_the_catalogue():
    tree = ast.parse((REPO / "nut_ros" / "ros" / "node.py").read_text())
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert "declare_parameter" not in calls and "declare_parameters" not in calls
    assert "declare_and_read" in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


@pytest.mark.parametrize("values, fragment", [
    ({"backend": "tflite"}, "backend='tflite' is not one of torch, onnxruntime, tensorrt"),
    ({"render_times": [1.0, 2.5]}, "render_times=[1.0, 2.5] is outside [0.0, 2.0]"),
    ({"render_times": []}, "render_times must name at least one time"),
    ({"input_width": 256}, "input_width and input_height must both be 0"),
    ({"depth_scale": 0.0}, "depth_scale=0.0 is outside"),
    ({"device": "gpu"}, "device='gpu' is not cpu, cuda or cuda:N"),
    ({"image_transport": "theora"}, "image_transport='theora'"),
    ({"sync_buffer": 0}, "sync_buffer=0 is outside [1, 100]"),
    ({"publish_points": "yes"}, "publish_points must be of type bool"),
    ({"max_rate": True}, "max_rate must be of type float"),
    ({"render_times": [1, "x"]}, "render_times must be a list of numbers"),
    ({"no_such_param": 1}, "unknown nut_ros parameters: no_such_param"),
])
def test_invalid_values_name_the_parameter(values, fragment):
    with pytest.raises(ParamError) as err:
        NodeParams.from_dict(values)
    assert fragment in str(err.value)


def test_flow_preset_choices_are_the_motion_priors():
    from nut_ros.core import motion_prior
    from nut_ros.ros import params
    assert params.FLOW_PRESETS == motion_prior.FLOW_PRESETS


def test_all_errors_are_reported_at_once():
    with pytest.raises(ParamError) as err:
        NodeParams.from_dict({"backend": "x", "depth_source": "lidar", "max_rate": -1.0})
    assert all(name in str(err.value) for name in ("backend", "depth_source", "max_rate"))


def test_integers_are_accepted_for_floats():
    assert NodeParams.from_dict({"render_times": [1, 2], "max_rate": 5}).render_times == [1.0, 2.0]


@pytest.mark.ros
def test_node_parameters_come_from_the_params_file_with_descriptors():
    import rclpy
    from rclpy.node import Node

    from nut_ros.ros.params import declare_and_read

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(PARAMS_FILE), "-p", "max_rate:=7.5",
                                      "-p", "render_times:=[1.0, 1.5]"])
    try:
        node = Node("nut_ros", context=context)
        params = declare_and_read(node)
        assert params.max_rate == 7.5 and params.render_times == [1.0, 1.5] and params.model == "tiny"
        descriptor = node.describe_parameter("input_qos_depth")
        assert descriptor.read_only and descriptor.integer_range[0].to_value == 100
        assert "best_effort" in node.describe_parameter("input_reliability").additional_constraints
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


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
