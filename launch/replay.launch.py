"""Replay a rosbag into the nut_ros node and show its outputs in RViz.

Example (the bag ``nut_ros_demo`` writes): ros2 launch nut_ros replay.launch.py bag:=out/demo/input_bag

``ros2 bag play`` starts once the node reports that it is active (its log line "active: listening on ...": it has
subscribed, a few seconds after start-up, or when ``ros2 lifecycle set`` activates a node started with ``autostart:
false``; at a log level above info, its lifecycle transition event, which launch may miss while discovery is under
way) and plays after ``play_delay`` seconds more, for discovery to match the bag's publishers with the node's
subscriptions, so every frame reaches it. ``input_reliability:=auto`` (the default) subscribes as the bag's
publishers offer: ``ros2 bag play`` replays each topic with the QoS it was recorded with, so a bag of a best-effort
camera is received best effort. The topic defaults are those ``nut_ros_make_bag`` writes (namespace ``/camera``).
"""
import os
from typing import Callable

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.substitutions import FindPackageShare

from nut_ros.ros.launch_exit import fail_on_error_exit
from nut_ros.ros.topics import OUTPUT_TYPES, output_topic

SHARE = FindPackageShare("nut_ros")
ARGUMENTS = {
    "bag": (None, "Path of the rosbag2 folder to play (required)."),
    "rate": ("1.0", "Playback rate factor of ros2 bag play."),
    "loop": ("false", "Play the bag in a loop."),
    "params_file": (PathJoinSubstitution([SHARE, "config", "nut_ros.yaml"]), "ROS parameters file of the node."),
    "namespace": ("", "Namespace of the node."),
    "image_topic": ("/camera/image_raw", "Image topic recorded in the bag."),
    "depth_topic": ("/camera/depth", "Depth topic recorded in the bag (if any)."),
    "camera_info_topic": ("/camera/camera_info", "CameraInfo topic recorded in the bag."),
    "odom_topic": ("/camera/odom", "nav_msgs/Odometry topic recorded in the bag (if any; parameter use_odometry)."),
    "input_reliability": ("auto", "Input QoS reliability of the node: auto (as the bag's publishers offer; ros2 bag "
                          "play keeps the recorded QoS), reliable (a bag of a best-effort camera then delivers "
                          "nothing) or best_effort. Empty: as params_file says."),
    "play_delay": ("5.0", "Seconds (> 0) ros2 bag play waits, once started, before it plays (discovery)."),
    "rviz": ("auto", "Start RViz with rviz_config: true (1), false (0), or auto (when rviz2 is installed)."),
    "rviz_config": (PathJoinSubstitution([SHARE, "config", "nut_ros.rviz"]), "RViz configuration file."),
}

ACTIVE = b"active: listening on"  # the node's log line once it has subscribed (LifecycleNode.on_activate)


def start_once_active(players: list) -> tuple[Callable, Callable]:
    """Handlers that start ``players`` the first time the node is seen active: of the processes' output (a line
    holding :data:`ACTIVE`) and of its lifecycle transition to active (an OpaqueFunction's function); later
    activations (``ros2 lifecycle``) start nothing more."""
    started = []

    def start(*_):
        if started:
            return None
        started.append(True)
        return players

    return (lambda event: start() if ACTIVE in event.text else None), start


def check_bag(context) -> list:
    """A ``bag`` that ``ros2 bag play`` cannot open for want of it fails the launch at once, in one line, before the
    node starts (as nut_ros.launch.py's params_file): a path that is not there, or a folder without the
    ``metadata.yaml`` of a rosbag2 bag (rosbag2 plays a folder only with it; a single storage file is played
    as it is)."""
    path = LaunchConfiguration("bag").perform(context)
    if not os.path.exists(path):
        raise RuntimeError(f"bag {path!r} is not a file or folder (bag:= takes the rosbag2 folder to play, e.g. "
                           f"out/demo/input_bag)")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "metadata.yaml")):
        raise RuntimeError(f"bag {path!r} is a folder without metadata.yaml, not a rosbag2 bag (bag:= takes the "
                           f"bag's own folder, the one holding metadata.yaml)")
    return []


def check_playback(context) -> list:
    """``rate`` and ``play_delay`` that are not numbers > 0, or a ``loop`` that is not a launch boolean, fail the
    launch at once, in one line, before the node starts (``ros2 bag play`` would refuse them only once the node is
    up)."""
    for name in ("rate", "play_delay"):
        value = LaunchConfiguration(name).perform(context)
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 < number < float("inf"):
            raise ValueError(f"{name}:={value!r}: a number > 0")
    loop = LaunchConfiguration("loop").perform(context).strip().lower()
    if loop not in ("true", "false", "1", "0"):
        raise ValueError(f"loop:={loop!r}: use true or false (1, 0, as launch conditions read them)")
    return []


def rviz_installed() -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return False
    return True


def rviz(context) -> list:
    """RViz on ``rviz_config`` as the ``rviz`` argument says; ``true`` without rviz2 installed fails the launch
    before the node starts (``auto`` then replays without it)."""
    wanted = LaunchConfiguration("rviz").perform(context).strip().lower()
    wanted = {"1": "true", "0": "false"}.get(wanted, wanted)
    if wanted not in ("true", "false", "auto"):
        raise ValueError(f"rviz:={wanted!r}: use true, false (1, 0, as launch conditions read them) or auto")
    if wanted == "false":
        return []
    if not rviz_installed():
        if wanted == "true":
            raise RuntimeError("rviz:=true but the rviz2 package is not installed (rviz:=auto or false replays "
                               "without it)")
        return [LogInfo(msg="rviz2 is not installed: replaying without RViz")]
    # the shipped config shows the node's outputs at /nut_ros/...: a namespaced node's are remapped onto them
    namespace = LaunchConfiguration("namespace").perform(context)
    remaps = [(output_topic(name), output_topic(name, namespace)) for name in OUTPUT_TYPES] if namespace.strip("/") \
        else []
    return [Node(package="rviz2", executable="rviz2", name="rviz2", remappings=remaps,
                 arguments=["-d", LaunchConfiguration("rviz_config")], output="screen")]


def generate_launch_description():
    config = LaunchConfiguration
    node_args = ("params_file", "namespace", "image_topic", "depth_topic", "camera_info_topic", "odom_topic",
                 "input_reliability")
    play = ["ros2", "bag", "play", config("bag"), "--rate", config("rate"), "--delay", config("play_delay")]
    players = [ExecuteProcess(cmd=play, output="screen", condition=UnlessCondition(config("loop"))),
               ExecuteProcess(cmd=[*play, "--loop"], output="screen", condition=IfCondition(config("loop")))]
    on_output, on_active = start_once_active(players)

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        OpaqueFunction(function=check_bag),  # first: a bag that is not there fails before anything starts
        OpaqueFunction(function=check_playback),
        OpaqueFunction(function=rviz),  # then a wrong rviz argument, before the node starts
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "nut_ros.launch.py"])),
            launch_arguments=[(name, config(name)) for name in node_args],
        ),
        RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output)),
        RegisterEventHandler(OnStateTransition(goal_state="active", entities=[OpaqueFunction(function=on_active)])),
        # a bag that cannot be played fails the launch instead of leaving it idle
        *(RegisterEventHandler(OnProcessExit(target_action=player, on_exit=fail_on_error_exit("ros2 bag play")))
          for player in players),
    ])
