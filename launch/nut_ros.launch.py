"""Run the nut_ros lifecycle node on a live camera; it configures and activates itself (autostart).

Example: ros2 launch nut_ros nut_ros.launch.py image_topic:=/camera/color/image_raw \
    camera_info_topic:=/camera/color/camera_info depth_topic:=/camera/aligned_depth_to_color/image_raw

The node runs with the shared-memory Fast DDS profile (config/fastdds_shm_large.xml) unless the environment names a
profile already (FASTDDS_DEFAULT_PROFILES_FILE), and subscribes reliably to reliable cameras, so 1080p images arrive
whole; a best-effort camera needs the same profile in its own process. The shipped profile is host-only (shared
memory and UDP on 127.0.0.1): nodes on other machines are not discovered; use_fastdds_profile:=false turns it off.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from nut_ros.ros.launch_exit import fail_on_error_exit
from nut_ros.ros.transport import PROFILE_ENV

ARGUMENTS = {
    "params_file": (PathJoinSubstitution([FindPackageShare("nut_ros"), "config", "nut_ros.yaml"]),
                    "ROS parameters file of the node (defaults to the package's config/nut_ros.yaml)."),
    "namespace": ("", "Namespace of the node; its outputs become <namespace>/nut_ros/*."),
    "image_topic": ("/camera/color/image_raw", "sensor_msgs/Image input (image_transport: raw)."),
    "compressed_image_topic": ([LaunchConfiguration("image_topic"), "/compressed"],
                               "sensor_msgs/CompressedImage input (image_transport: compressed)."),
    "depth_topic": ("/camera/aligned_depth_to_color/image_raw",
                    "Optional depth image aligned to the colour image (16UC1 or 32FC1)."),
    "camera_info_topic": ("/camera/color/camera_info", "CameraInfo of the colour image."),
    "odom_topic": ("/odom", "nav_msgs/Odometry input (parameter use_odometry)."),
    "autostart": ("", "Configure and activate the node at start-up (true); false: `ros2 lifecycle set` does it. "
                  "Empty: as params_file says (config/nut_ros.yaml: true)."),
    "input_reliability": ("", "Input QoS reliability: auto (as the camera publishes), reliable or best_effort. Empty: "
                          "as params_file says (config/nut_ros.yaml: auto)."),
    "use_fastdds_profile": ("true", "Set FASTDDS_DEFAULT_PROFILES_FILE to fastdds_profile, unless the environment "
                            "names a profile already (that one is kept). The shipped profile is host-only (shared "
                            "memory + UDP on 127.0.0.1: nodes on other machines are not discovered); large messages "
                            "arrive whole with it (best-effort publishers and subscribers of the outputs need it "
                            "too). false: Fast DDS's defaults, or the profile the environment names."),
    "fastdds_profile": (PathJoinSubstitution([FindPackageShare("nut_ros"), "config", "fastdds_shm_large.xml"]),
                        "Fast DDS XML profile used when use_fastdds_profile is true."),
    "log_level": ("info", "Log level of the node (debug, info, warn, error)."),
}
OVERRIDES = {"autostart": bool, "input_reliability": str}  # launch arguments that set node parameters when given


def check_params_file(context):
    """A params file that is not there fails the launch (launch_ros would warn and run on the defaults)."""
    path = LaunchConfiguration("params_file").perform(context)
    if not os.path.isfile(path):
        raise RuntimeError(f"params_file {path!r} is not a file")
    return []


def fastdds_profile(context):
    """With use_fastdds_profile, fastdds_profile for the processes launched, unless the environment names a profile
    already (a fleet's, say: the shipped one, host-only, would cut the node off from other machines)."""
    wanted = IfCondition(LaunchConfiguration("use_fastdds_profile")).evaluate(context)
    if not wanted or context.environment.get(PROFILE_ENV):
        return []
    return [SetEnvironmentVariable(PROFILE_ENV, LaunchConfiguration("fastdds_profile"))]


def overrides(context) -> dict:
    """The parameters given as launch arguments (OVERRIDES): they override params_file; those left empty do not."""
    given = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    # the substitution, not its text: launch_ros parses a substitution into the type (a str would be refused as one)
    return {name: ParameterValue(LaunchConfiguration(name), value_type=OVERRIDES[name])
            for name, value in given.items() if value}


def launch_node(context):
    """The node (its parameters: params_file, then the launch arguments given) and its exit handler."""
    config = LaunchConfiguration
    node = LifecycleNode(
        package="nut_ros",
        executable="nut_ros_node",
        name="nut_ros",
        namespace=config("namespace"),
        parameters=[config("params_file"), *filter(None, [overrides(context)])],
        remappings=[
            ("image_raw", config("image_topic")),
            ("image_raw/compressed", config("compressed_image_topic")),
            ("depth", config("depth_topic")),
            ("depth/compressedDepth", [config("depth_topic"), "/compressedDepth"]),
            ("camera_info", config("camera_info_topic")),
            ("odom", config("odom_topic")),
        ],
        arguments=["--ros-args", "--log-level", config("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=fail_on_error_exit("nut_ros_node")))]


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        OpaqueFunction(function=check_params_file),
        SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE"),  # no OpenMP spinning on shared CPU cores
        OpaqueFunction(function=fastdds_profile),
        OpaqueFunction(function=launch_node),
    ])
