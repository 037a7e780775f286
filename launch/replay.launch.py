"""Replay a rosbag into the nut_ros node and show its outputs in RViz.

Example (the bag ``nut_ros_demo`` writes): ros2 launch nut_ros replay.launch.py bag:=out/demo/input_bag

The bag starts once the node subscribes to every topic in it (the node subscribes when it is active, a few seconds
after start-up), so every frame reaches it; the node subscribes reliably, as ``ros2 bag play`` publishes. The topic
defaults are those ``nut_ros_make_bag`` writes (namespace ``/camera``). The node subscribes to odometry only with
``use_odometry: true`` in ``params_file``: without it a bag holding odometry (``nut_ros_make_bag --poses``) starts
after ``wait_for_node`` seconds.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from nut_ros.ros.launch_exit import fail_on_error_exit

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
    "wait_for_node": ("120", "Seconds ros2 bag play waits for the node to subscribe before it plays anyway."),
    "rviz": ("true", "Start RViz with config/nut_ros.rviz."),
    "rviz_config": (PathJoinSubstitution([SHARE, "config", "nut_ros.rviz"]), "RViz configuration file."),
}


def generate_launch_description():
    config = LaunchConfiguration
    node_args = ("params_file", "namespace", "image_topic", "depth_topic", "camera_info_topic", "odom_topic")
    play = ["ros2", "bag", "play", config("bag"), "--rate", config("rate"), "--wait-for-subscribers",
            config("wait_for_node")]
    # --delay: the node's side of discovery may finish a moment after the player sees the subscription
    players = [ExecuteProcess(cmd=[*play, "--delay", "1.0"], output="screen",
                              condition=UnlessCondition(config("loop"))),
               ExecuteProcess(cmd=[*play, "--delay", "1.0", "--loop"], output="screen",
                              condition=IfCondition(config("loop")))]

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "nut_ros.launch.py"])),
            launch_arguments=[*((name, config(name)) for name in node_args), ("input_reliability", "reliable")],
        ),
        *players,
        # a bag that cannot be played fails the launch instead of leaving it idle
        *(RegisterEventHandler(OnProcessExit(target_action=player, on_exit=fail_on_error_exit("ros2 bag play")))
          for player in players),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config("rviz_config")],
             condition=IfCondition(config("rviz")), output="screen"),
    ])
