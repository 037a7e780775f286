"""The node as a process: exit code 0 on SIGINT/SIGTERM/SIGHUP at any moment (start-up and streaming included)
without ERROR lines, a clear refusal of invalid parameters, a non-zero exit when configuring fails, and a warning
naming unknown parameters."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nut_ros.ros.node_session import node_command, session_env, wait_until

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
DOMAIN = 101 + (os.getpid() + 25) % 100


def start(tmp_path, overrides, params_file=REPO / "config" / "nut_ros.yaml"):
    log = open(tmp_path / "node.log", "w")
    env = session_env(DOMAIN) | {"ROS_LOG_DIR": str(tmp_path / "ros_log")}
    return subprocess.Popen(node_command(params_file, overrides, {}), env=env, stdout=log, stderr=subprocess.STDOUT)


def log_has(tmp_path, text: str, timeout=120.0) -> bool:
    return wait_until(lambda: text in (tmp_path / "node.log").read_text(), timeout, 0.05)


def stop(proc, sig) -> int:
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("moment", [0.3, 1.5, "active"])
def test_signal_at_any_moment_exits_zero_without_errors(tmp_path, sig, moment):
    """0.3 s: importing rclpy; 1.5 s: importing torch / loading weights; active: waiting for frames."""
    proc = start(tmp_path, {"random_init": True})
    if moment == "active":
        assert log_has(tmp_path, "active: listening on"), (tmp_path / "node.log").read_text()
    else:
        time.sleep(moment)
    code = stop(proc, sig)
    log = (tmp_path / "node.log").read_text()
    assert code == 0, log
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_stop_signal_whose_stop_python_swallows_still_stops(tmp_path):
    """The handler can run where Python prints an exception and goes on ("Exception ignored in ..."): a __del__
    here; while torch is imported, a weakref callback or a generator being finalized. The signal was remembered: the
    node stops once configured, without activating, exit code 0, nothing printed."""
    program = textwrap.dedent("""
        import signal, sys
        from nut_ros.ros import lifecycle_node, node

        class SignalInDel:
            def __del__(self):
                signal.raise_signal(signal.SIGTERM)  # (the handler runs in here)

        build_pipeline = lifecycle_node.build_pipeline

        def build_after_signal(params, log):
            SignalInDel()
            return build_pipeline(params, log)

        lifecycle_node.build_pipeline = build_after_signal
        sys.exit(node.main())
    """)
    log = open(tmp_path / "node.log", "w")
    env = session_env(DOMAIN) | {"ROS_LOG_DIR": str(tmp_path / "ros_log")}
    proc = subprocess.Popen([sys.executable, "-c", program, "--ros-args", "--params-file",
                             str(REPO / "config" / "nut_ros.yaml"), "-p", "random_init:=true"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # the signal was lost: the node runs on
    log = (tmp_path / "node.log").read_text()
    assert proc.wait() == 0 and "Traceback" not in log and "Exception ignored" not in log, log
    assert "active: listening" not in log, log


def test_signal_while_streaming_exits_zero_without_publish_errors(tmp_path):
    """Frames keep arriving while the node stops: no 'Failed to publish: publisher's context is invalid'."""
    import rclpy
    from rclpy.node import Node

    from sensor_msgs.msg import Image

    from nut_ros.ros.conversions import numpy_to_image

    proc = start(tmp_path, {"random_init": True, "publish_gaussians": True})
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = Node("stream_source", context=context)
    pub = node.create_publisher(Image, "image_raw", 10)
    stop_flag = threading.Event()

    def stream():
        i = 0
        while not stop_flag.is_set():
            pub.publish(numpy_to_image(np.full((96, 128, 3), i % 255, np.uint8), "rgb8", 10**9 + i * 10**8, "cam"))
            i += 1
            time.sleep(0.03)

    try:
        assert log_has(tmp_path, "active: listening on")
        assert wait_until(lambda: pub.get_subscription_count() > 0, 30.0)
        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        time.sleep(4.0)
        code = stop(proc, signal.SIGINT)
    finally:
        stop_flag.set()
        node.destroy_node()
        rclpy.shutdown(context=context)
    log = (tmp_path / "node.log").read_text()
    assert code == 0 and "ERROR" not in log and "Traceback" not in log, log


def test_invalid_parameters_exit_2_with_a_message(tmp_path):
    proc = start(tmp_path, {"backend": "tflite", "render_times": [5.0]})
    assert proc.wait(timeout=60) == 2
    log = (tmp_path / "node.log").read_text()
    assert "backend='tflite' is not one of torch, onnxruntime, tensorrt" in log and "render_times" in log


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_weights_that_cannot_load_exit_non_zero_with_the_reason(tmp_path, case):
    path = tmp_path / "weights.safetensors"
    if case == "corrupt":
        path.write_bytes(b"\x00" * 64)
    proc = start(tmp_path, {"checkpoint": str(path)})
    assert proc.wait(timeout=120) == 1, "a supervisor (launch respawn) must see the failure"
    log = (tmp_path / "node.log").read_text()
    assert "configure failed" in log and "weights.safetensors" in log, log


def test_unknown_parameters_are_warned_about_by_name(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_rte: 5.0\n    random_init: true\n")
    proc = start(tmp_path, {}, params)
    try:
        assert log_has(tmp_path, "active: listening on"), (tmp_path / "node.log").read_text()
        assert "unknown parameters ignored: max_rte" in (tmp_path / "node.log").read_text()
    finally:
        assert stop(proc, signal.SIGINT) == 0


def test_random_init_uses_weights_that_exist(tmp_path):
    """The YAML's promise: random_init only stands in for weights that do not exist."""
    proc = start(tmp_path, {"random_init": True, "model": "tiny"})
    try:
        assert log_has(tmp_path, "active: listening on")
        log = (tmp_path / "node.log").read_text()
        assert "random_init ignored: weights exist" in log and "randomly initialised" not in log, log
    finally:
        assert stop(proc, signal.SIGINT) == 0


@pytest.mark.parametrize("stopping", [True, False])
def test_a_stop_signal_turned_into_another_error_while_configuring_still_stops(monkeypatch, stopping):
    """A signal's Stop raised inside torch while it loads weights comes out as a ValueError: configure stops the
    process instead of reporting a failure. Without a signal the same error is a failure with its reason."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from nut_ros.ros import lifecycle_node, stop_signals

    def interrupted(params, log):
        if stopping:
            monkeypatch.setattr(stop_signals, "_stop_signals", [signal.SIGTERM])
        raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    monkeypatch.setattr(lifecycle_node, "build_pipeline", interrupted)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = lifecycle_node.NutRosNode(context=context)
    try:
        if stopping:
            with pytest.raises(stop_signals.Stop):
                node.trigger_configure()
            assert node.error is None
        else:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert "could not determine the shape" in node.error
    finally:
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=context)
