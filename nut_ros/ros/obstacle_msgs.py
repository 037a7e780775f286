"""Perception outputs -> messages: ``nut_ros_msgs/ObstacleArray``, an RViz ``visualization_msgs/MarkerArray``
(a box and a velocity arrow per obstacle), and the local map as ``PointCloud2`` + ``nut_ros_msgs/GaussianSet``.

Works in both flavors of :mod:`nut_ros.ros.msg_types` (rclpy, or rosbags without ROS).
"""
from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

from nut_ros.perception.types import Obstacle, ObstacleList
from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.gaussian_msgs import gaussian_cloud_to_msg
from nut_ros.ros.msg_types import make_header, msg_class, resolve_flavor
from nut_ros.ros.pointcloud import points_to_pointcloud2

MARKER_NAMESPACE = "nut_ros_obstacles"
ARROW_SHAFT = 0.05  # arrow shaft diameter (m); head twice as wide
BOX_ALPHA = 0.35


def _vec(cls: type, v) -> Any:
    return cls(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _uuid_field(ob: Obstacle, flavor: str):
    data = np.frombuffer(ob.id.bytes, np.uint8).copy()
    return msg_class("unique_identifier_msgs/msg/UUID", flavor)(uuid=data if resolve_flavor(flavor) == "rosbags"
                                                          else data.tolist())


def _f64(values: np.ndarray, flavor: str):
    flat = np.ascontiguousarray(values, np.float64).reshape(-1)
    return flat if resolve_flavor(flavor) == "rosbags" else flat.tolist()


def obstacles_to_msg(obstacles: ObstacleList, flavor: str = "auto"):
    """An ObstacleArray with every obstacle's header equal to the array's."""
    point, vector = msg_class("geometry_msgs/msg/Point", flavor), msg_class("geometry_msgs/msg/Vector3", flavor)
    ob_cls = msg_class("nut_ros_msgs/msg/Obstacle", flavor)
    header = make_header(obstacles.stamp_ns, obstacles.frame_id, flavor)
    items = [ob_cls(header=make_header(obstacles.stamp_ns, obstacles.frame_id, flavor), id=_uuid_field(ob, flavor),
                    position=_vec(point, ob.position), velocity=_vec(vector, ob.velocity), size=_vec(vector, ob.size),
                    position_covariance=_f64(ob.position_covariance, flavor),
                    velocity_covariance=_f64(ob.velocity_covariance, flavor), confidence=float(ob.confidence),
                    age=int(ob.age), metric=bool(obstacles.metric))
             for ob in obstacles.obstacles]
    return msg_class("nut_ros_msgs/msg/ObstacleArray", flavor)(header=header, metric=bool(obstacles.metric),
                                                          obstacles=items)


def marker_id(ob: Obstacle) -> int:
    """A 30-bit marker id derived from the track's UUID (stable for the track's life); its box is ``2·id``, its
    arrow ``2·id + 1``, both valid int32."""
    return ob.id.int & 0x3FFFFFFF


def obstacle_markers(obstacles: ObstacleList, lifetime_s: float, flavor: str = "auto"):
    """A MarkerArray: DELETEALL for the namespace, then per obstacle a translucent CUBE (its box) and an ARROW from
    its centre along its velocity (length = metres travelled in one second), coloured by track id."""
    marker = msg_class("visualization_msgs/msg/Marker", flavor)
    point, vector = msg_class("geometry_msgs/msg/Point", flavor), msg_class("geometry_msgs/msg/Vector3", flavor)
    pose, quat = msg_class("geometry_msgs/msg/Pose", flavor), msg_class("geometry_msgs/msg/Quaternion", flavor)
    colour = msg_class("std_msgs/msg/ColorRGBA", flavor)
    duration = msg_class("builtin_interfaces/msg/Duration", flavor)
    sec, nanosec = divmod(round(lifetime_s * 1e9), 10**9)  # (nanosec below 1e9 after rounding too)
    life = duration(sec=int(sec), nanosec=int(nanosec))
    common = dict(ns=MARKER_NAMESPACE, frame_locked=False, text="", mesh_resource="", mesh_use_embedded_materials=False,
                  lifetime=life)
    if resolve_flavor(flavor) == "rosbags":
        common.update(points=[], colors=[], texture_resource="",
                      texture=msg_class("sensor_msgs/msg/CompressedImage", flavor)(
                          header=make_header(0, "", flavor), format="", data=np.zeros(0, np.uint8)),
                      uv_coordinates=[], mesh_file=msg_class("visualization_msgs/msg/MeshFile", flavor)(
                          filename="", data=np.zeros(0, np.uint8)))
    header = lambda: make_header(obstacles.stamp_ns, obstacles.frame_id, flavor)  # noqa: E731
    identity = lambda p: pose(position=_vec(point, p), orientation=quat(x=0.0, y=0.0, z=0.0, w=1.0))  # noqa: E731
    out = [marker(**{**common, "points": []}, header=header(), id=0, type=marker.CUBE, action=marker.DELETEALL,
                  pose=identity((0, 0, 0)), scale=_vec(vector, (1, 1, 1)), color=colour(r=0.0, g=0.0, b=0.0, a=0.0))]
    for ob in obstacles.obstacles:
        mid = marker_id(ob)
        r, g, b = colorsys.hsv_to_rgb((ob.id.int % 360) / 360.0, 0.85, 1.0)
        out.append(marker(**common, header=header(), id=2 * mid, type=marker.CUBE, action=marker.ADD,
                          pose=identity(ob.position), scale=_vec(vector, np.maximum(ob.size, 1e-3)),
                          color=colour(r=r, g=g, b=b, a=BOX_ALPHA)))
        arrow = dict(common, points=[_vec(point, ob.position), _vec(point, ob.position + ob.velocity)])
        out.append(marker(**arrow, header=header(), id=2 * mid + 1, type=marker.ARROW,
                          action=marker.ADD, pose=identity((0, 0, 0)),
                          scale=_vec(vector, (ARROW_SHAFT, 2 * ARROW_SHAFT, 2 * ARROW_SHAFT)),
                          color=colour(r=r, g=g, b=b, a=1.0)))
    return msg_class("visualization_msgs/msg/MarkerArray", flavor)(markers=out)


def map_messages(cloud: GaussianCloud, stamp_ns: int, frame_id: str, depth_source: str, flavor: str = "auto"):
    """``(PointCloud2 with colours, GaussianSet)`` of a local-map snapshot in ``frame_id`` (the fixed frame)."""
    rgb = np.clip(cloud.colors * 255 + 0.5, 0, 255).astype(np.uint8)
    return (points_to_pointcloud2(cloud.positions, rgb, stamp_ns, frame_id, flavor),
            gaussian_cloud_to_msg(cloud, stamp_ns, frame_id, depth_source=depth_source, flavor=flavor))
