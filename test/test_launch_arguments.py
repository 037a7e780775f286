"""What the launch files hand the node, read through the real ``launch`` API without starting a process: its
environment (the Fast DDS profile) and its parameters (launch arguments that set them)."""
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def launched_node(launch_file: str, **arguments: str):
    """Visit ``launch/<launch_file>`` with ``arguments`` as ``ros2 launch`` would (arguments, includes, opaque
    functions, environment actions), stopping at the processes: the launch context and the nut_ros node action."""
    from launch import LaunchContext, LaunchDescription
    from launch.actions import ExecuteProcess, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    context, nodes = LaunchContext(), []

    def visit(entity):
        if isinstance(entity, ExecuteProcess):  # launch_ros's Node and LifecycleNode are ExecuteProcess actions
            nodes.append(entity)
            return
        for sub in entity.visit(context) or []:
            visit(sub)

    visit(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / launch_file)), launch_arguments=arguments.items())]))
    node, = (n for n in nodes if getattr(n, "node_executable", None) == "nut_ros_node")
    return context, node


def node_parameters(launch_file: str, **arguments: str) -> dict:
    """The node's parameters as the launch gives them (its parameter files in order, later ones winning)."""
    context, node = launched_node(launch_file, **arguments)
    node._perform_substitutions(context)  # (what Node.execute does first: writes the parameter files)
    values = {}
    for argument, is_file in node._Node__expanded_parameter_arguments:
        assert is_file, argument
        for section in yaml.safe_load(Path(argument).read_text()).values():
            values.update(section["ros__parameters"])
    return values


@pytest.mark.ros_tools
def test_a_fastdds_profile_in_the_environment_is_kept(monkeypatch, tmp_path):
    """A profile the user exported (a fleet's, reaching other hosts) survives the launch; the shipped one is
    host-only and would cut the node off."""
    fleet = tmp_path / "fleet_profile.xml"
    monkeypatch.setenv(PROFILE_ENV, str(fleet))
    launched_node("nut_ros.launch.py")
    assert os.environ[PROFILE_ENV] == str(fleet)


@pytest.mark.ros_tools
def test_the_shipped_fastdds_profile_is_set_when_the_environment_names_none(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    launched_node("nut_ros.launch.py")
    assert Path(os.environ[PROFILE_ENV]).name == "fastdds_shm_large.xml"
    monkeypatch.delenv(PROFILE_ENV)
    launched_node("nut_ros.launch.py", use_fastdds_profile="false")
    assert PROFILE_ENV not in os.environ


@pytest.fixture
def bag(tmp_path) -> str:
    """A folder the replay launch takes for a bag (it checks that one is there: a folder with metadata.yaml)."""
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    return str(tmp_path)


@pytest.mark.ros_tools
@pytest.mark.parametrize("value", ["best_effort", "reliable"])
def test_replay_hands_input_reliability_to_the_node(value, bag):
    """A bag of a best-effort camera replays best effort (rosbag2 keeps the recorded QoS): input_reliability is a
    replay argument, and it reaches the node."""
    assert node_parameters("replay.launch.py", bag=bag, rviz="false",
                           input_reliability=value)["input_reliability"] == value


@pytest.mark.ros_tools
def test_replay_subscribes_as_the_bag_publishes_by_default(bag):
    assert node_parameters("replay.launch.py", bag=bag, rviz="false")["input_reliability"] == "auto"


@pytest.mark.ros_tools
def test_the_readme_next_step_replays_the_demo_bag_with_declared_arguments(capsys):
    """The README's first commands stay ``make demo`` and ``make test``; its next step replays the demo's input bag
    with ``ros2 launch nut_ros replay.launch.py``, giving only arguments the launch file declares (real launch API),
    on a bag under the demo's default output folder."""
    import re

    from launch import LaunchContext
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from nut_ros.tools import demo

    readme = (REPO / "README.md").read_text()
    assert re.match(r"```bash\nmake demo +#.*\nmake test +#.*\n```\n", readme), "the first two commands, at the top"
    step = readme[readme.index("Next step:"):].split("\n\n")[0]
    assert "make ros-tools" in step and "$PWD/.venv/bin" in step
    launch_file, args = re.search(r"`ros2 launch nut_ros (\S+) ([^`]+)`", step).groups()
    given = dict(arg.split(":=", 1) for arg in args.split())
    source = PythonLaunchDescriptionSource(str(REPO / "launch" / launch_file))
    declared = {a.name for a in source.get_launch_description(LaunchContext()).get_launch_arguments()}
    assert set(given) <= declared and "bag" in given, (given, declared)
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    default_out = re.search(r"--out OUT\s.*?\(default: ([^)\s]+)\)", capsys.readouterr().out, re.S).group(1)
    assert Path(given["bag"]).parent == Path(default_out) and f"`{default_out}/`" in step, (given, default_out)
