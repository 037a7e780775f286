"""CDR (de)serialisation of messages of either flavor: rclpy's serializer or rosbags' typestore."""
from __future__ import annotations

from typing import Any

from nut_ros.ros.msg_types import flavor_of, msg_class, resolve_flavor, rosbags_typestore


def type_name_of(msg: Any) -> str:
    """``pkg/msg/Name`` of a message instance of either flavor."""
    if flavor_of(msg) == "rosbags":
        return type(msg).__msgtype__
    return f"{type(msg).__module__.split('.')[0]}/msg/{type(msg).__name__}"


def serialize(msg: Any) -> bytes:
    """Little-endian CDR bytes of a message (as on the wire and in rosbag2)."""
    if flavor_of(msg) == "rosbags":
        return bytes(rosbags_typestore().serialize_cdr(msg, type(msg).__msgtype__))
    from rclpy.serialization import serialize_message

    return serialize_message(msg)


def deserialize(data: bytes | memoryview, type_name: str, flavor: str = "auto") -> Any:
    """A message of ``type_name`` decoded from CDR bytes, in the requested flavor."""
    if resolve_flavor(flavor) == "rosbags":
        return rosbags_typestore().deserialize_cdr(data, type_name)
    from rclpy.serialization import deserialize_message

    return deserialize_message(bytes(data), msg_class(type_name, "rclpy"))
