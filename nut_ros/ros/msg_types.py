"""Message classes from either rclpy or rosbags, stamps and array-field helpers.

Conversions build messages of one *flavor*: ``"rclpy"`` (generated ``pkg.msg`` classes, for nodes) or
``"rosbags"`` (rosbags' kilted typestore with ``nut_ros_msgs`` registered, for bag tools that run without ROS).
``"auto"`` picks rclpy when it is importable. Readers are duck-typed and accept messages of both flavors.
"""
from __future__ import annotations

import array
import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nut_ros.ros.errors import ConversionError
from nut_ros.ros.installed import share_folders

NUT_MSG_TYPES = ("nut_ros_msgs/msg/GaussianSet", "nut_ros_msgs/msg/PipelineStats", "nut_ros_msgs/msg/Obstacle",
                 "nut_ros_msgs/msg/ObstacleArray")
_REPO_MSG_DIR = Path(__file__).resolve().parents[2] / "nut_ros_msgs" / "msg"


@lru_cache(maxsize=None)
def _rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_flavor(flavor: str = "auto") -> str:
    """``"rclpy"`` or ``"rosbags"`` for a requested flavor (``"auto"`` prefers rclpy)."""
    if flavor == "auto":
        return "rclpy" if _rclpy_available() else "rosbags"
    if flavor not in ("rclpy", "rosbags"):
        raise ValueError(f"flavor must be 'auto', 'rclpy' or 'rosbags', got {flavor!r}")
    return flavor


def msg_definition_dir() -> Path:
    """Folder with the ``nut_ros_msgs`` ``.msg`` files: the source tree, else an installed share folder
    (:func:`nut_ros.ros.installed.share_folders`)."""
    for candidate in [_REPO_MSG_DIR] + [folder / "msg" for folder in share_folders("nut_ros_msgs")]:
        if (candidate / "GaussianSet.msg").is_file():
            return candidate
    raise FileNotFoundError("nut_ros_msgs .msg files not found in the source tree, the ament index, "
                            "AMENT_PREFIX_PATH or sys.prefix")


def nut_msg_definitions() -> dict[str, str]:
    """``{"nut_ros_msgs/msg/Name": msg text}`` for every custom message."""
    folder = msg_definition_dir()
    return {name: (folder / (name.rsplit("/", 1)[1] + ".msg")).read_text() for name in NUT_MSG_TYPES}


@lru_cache(maxsize=None)
def rosbags_typestore():
    """rosbags typestore of ROS 2 kilted with the ``nut_ros_msgs`` types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for name, text in nut_msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def msg_class(type_name: str, flavor: str = "auto") -> type:
    """Class of ``pkg/msg/Name`` in the given flavor."""
    if resolve_flavor(flavor) == "rosbags":
        try:
            return rosbags_typestore().types[type_name]
        except KeyError:
            raise ValueError(f"unknown message type {type_name!r}") from None
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def flavor_of(msg: Any) -> str:
    """``"rosbags"`` for a rosbags dataclass message, ``"rclpy"`` otherwise."""
    return "rosbags" if hasattr(type(msg), "__msgtype__") else "rclpy"


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


MAX_STAMP_NS = (2**31 - 1) * 1_000_000_000 + 999_999_999  # builtin_interfaces/Time: int32 sec, uint32 nanosec


def check_stamp(ns: int, what: str = "stamp") -> int:
    """``ns`` when ``builtin_interfaces/Time`` can hold it (0 to 2**31 s), else ``ConversionError``."""
    if not 0 <= int(ns) <= MAX_STAMP_NS:
        raise ConversionError(f"{what}: {ns} ns cannot be represented as a ROS time (0 to 2**31 s)")
    return int(ns)


def check_time(stamp: Any, what: str = "header.stamp") -> int:
    """Nanoseconds of a received ``builtin_interfaces/Time``; ``ConversionError`` when it is malformed."""
    if not (0 <= int(stamp.sec) and 0 <= int(stamp.nanosec) < 1_000_000_000):
        raise ConversionError(f"{what}: sec={stamp.sec}, nanosec={stamp.nanosec} is not a valid ROS time "
                              f"(negative, or nanosec >= 1e9)")
    return stamp_to_ns(stamp)


def make_time(ns: int, flavor: str = "auto"):
    """``builtin_interfaces/Time`` for a nanosecond stamp; ``ConversionError`` when it cannot be represented."""
    sec, nanosec = divmod(check_stamp(ns), 1_000_000_000)
    return msg_class("builtin_interfaces/msg/Time", flavor)(sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str, flavor: str = "auto"):
    """``std_msgs/Header`` with the given stamp and frame."""
    return msg_class("std_msgs/msg/Header", flavor)(stamp=make_time(stamp_ns, flavor), frame_id=frame_id)


def uint8_field(data: np.ndarray | bytes, flavor: str) -> bytes | np.ndarray:
    """Value for a ``uint8[]`` field: ``bytes`` for rclpy, a uint8 array for rosbags (both zero-copy-ish)."""
    if resolve_flavor(flavor) == "rclpy":
        return data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    return (np.frombuffer(data, np.uint8) if isinstance(data, bytes)
            else np.ascontiguousarray(data).reshape(-1).view(np.uint8))


def float32_field(values: np.ndarray, flavor: str) -> array.array | np.ndarray:
    """Value for a ``float32[]`` field: ``array('f')`` for rclpy (fast path), a float32 array for rosbags."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if resolve_flavor(flavor) == "rclpy":
        out = array.array("f")
        out.frombytes(flat.tobytes())
        return out
    return flat


def as_uint8(data: Any, field: str) -> np.ndarray:
    """Flat uint8 view of a ``uint8[]`` field value (bytes, array.array, memoryview, ndarray or list)."""
    if isinstance(data, (list, tuple, np.ndarray)):
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{field}: not a byte buffer ({type(data).__name__})") from exc


def as_float32(data: Any, field: str, count: int, width: int) -> np.ndarray:
    """``[count, width]`` float32 view of a ``float32[]`` field, checking its length."""
    if isinstance(data, (list, tuple, np.ndarray)):
        values = np.asarray(data, dtype=np.float32).reshape(-1)
    else:
        try:
            values = np.frombuffer(data, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"{field}: not a float32 buffer ({type(data).__name__})") from exc
    if values.size != count * width:
        raise ConversionError(f"{field}: expected {count * width} values ({width} per element, count {count}), "
                              f"got {values.size}")
    return values.reshape(count, width)
