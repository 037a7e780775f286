"""rosbag2 I/O (sqlite3 and mcap) with ``rosbags``; needs no ROS installation.

Reading: ``read_camera_frames`` streams camera images (raw or compressed) in bag order, each matched by header stamp
to the nearest depth image and CameraInfo within a tolerance. Messages are rosbags objects, which every function of
``nut_ros.ros.conversions`` accepts.

Writing: ``BagWriter`` writes messages of either flavor (rclpy messages are serialised with
``rclpy.serialization.serialize_message``, rosbags ones with rosbags' CDR serialiser), or raw CDR bytes. The
message definitions (``nut_ros_msgs`` included) are stored in the bag, so ``ros2 bag``, rosbags and mcap tools
can decode it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nut_ros.ros.cdr import serialize, type_name_of
from nut_ros.ros.msg_types import rosbags_typestore, stamp_to_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGES = ("sqlite3", "mcap")


@dataclass
class CameraFrame:
    """One camera image with its matched depth image and CameraInfo (``None`` when unmatched)."""

    stamp_ns: int  # header stamp of the image (bag receive time if the header stamp is zero)
    image: Any  # sensor_msgs/Image or CompressedImage
    depth: Any = None  # sensor_msgs/Image (16UC1/32FC1) or compressedDepth CompressedImage
    info: Any = None  # sensor_msgs/CameraInfo


def _header_stamp(msg: Any, bag_time_ns: int) -> int:
    stamp = stamp_to_ns(msg.header.stamp)
    return stamp if stamp > 0 else bag_time_ns


def _nearest(buffer: deque, stamp_ns: int, tolerance_ns: int) -> Any:
    best = min(buffer, key=lambda item: abs(item[0] - stamp_ns), default=None)
    return best[1] if best is not None and abs(best[0] - stamp_ns) <= tolerance_ns else None


def bag_topics(path: str | Path) -> dict[str, str]:
    """``{topic: message type}`` of a bag."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=rosbags_typestore()) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_camera_frames(path: str | Path, image_topic: str, depth_topic: str | None = None,
                       info_topic: str | None = None, tolerance_ns: int = 20_000_000,
                       buffer_size: int = 64) -> Iterator[CameraFrame]:
    """Yield the images of ``image_topic`` in bag order, each with the depth and CameraInfo nearest in stamp.

    A depth message matches when its stamp is within ``tolerance_ns`` of the image's; an image is held back until
    a depth message stamped past that window arrives (or the bag ends), and at most ``buffer_size`` images and depth
    messages are buffered. CameraInfo matches the same way (an image waits for a CameraInfo stamped at or after it,
    or for any message stamped past its window), falling back to the newest one seen (intrinsics rarely change). Raises ``KeyError`` naming the topics present when a requested topic is missing or has a wrong type.
    """
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=rosbags_typestore()) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        wanted = {image_topic: IMAGE_TYPES, depth_topic: IMAGE_TYPES, info_topic: (INFO_TYPE,)}
        for topic, types in wanted.items():
            if topic is not None and (topic not in by_topic or by_topic[topic].msgtype not in types):
                present = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
                raise KeyError(f"topic {topic!r} of type {' or '.join(types)} not in {path} (present: {present})")
        connections = [c for c in reader.connections if c.topic in (image_topic, depth_topic, info_topic)]
        images, depths, infos = deque(), deque(maxlen=buffer_size), deque(maxlen=buffer_size)
        newest = {"depth": -1, "info": -1, "any": -1}

        def ready(stamp_ns: int) -> bool:
            depth_ok = depth_topic is None or newest["depth"] > stamp_ns + tolerance_ns
            info_ok = info_topic is None or newest["info"] >= stamp_ns or newest["any"] > stamp_ns + tolerance_ns
            return depth_ok and info_ok

        def emit(stamp_ns: int, image: Any) -> CameraFrame:
            info = _nearest(infos, stamp_ns, tolerance_ns)
            if info is None and infos:
                info = infos[-1][1]
            return CameraFrame(stamp_ns, image, _nearest(depths, stamp_ns, tolerance_ns), info)

        for connection, bag_time_ns, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp_ns = _header_stamp(msg, bag_time_ns)
            if connection.topic == image_topic:
                images.append((stamp_ns, msg))
            elif connection.topic == depth_topic:
                depths.append((stamp_ns, msg))
                newest["depth"] = max(newest["depth"], stamp_ns)
            else:
                infos.append((stamp_ns, msg))
                newest["info"] = max(newest["info"], stamp_ns)
            newest["any"] = max(newest["any"], stamp_ns)
            while images and (ready(images[0][0]) or len(images) > buffer_size):
                yield emit(*images.popleft())
        while images:
            yield emit(*images.popleft())


class BagWriter:
    """Write a rosbag2 (storage ``"sqlite3"`` or ``"mcap"``); use as a context manager.

    ``path`` must not exist yet. Topics are added on first write from the message type, or explicitly with
    ``add_topic`` (needed for ``write_raw``).
    """

    def __init__(self, path: str | Path, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}
        self._store = rosbags_typestore()

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

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
