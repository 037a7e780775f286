"""Perception on the live Gaussians (no ROS): moving obstacles with stable ids and a persistent local map.

Entry point: :class:`nut_ros.perception.processor.PerceptionProcessor` (``update(result, camera_pose)`` per frame).
"""
from nut_ros.perception.params import MapParams, ObstacleParams
from nut_ros.perception.processor import PerceptionProcessor
from nut_ros.perception.types import Obstacle, ObstacleList, PerceptionOutput

__all__ = ["MapParams", "ObstacleParams", "Obstacle", "ObstacleList", "PerceptionOutput", "PerceptionProcessor"]
