"""Launch files and RViz config: load the launch files against a minimal stand-in of the `launch`/`launch_ros` API
(neither installs from PyPI) and check what they declare against the node's parameters and topics."""
import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from nut_ros.ros import topics
from nut_ros.tools import demo

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"


class _Action:
    """Records its constructor arguments; every stand-in launch class is one of these."""

    keywords: frozenset = frozenset()
    max_args = 1

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        assert len(args) <= self.max_args, f"{name} takes at most {self.max_args} positional arguments"
        unknown = set(kwargs) - self.keywords - {"condition"}
        assert not unknown, f"{name} has no keyword argument(s) {unknown}"
        self.args, self.kwargs = args, kwargs


# class -> (positional arguments at most, keyword arguments): the parts of the launch / launch_ros API used here
_API = {
    "launch": {"LaunchDescription": (1, ())},
    "launch.actions": {
        "DeclareLaunchArgument": (1, ("default_value", "description", "choices")),
        "SetEnvironmentVariable": (2, ()),
        "ExecuteProcess": (0, ("cmd", "cwd", "env", "name", "output", "shell")),
        "IncludeLaunchDescription": (1, ("launch_arguments",)),
    },
    "launch.conditions": {"IfCondition": (1, ()), "UnlessCondition": (1, ())},
    "launch.substitutions": {"LaunchConfiguration": (1, ("default",)), "PathJoinSubstitution": (1, ())},
    "launch.launch_description_sources": {"PythonLaunchDescriptionSource": (1, ())},
    "launch_ros": {},
    "launch_ros.actions": {"Node": (0, ("package", "executable", "name", "namespace", "parameters", "remappings",
                                        "arguments", "output", "emulate_tty", "ros_arguments"))},
    "launch_ros.substitutions": {"FindPackageShare": (1, ())},
}


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    modules = {}
    for name, classes in _API.items():
        module = types.ModuleType(name)
        for cls, (max_args, keywords) in classes.items():
            setattr(module, cls, type(cls, (_Action,), {"max_args": max_args, "keywords": frozenset(keywords)}))
        modules[name] = module
    return modules


@pytest.fixture
def load_launch(monkeypatch):
    for name, module in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)

    def load(filename: str):
        spec = importlib.util.spec_from_file_location(filename.replace(".", "_"), LAUNCH / filename)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description().args[0]

    return load


def _resolve(sub, values: dict[str, str]) -> str:
    """Evaluate a stand-in substitution: the package share is the source tree (same config/ and launch/ layout)."""
    kind = type(sub).__name__
    if isinstance(sub, str):
        return sub
    if isinstance(sub, list):
        return "".join(_resolve(s, values) for s in sub)
    if kind == "FindPackageShare":
        assert sub.args == ("nut_ros",)
        return str(REPO)
    if kind == "PathJoinSubstitution":
        return str(Path(*[_resolve(s, values) for s in sub.args[0]]))
    if kind == "LaunchConfiguration":
        return values[sub.args[0]]
    raise AssertionError(f"unexpected substitution {kind}")


def _of(entities, kind: str):
    return [e for e in entities if type(e).__name__ == kind]


def _arguments(entities) -> dict:
    args = {}
    for a in _of(entities, "DeclareLaunchArgument"):
        assert a.kwargs.get("description"), f"launch argument {a.args[0]} has no description"
        args[a.args[0]] = a.kwargs.get("default_value")
    return args


