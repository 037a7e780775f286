"""Perception on the live Gaussians (no ROS): moving obstacles with stable ids and a persistent local map.

Entry point: :class:`nut_ros.perception.processor.PerceptionProcessor` (``update(result, camera_pose)`` per frame).
The settings load eagerly (the node's parameter check reads them without numpy-heavy or torch imports); the
processor and its types load on first use.
"""
from nut_ros.perception.params import MapParams, ObstacleParams

_LAZY = {"PerceptionProcessor": "processor", "Obstacle": "types", "ObstacleList": "types",
         "PerceptionOutput": "types"}

__all__ = ["MapParams", "ObstacleParams", "Obstacle", "ObstacleList", "PerceptionOutput", "PerceptionProcessor"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nut_ros.perception.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
