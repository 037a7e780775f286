"""``ros2 launch`` of the package's launch files fails (exit code not 0, the reason in one line) where a user's
setup is wrong, instead of running on defaults or staying up idle."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _launch(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run([str(BIN / "ros2"), "launch", "nut_ros", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


@pytest.mark.ros_tools
def test_a_missing_params_file_fails_the_launch(tmp_path):
    done = _launch(tmp_path, "nut_ros.launch.py", f"params_file:={tmp_path / 'missing.yaml'}")
    assert done.returncode != 0 and "missing.yaml' is not a file" in done.stdout + done.stderr


@pytest.mark.ros_tools
def test_a_node_refusing_its_parameters_fails_the_launch(tmp_path):
    (tmp_path / "params.yaml").write_text("nut_ros:\n  ros__parameters:\n    model: huge\n")
    done = _launch(tmp_path, "nut_ros.launch.py", f"params_file:={tmp_path / 'params.yaml'}")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "model='huge' is not a model configuration" in out
    assert "nut_ros_node exited with code 2" in out


def _bag_folder(tmp_path, metadata: str = "rosbag2_bagfile_information: {}\n") -> Path:
    """A folder that looks like a rosbag2 bag (it has a metadata.yaml) without being a playable one."""
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text(metadata)
    return bag


@pytest.mark.ros_tools
@pytest.mark.parametrize("case, says", [
    ("missing", "no_bag' is not a file or folder"),
    ("folder without metadata", "' is a folder without metadata.yaml, not a rosbag2 bag"),
])
def test_a_bag_that_is_not_there_fails_the_replay_launch_before_anything_starts(tmp_path, case, says):
    """Checked up front, as params_file is: one line saying why, no node configured and warmed up first, no
    traceback of ros2 bag play."""
    bag = tmp_path / "no_bag" if case == "missing" else tmp_path
    done = _launch(tmp_path, "replay.launch.py", "rviz:=false", f"bag:={bag}")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and says in out, out
    assert [line for line in out.splitlines() if "ERROR" in line] == [
        next(line for line in out.splitlines() if says in line)], "the reason in one line"
    assert "nut_ros_node" not in out and "ros2 bag play" not in out and "Traceback" not in out, out


@pytest.mark.ros_tools
def test_the_bag_check_through_the_launch_api(tmp_path):
    """The launch file's check, through the real launch API: a bag folder (metadata.yaml) or a single storage file
    passes; anything else raises with the reason."""
    from launch import LaunchContext

    replay = _replay_launch_module()
    (tmp_path / "recording.mcap").write_bytes(b"")
    for bag, says in [(tmp_path / "no_bag", "is not a file or folder"),
                      (tmp_path, "is a folder without metadata.yaml"),
                      (_bag_folder(tmp_path), None), (tmp_path / "recording.mcap", None)]:
        context = LaunchContext()
        context.launch_configurations["bag"] = str(bag)
        if says is None:
            assert replay.check_bag(context) == [], bag
        else:
            with pytest.raises(RuntimeError, match=says):
                replay.check_bag(context)


@pytest.mark.ros_tools
@pytest.mark.parametrize("name, value, says", [("rate", "abc", "rate:='abc': a number > 0"),
                                               ("rate", "0", "a number > 0"), ("play_delay", "-1", "a number > 0"),
                                               ("play_delay", "inf", "a number > 0"),
                                               ("loop", "maybe", "loop:='maybe': use true or false"),
                                               ("rate", "2.5", None), ("loop", "True", None)])
def test_the_playback_arguments_are_checked_before_the_node_starts(name, value, says):
    from launch import LaunchContext

    context = LaunchContext()
    context.launch_configurations.update({"rate": "1.0", "play_delay": "5.0", "loop": "false", name: value})
    replay = _replay_launch_module()
    if says is None:
        assert replay.check_playback(context) == []
    else:
        with pytest.raises(ValueError, match=says):
            replay.check_playback(context)


@pytest.mark.ros_tools
def test_a_bag_that_cannot_be_played_ends_the_replay_launch(tmp_path):
    bag = _bag_folder(tmp_path, "not: a rosbag2 metadata file\n")
    done = _launch(tmp_path, "replay.launch.py", "rviz:=false", f"bag:={bag}")
    assert done.returncode != 0 and "ros2 bag play exited with code" in done.stdout + done.stderr


def _state_and_reliability(tmp_path, params: str, *args: str, domain: int) -> tuple[str, str]:
    """Launch nut_ros.launch.py with ``params`` as its params file and launch ``args``: the node's lifecycle state
    once it answers, and its input_reliability."""
    (tmp_path / "params.yaml").write_text(params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domain)}
    # SIGINT at its default in the launch, which it is stopped with: a shell's background job (CI run with `&`)
    # hands its children SIGINT ignored, and the launch then never ends
    launch = subprocess.Popen([str(BIN / "ros2"), "launch", "nut_ros", "nut_ros.launch.py",
                               f"params_file:={tmp_path / 'params.yaml'}", *args], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def ros2(*args):
        return subprocess.run([str(BIN / "ros2"), *args], env=env, capture_output=True, text=True, timeout=30).stdout

    try:
        deadline, state = time.monotonic() + 60, ""
        while "[" not in state and time.monotonic() < deadline:  # "unconfigured [1]" once the node answers
            state = ros2("lifecycle", "get", "/nut_ros")
            time.sleep(0.5)
        return state, ros2("param", "get", "/nut_ros", "input_reliability")
    finally:
        launch.send_signal(signal.SIGINT)
        launch.wait(timeout=90)  # (a loaded 2-core machine: the node may still be importing torch)


@pytest.mark.ros_tools
def test_the_params_file_decides_what_launch_arguments_leave_unset(tmp_path):
    """autostart and input_reliability are launch arguments too; left unset, the params file's values hold."""
    state, reliability = _state_and_reliability(
        tmp_path, "/**:\n  ros__parameters:\n    autostart: false\n    input_reliability: best_effort\n", domain=163)
    assert state.startswith("unconfigured"), state
    assert "best_effort" in reliability


