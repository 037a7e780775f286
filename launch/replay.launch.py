"""Replay a rosbag into the nut_ros node and show its outputs in RViz.

Example: ros2 launch nut_ros replay.launch.py bag:=/tmp/nut_ros_demo/input_bag
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("nut_ros")
ARGUMENTS = {
    "bag": (None, "Path of the rosbag2 folder to play (required)."),
    "rate": ("1.0", "Playback rate factor of ros2 bag play."),
    "loop": ("false", "Play the bag in a loop."),
    "params_file": (PathJoinSubstitution([SHARE, "config", "nut_ros.yaml"]), "ROS parameters file of the node."),
    "namespace": ("", "Namespace of the node."),
    "image_topic": ("/camera/image_raw", "Image topic recorded in the bag."),
    "depth_topic": ("/camera/depth/image_raw", "Depth topic recorded in the bag (if any)."),
    "camera_info_topic": ("/camera/camera_info", "CameraInfo topic recorded in the bag."),
    "rviz": ("true", "Start RViz with config/nut_ros.rviz."),
    "rviz_config": (PathJoinSubstitution([SHARE, "config", "nut_ros.rviz"]), "RViz configuration file."),
}


def generate_launch_description():
    config = LaunchConfiguration
    node_args = ("params_file", "namespace", "image_topic", "depth_topic", "camera_info_topic")
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "nut_ros.launch.py"])),
            launch_arguments={name: config(name) for name in node_args}.items(),
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", config("bag"), "--rate", config("rate")],
            output="screen",
            condition=UnlessCondition(config("loop")),
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", config("bag"), "--rate", config("rate"), "--loop"],
            output="screen",
            condition=IfCondition(config("loop")),
        ),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config("rviz_config")],
             condition=IfCondition(config("rviz")), output="screen"),
    ])
