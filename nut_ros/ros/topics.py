"""Topic catalogue of the ``nut_ros`` node: relative names (remappable) and ROS message types.

Kept free of rclpy so that tools, tests and the RViz/launch checks can read it anywhere.
"""
NODE_NAME = "nut_ros"

# Inputs, relative to the node's namespace: remap them (``-r image_raw:=/camera/color/image_raw``); a transport
# topic follows its base topic's remapping, as image_transport's do (``input_topic``).
IMAGE = "image_raw"
COMPRESSED_IMAGE = "image_raw/compressed"
DEPTH = "depth"
COMPRESSED_DEPTH = "depth/compressedDepth"
CAMERA_INFO = "camera_info"
ODOMETRY = "odom"
TRANSPORT_BASES = {COMPRESSED_IMAGE: IMAGE, COMPRESSED_DEPTH: DEPTH}  # transport topic -> its base topic

INPUT_TYPES = {
    IMAGE: "sensor_msgs/msg/Image",
    COMPRESSED_IMAGE: "sensor_msgs/msg/CompressedImage",
    DEPTH: "sensor_msgs/msg/Image",
    COMPRESSED_DEPTH: "sensor_msgs/msg/CompressedImage",
    CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    ODOMETRY: "nav_msgs/msg/Odometry",
}

# Outputs, private to the node (``~/name`` -> ``/<namespace>/nut_ros/name``), and the global diagnostics topic.
OUTPUT_TYPES = {
    "depth": "sensor_msgs/msg/Image",
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "points": "sensor_msgs/msg/PointCloud2",
    "gaussians": "nut_ros_msgs/msg/GaussianSet",
    "stats": "nut_ros_msgs/msg/PipelineStats",
    # the perception stage (parameter ``perception``): every processed frame ...
    "obstacles": "nut_ros_msgs/msg/ObstacleArray",
    "obstacle_markers": "visualization_msgs/msg/MarkerArray",
    # ... and the local map every ``map_period``, transient local (a late subscriber gets the last map)
    "map_points": "sensor_msgs/msg/PointCloud2",
    "map": "nut_ros_msgs/msg/GaussianSet",
}
# Lengths without metric scale (depth from motion without odometry) are not published where REP-118 / REP-103 readers
# take metres: such a frame's depth and points, and such a map's points, go to ``~/relative/<name>`` instead, in the
# run's relative unit (GaussianSet and ObstacleArray carry a ``metric`` flag and keep one topic).
RELATIVE = {name: f"relative/{name}" for name in ("depth", "points", "map_points")}
OUTPUT_TYPES.update({relative: OUTPUT_TYPES[name] for name, relative in RELATIVE.items()})
PERCEPTION_OUTPUTS = ("obstacles", "obstacle_markers", "map_points", "map", RELATIVE["map_points"])
MAP_OUTPUTS = ("map_points", "map", RELATIVE["map_points"])
DIAGNOSTICS = "/diagnostics"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


def switch_of(name: str) -> str:
    """The output whose ``publish_<output>`` parameter governs ``name`` (a relative output's metric twin)."""
    return next((metric for metric, relative in RELATIVE.items() if relative == name), name)


def length_output(name: str, metric: bool) -> str:
    """Where output ``name`` goes for data with (``metric``) or without metric scale."""
    return name if metric else RELATIVE.get(name, name)


def output_topic(name: str, namespace: str = "/", node_name: str = NODE_NAME) -> str:
    """Fully qualified name of the private output ``~/name`` of a node in ``namespace``."""
    return "/" + "/".join(p for p in (namespace.strip("/"), node_name, name) if p)


def output_types(perception: bool) -> dict[str, str]:
    """The outputs the node publishes, name -> message type: :data:`OUTPUT_TYPES`, without the perception outputs
    unless ``perception`` (no idle publisher for ``ros2 topic echo`` to wait on forever)."""
    return {name: kind for name, kind in OUTPUT_TYPES.items() if perception or name not in PERCEPTION_OUTPUTS}


def input_topic(node, name: str) -> str:
    """Fully qualified topic of input ``name`` for an rclpy ``node`` (its namespace and remappings). A transport
    topic is its resolved base topic and the transport suffix, as image_transport derives it (``-r
    image_raw:=/camera/color/image_raw``: ``/camera/color/image_raw/compressed``), unless a rule remaps it itself."""
    resolved, base = node.resolve_topic_name(name), TRANSPORT_BASES.get(name)
    if base is None or resolved != node.resolve_topic_name(name, only_expand=True):
        return resolved
    return node.resolve_topic_name(base) + name[len(base):]


def resolve_type(type_name: str):
    """The rclpy message class for ``pkg/msg/Name`` (imports the generated Python module)."""
    import importlib

    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)