@pytest.mark.ros_tools
def test_launch_arguments_given_override_the_params_file(tmp_path):
    """``autostart:=false`` (a bool parameter from a launch argument's text) waits for ``ros2 lifecycle set``;
    ``input_reliability:=best_effort`` applies."""
    state, reliability = _state_and_reliability(
        tmp_path, "/**:\n  ros__parameters:\n    autostart: true\n    input_reliability: auto\n",
        "autostart:=false", "input_reliability:=best_effort", domain=164)
    assert state.startswith("unconfigured"), state
    assert "best_effort" in reliability


@pytest.mark.ros_tools
def test_rviz_true_without_rviz2_fails_before_the_node_starts(tmp_path):
    pytest.importorskip("ament_index_python")
    replay = _replay_launch_module()
    if replay.rviz_installed():
        pytest.skip("rviz2 is installed here")
    done = _launch(tmp_path, "replay.launch.py", "rviz:=true", f"bag:={_bag_folder(tmp_path)}")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "rviz:=true but the rviz2 package is not installed" in out
    assert "nut_ros_node" not in out, "no node left running after the failed launch"


@pytest.mark.ros_tools
@pytest.mark.parametrize("value", ["false", "0", "auto", "yes"])
def test_the_rviz_argument(value):
    """false: no RViz; auto: RViz where rviz2 is installed, else a log line; a value but true/false/auto: refused."""
    from launch import LaunchContext
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    replay = _replay_launch_module()
    context = LaunchContext()
    context.launch_configurations.update(rviz=value, rviz_config="nut_ros.rviz")
    if value == "yes":
        with pytest.raises(ValueError, match="use true, false"):
            replay.rviz(context)
        return
    expected = [] if value in ("false", "0") else [Node if replay.rviz_installed() else LogInfo]
    assert [type(a) for a in replay.rviz(context)] == expected


def _replay_launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_launch", REPO / "launch" / "replay.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.ros_tools
@pytest.mark.parametrize("namespace", ["", "robot"])
def test_rviz_shows_a_namespaced_nodes_outputs(namespace):
    """The shipped RViz config names /nut_ros/...; with namespace:=robot RViz's subscriptions are remapped onto
    /robot/nut_ros/... (rviz2 itself stood in for: not installable here)."""
    from launch import LaunchContext

    replay = _replay_launch_module()
    replay.rviz_installed = lambda: True
    context = LaunchContext()
    context.launch_configurations.update(rviz="true", rviz_config="nut_ros.rviz", namespace=namespace)
    node, = replay.rviz(context)
    remaps = {"".join(x.perform(context) for x in a): "".join(x.perform(context) for x in b)
              for a, b in node._Node__remappings or []}  # (launch_ros keeps them as substitutions)
    if namespace:
        assert remaps["/nut_ros/depth"] == "/robot/nut_ros/depth"
        assert remaps["/nut_ros/relative/map_points"] == "/robot/nut_ros/relative/map_points"
    else:
        assert remaps == {}
