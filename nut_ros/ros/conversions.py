"""Public API of the ROS conversion layer (one import point; implementations live in the modules named below).

Every builder takes ``flavor`` ("auto" | "rclpy" | "rosbags", see ``msg_types``); every reader is duck-typed and
accepts rclpy and rosbags messages alike. Bad input raises ``ConversionError`` (a ``ValueError``).
"""
from nut_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from nut_ros.ros.compressed import compress_depth, compress_image, decompress_depth, decompress_image
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.gaussian_cdr import gaussian_set_cdr
from nut_ros.ros.gaussian_msgs import gaussian_cloud_to_msg, gaussian_set_times_ns, msg_to_gaussian_cloud
from nut_ros.ros.images import (depth_to_image, image_to_depth_m, image_to_numpy, image_to_rgb, numpy_to_image)
from nut_ros.ros.msg_types import make_header, make_time, msg_class, stamp_to_ns
from nut_ros.ros.pointcloud import pointcloud2_to_points, points_to_pointcloud2

__all__ = [
    "ConversionError",
    "camera_info_to_intrinsics", "intrinsics_to_camera_info",
    "compress_depth", "compress_image", "decompress_depth", "decompress_image",
    "gaussian_cloud_to_msg", "gaussian_set_cdr", "gaussian_set_times_ns", "msg_to_gaussian_cloud",
    "depth_to_image", "image_to_depth_m", "image_to_numpy", "image_to_rgb", "numpy_to_image",
    "make_header", "make_time", "msg_class", "stamp_to_ns",
    "pointcloud2_to_points", "points_to_pointcloud2",
]
