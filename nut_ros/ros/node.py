"""``nut_ros_node``: run the ``nut_ros`` lifecycle node (``lifecycle_node.NutRosNode``) until a signal stops it.

With ``autostart`` (the default) the node configures and activates itself; when configuring fails the process
exits non-zero (2 for invalid parameters, 1 otherwise) so that a supervisor (``respawn``) sees it. SIGINT, SIGTERM
and SIGHUP end the process with exit code 0 at any moment, start-up (importing torch, loading weights) included:
the handlers are installed before anything heavy is imported, and the worker is joined before ROS shuts down so
nothing is published on a dead context.
"""
from __future__ import annotations

import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """Raised in the main thread by a stop signal (a BaseException, so no ``except Exception`` swallows it)."""


_stop_signals: list[int] = []  # the stop signal received, once one has arrived


def stop_requested() -> bool:
    """Whether a stop signal has arrived. Code that catches every ``Exception`` asks before reporting a failure:
    the ``Stop`` a signal raises inside a C extension can come out as another error (torch turns one raised while
    it builds a tensor from loaded weights into "ValueError: could not determine the shape of object type")."""
    return bool(_stop_signals)


def signal_received() -> int | None:
    """The stop signal that arrived, or None."""
    return _stop_signals[0] if _stop_signals else None


def _on_signal(signum, frame):
    for sig in STOP_SIGNALS:  # a second signal during the clean-up must not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    _stop_signals.append(signum)
    raise Stop(signum)


def main(args=None) -> int:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        return _run(args)
    except Stop:
        return 0


def _run(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from nut_ros.ros import topics

    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as err:  # noqa: BLE001 - malformed --ros-args (e.g. a parameter rcl cannot parse)
        print(f"nut_ros: cannot start: {err}", file=sys.stderr)
        return 2
    node = executor = None
    try:
        from nut_ros.ros.lifecycle_node import NutRosNode

        try:
            node = NutRosNode()
        except Exception as err:  # noqa: BLE001 - invalid parameters: say why and exit non-zero
            if stop_requested():
                raise Stop(signal_received()) from err
            rclpy.logging.get_logger(topics.NODE_NAME).fatal(str(err))
            return 2
        if node.params.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal(f"cannot start: {node.error}")
                return 2 if node.error_is_param else 1
            node.trigger_activate()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)  # returns to Python often, so signal handlers run promptly
        return 0
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            node.close()
            if executor is not None:
                executor.remove_node(node)
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
