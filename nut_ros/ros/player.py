"""A small rosbag2 player: rosbags reader + rclpy publishers (``ros2 bag play`` is not installable from PyPI).

Messages are published as their recorded CDR bytes, so header stamps and frame ids reach subscribers unchanged;
publication is paced by the bag's receive times.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from nut_ros.ros.msg_types import rosbags_typestore
from nut_ros.ros.topics import resolve_type


class BagPlayer:
    """Publish the topics of a bag from ``node``; ``remap`` renames bag topics on the wire."""

    def __init__(self, node: Node, path: str | Path, topics: list[str] | None = None,
                 remap: dict[str, str] | None = None, qos_depth: int = 10):
        from rosbags.highlevel import AnyReader

        self.path = Path(path)
        with AnyReader([self.path], default_typestore=rosbags_typestore()) as reader:
            types = {c.topic: c.msgtype for c in reader.connections if topics is None or c.topic in topics}
        missing = set(topics or ()) - set(types)
        if missing:
            raise KeyError(f"topics {sorted(missing)} are not in {self.path} (present: {sorted(types)})")
        qos = QoSProfile(depth=qos_depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        remap = remap or {}
        self.publishers = {topic: node.create_publisher(resolve_type(kind), remap.get(topic, topic), qos)
                           for topic, kind in types.items()}
        self.published = 0

    def wait_for_subscribers(self, timeout_s: float, topics: list[str] | None = None) -> bool:
        """Wait until every (or each named) topic has a matched subscription; False on time-out."""
        wanted = [self.publishers[t] for t in (topics or self.publishers)]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in wanted):
                return True
            time.sleep(0.05)
        return False

    def play(self, rate: float = 1.0, stop: threading.Event | None = None) -> int:
        """Publish every message in bag order at ``rate`` times real time (``rate <= 0``: as fast as possible).

        Returns the number of messages published; ``stop`` ends playback early.
        """
        from rosbags.highlevel import AnyReader

        stop = stop or threading.Event()
        with AnyReader([self.path], default_typestore=rosbags_typestore()) as reader:
            connections = [c for c in reader.connections if c.topic in self.publishers]
            start_wall, start_bag = time.monotonic(), None
            for connection, bag_ns, raw in reader.messages(connections=connections):
                start_bag = bag_ns if start_bag is None else start_bag
                if rate > 0 and stop.wait(max(0.0, start_wall + (bag_ns - start_bag) * 1e-9 / rate - time.monotonic())):
                    break
                if stop.is_set():
                    break
                self.publishers[connection.topic].publish(bytes(raw))
                self.published += 1
        return self.published
