"""rosbag2 I/O (sqlite3 and mcap) with ``rosbags``; needs no ROS installation.

Reading: ``bag_messages`` streams chosen topics in bag order; ``read_camera_frames`` matches camera images to depth
and CameraInfo with the node's matcher (``input_sync.StampMatcher``) on a clock that follows the bag's receive times.
Messages are rosbags objects, which every function of ``nut_ros.ros.conversions`` accepts.

Writing: ``BagWriter`` writes messages of either flavor (rclpy messages are serialised with
``rclpy.serialization.serialize_message``, rosbags ones with rosbags' CDR serialiser), or raw CDR bytes. The
message definitions (``nut_ros_msgs`` included) are stored in the bag, so ``ros2 bag``, rosbags and mcap tools
can decode it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nut_ros.ros.cdr import serialize, type_name_of
from nut_ros.ros.input_sync import StampMatcher
from nut_ros.ros.msg_types import rosbags_typestore, stamp_to_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
STORAGES = ("sqlite3", "mcap")


@dataclass
class CameraFrame:
    """One camera image with its matched depth image and CameraInfo (``None`` when unmatched)."""

    stamp_ns: int  # header stamp of the image (bag receive time if the header stamp is zero)
    image: Any  # sensor_msgs/Image or CompressedImage
    depth: Any = None  # sensor_msgs/Image (16UC1/32FC1) or compressedDepth CompressedImage
    info: Any = None  # sensor_msgs/CameraInfo


class BagClock:
    """A clock (seconds) that follows the receive time of the bag message being replayed."""

    def __init__(self):
        self.now_ns = 0

    def __call__(self) -> float:
        return self.now_ns * 1e-9


def header_stamp(msg: Any, bag_time_ns: int) -> int:
    """The header stamp of ``msg``, or the bag receive time when the header stamp is zero."""
    stamp = stamp_to_ns(msg.header.stamp)
    return stamp if stamp > 0 else bag_time_ns


def bag_topics(path: str | Path) -> dict[str, str]:
    """``{topic: message type}`` of a bag."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=rosbags_typestore()) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def bag_messages(path: str | Path, wanted: dict[str, tuple[str, ...]]) -> Iterator[tuple[str, int, Any]]:
    """``(topic, bag time ns, message)`` of the ``wanted`` topics (topic -> accepted types) in bag order.

    Raises ``KeyError`` naming the topics present when a wanted topic is missing or has another type.
    """
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=rosbags_typestore()) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        for topic, types in wanted.items():
            if topic not in by_topic or by_topic[topic].msgtype not in types:
                present = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
                raise KeyError(f"topic {topic!r} of type {' or '.join(types)} not in {path} (present: {present})")
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, bag_time_ns, raw in reader.messages(connections=connections):
            yield connection.topic, bag_time_ns, reader.deserialize(raw, connection.msgtype)


def read_camera_frames(path: str | Path, image_topic: str, depth_topic: str | None = None,
                       info_topic: str | None = None, tolerance_ns: int = 20_000_000,
                       buffer_size: int = 10) -> Iterator[CameraFrame]:
    """Camera images of a bag in order, each with its depth (``depth_topic``: within ``tolerance_ns``) and
    CameraInfo, matched as the node matches them: an image waits for its depth (images whose depth never comes
    are left out) and, for up to 1 s of bag time, for a first CameraInfo."""
    clock = BagClock()
    matcher = StampMatcher("topic" if depth_topic else "none", tolerance_ns, buffer_size, 1.0, clock,
                           1.0 if info_topic else 0.0)
    adders = {image_topic: matcher.add_image, depth_topic: matcher.add_depth, info_topic: matcher.add_info}
    wanted = {image_topic: IMAGE_TYPES, depth_topic: IMAGE_TYPES, info_topic: (INFO_TYPE,)}
    for topic, bag_time_ns, msg in bag_messages(path, {t: k for t, k in wanted.items() if t is not None}):
        clock.now_ns = bag_time_ns
        matched = adders[topic](header_stamp(msg, bag_time_ns), msg)
        if matched is not None:
            yield CameraFrame(matched.stamp_ns, matched.image, matched.depth, matched.info)


class BagWriter:
    """Write a rosbag2 (storage ``"sqlite3"`` or ``"mcap"``); use as a context manager.

    ``path`` must not exist yet. Topics are added on first write from the message type, or explicitly with
    ``add_topic`` (needed for ``write_raw``). With ``discard_on_error``, an exception inside the ``with`` block
    removes the bag it began (a partial bag would pass for a whole one and block the next attempt); without it
    (a recording cut short) what was written is kept.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", discard_on_error: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._path, self._discard = Path(path), discard_on_error
        self._writer = Writer(self._path, version=9, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}
        self._store = rosbags_typestore()

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._writer.close()
        if exc_type is not None and self._discard:  # the folder is the writer's own: open() refuses an existing one
            shutil.rmtree(self._path, ignore_errors=True)

    def add_topic(self, topic: str, type_name: str) -> None:
        """Declare ``topic`` with message type ``pkg/msg/Name`` (its definition is stored in the bag)."""
        existing = self._connections.get(topic)
        if existing is not None:
            if existing.msgtype != type_name:
                raise ValueError(f"topic {topic!r} already has type {existing.msgtype}, not {type_name}")
            return
        self._connections[topic] = self._writer.add_connection(topic, type_name, typestore=self._store)

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Write a message (rclpy or rosbags flavor) received/logged at ``stamp_ns``."""
        type_name = type_name_of(msg)
        self.add_topic(topic, type_name)
        self._writer.write(self._connections[topic], int(stamp_ns), serialize(msg))

    def write_raw(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write CDR bytes (e.g. from a ``raw=True`` subscription) to a topic declared with ``add_topic``."""
        if topic not in self._connections:
            raise KeyError(f"topic {topic!r} not declared; call add_topic first")
        self._writer.write(self._connections[topic], int(stamp_ns), data)
