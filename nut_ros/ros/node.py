"""``nut_ros_node``: run the ``nut_ros`` lifecycle node (``lifecycle_node.NutRosNode``) until a signal stops it.

With ``autostart`` (the default) the node configures and activates itself; when configuring fails the process
exits non-zero (2 for invalid parameters, 1 otherwise) so that a supervisor (``respawn``) sees it. SIGINT, SIGTERM
and SIGHUP end the process with exit code 0 at any moment, start-up (importing torch, loading weights) included:
the handlers are installed before anything heavy is imported (a signal during the import of rclpy or torch takes
effect once that import is done), and the worker is joined before ROS shuts down so nothing is published on a dead
context. The lifecycle's shutdown transition ends it with exit code 0 too.
"""
from __future__ import annotations

import signal
import sys

from nut_ros.ros.stop_signals import (STOP_SIGNALS, Stop, deferred, on_signal, on_unraisable, signal_received,
                                      stop_requested)


def main(args=None) -> int:
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    sys.unraisablehook = on_unraisable
    try:
        return _run(args)
    except Stop:
        return 0


def _run(args) -> int:
    with deferred():  # a Stop inside an extension's import can abort the process (pybind11 calls terminate)
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
        with deferred():  # (imports torch: as above)
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
            if stop_requested():  # (a Stop swallowed while configuring: do not activate)
                raise Stop(signal_received())
            node.trigger_activate()
        with deferred():  # a signal inside the constructor would leave a half-built executor (see deferred)
            executor = SingleThreadedExecutor()
        executor.add_node(node)
        # (finalized: after `ros2 lifecycle set ... shutdown` the process ends; stop_requested: a signal whose Stop
        # was swallowed, by Python (see stop_signals.on_unraisable) or by a C extension that clears errors)
        while rclpy.ok() and not node.finalized and not stop_requested():
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