def _used_configurations(obj, found: set) -> set:
    if type(obj).__name__ == "LaunchConfiguration":
        found.add(obj.args[0])
    elif isinstance(obj, _Action):
        for value in (*obj.args, *obj.kwargs.values()):
            _used_configurations(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _used_configurations(value, found)
    elif type(obj).__name__ == "dict_items":
        _used_configurations(list(obj), found)
    return found


def _defaults(args: dict) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, default in args.items():  # declaration order: later defaults may refer to earlier arguments
        if default is not None:
            values[name] = _resolve(default, values)
    return values


def test_robot_launch_declares_documented_arguments_and_runs_the_node(load_launch):
    entities = load_launch("nut_ros.launch.py")
    args = _arguments(entities)
    values = _defaults(args)
    assert {"params_file", "namespace", "image_topic", "depth_topic", "camera_info_topic",
            "use_fastdds_profile"} <= set(args)
    assert Path(values["params_file"]) == REPO / "config" / "nut_ros.yaml"
    assert values["compressed_image_topic"] == values["image_topic"] + "/compressed"

    (node,) = _of(entities, "Node")
    assert node.kwargs["package"] == "nut_ros" and node.kwargs["name"] == topics.NODE_NAME
    assert f"{node.kwargs['executable']} = nut_ros.ros.node:main" in (REPO / "setup.py").read_text()
    assert [_resolve(p, values) for p in node.kwargs["parameters"]] == [values["params_file"]]
    remapped = {src: _resolve(dst, values) for src, dst in node.kwargs["remappings"]}
    assert set(remapped) == set(topics.INPUT_TYPES), "every input topic (and only those) is remappable"

    envs = {e.args[0]: e for e in _of(entities, "SetEnvironmentVariable")}
    assert envs.keys() == {"FASTDDS_DEFAULT_PROFILES_FILE", "OMP_WAIT_POLICY"}
    assert envs["OMP_WAIT_POLICY"].args[1] == "PASSIVE"
    env = envs["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert type(env.kwargs["condition"]).__name__ == "IfCondition"
    profile = Path(_resolve(env.args[1], values))
    assert profile == REPO / "config" / "fastdds_shm_large.xml" and profile.is_file()
    assert _used_configurations(entities, set()) <= set(args), "a LaunchConfiguration names no declared argument"


def test_replay_launch_plays_the_bag_into_the_node_with_rviz(load_launch):
    entities = load_launch("replay.launch.py")
    args = _arguments(entities)
    assert args["bag"] is None, "the bag argument is required"
    values = _defaults(args) | {"bag": "/tmp/some_bag"}
    assert (values["image_topic"], values["camera_info_topic"]) == (demo.IMAGE_TOPIC, demo.INFO_TOPIC), \
        "the defaults replay the demo's bag"

    (include,) = _of(entities, "IncludeLaunchDescription")
    source = include.args[0]
    assert Path(_resolve(source.args[0], values)) == LAUNCH / "nut_ros.launch.py"
    robot_args = _arguments(load_launch("nut_ros.launch.py"))
    passed = dict(include.kwargs["launch_arguments"])
    assert set(passed) <= set(robot_args), "replay passes arguments the robot launch does not declare"

    plays = _of(entities, "ExecuteProcess")
    assert plays, "no ros2 bag play"
    for play in plays:
        cmd = [_resolve(c, values) for c in play.kwargs["cmd"]]
        assert cmd[:4] == ["ros2", "bag", "play", "/tmp/some_bag"]
    conditions = sorted(type(p.kwargs["condition"]).__name__ for p in plays)
    assert conditions == ["IfCondition", "UnlessCondition"], "exactly one bag player runs for either loop value"

    (rviz,) = _of(entities, "Node")
    assert rviz.kwargs["package"] == "rviz2"
    assert Path(_resolve(rviz.kwargs["arguments"][1], values)) == REPO / "config" / "nut_ros.rviz"
    assert _used_configurations(entities, set()) <= set(args)


def test_launch_files_are_plain_launch_api_modules():
    for path in LAUNCH.glob("*.launch.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= {"launch", "launch_ros"}, f"{path.name} imports {imported}"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


RVIZ_TYPES = {
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2",
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
}


def test_rviz_config_shows_node_outputs():
    config = yaml.safe_load((REPO / "config" / "nut_ros.rviz").read_text())
    published = {topics.output_topic(name): kind for name, kind in topics.OUTPUT_TYPES.items()}
    shown = {}
    for display in config["Visualization Manager"]["Displays"]:
        if "Topic" not in display:
            continue
        topic, kind = display["Topic"]["Value"], RVIZ_TYPES[display["Class"]]
        assert published.get(topic) == kind, f"RViz shows {topic} as {kind}, which the node does not publish"
        shown[topic] = kind
    assert set(shown) == {topics.output_topic(n) for n in ("points", "depth", "image")}
