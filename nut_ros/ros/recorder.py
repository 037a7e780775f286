"""Record live topics into a rosbag2 without rosbag2_py: raw (CDR) rclpy subscriptions -> ``BagWriter``."""
from __future__ import annotations

from collections import Counter

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from nut_ros.ros.bag_io import BagWriter
from nut_ros.ros.topics import resolve_type


class TopicRecorder:
    """Write every message of ``topic_types`` (``{topic: "pkg/msg/Name"}``) to ``writer``, stamped on receipt.

    The messages are never deserialised; ``counts`` tells how many arrived per topic.
    """

    def __init__(self, node: Node, writer: BagWriter, topic_types: dict[str, str], qos_depth: int = 50):
        self._node, self._writer = node, writer
        self.counts: Counter = Counter()
        qos = QoSProfile(depth=qos_depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = []
        for topic, type_name in topic_types.items():
            writer.add_topic(topic, type_name)
            self.subscriptions.append(node.create_subscription(
                resolve_type(type_name), topic, lambda data, topic=topic: self._on_message(topic, data), qos,
                raw=True))

    def _on_message(self, topic: str, data: bytes) -> None:
        self._writer.write_raw(topic, self._node.get_clock().now().nanoseconds, data)
        self.counts[topic] += 1

    def matched(self) -> bool:
        """True when every recorded topic has a matched publisher."""
        return all(s.get_publisher_count() > 0 for s in self.subscriptions)
