"""Test helper: a listener node on its own rclpy context, spun by a background thread."""
import threading


class Listener:
    """``subscribe(type_name, topic)`` returns a list that fills with the messages received; ``close()`` ends it."""

    def __init__(self, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def subscribe(self, type_name: str, topic: str, depth: int = 10) -> list:
        from nut_ros.ros.topics import resolve_type

        received: list = []
        self.node.create_subscription(resolve_type(type_name), topic, received.append, depth)
        return received

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.shutdown()
