"""The node as a process: clean exit on SIGINT/SIGTERM, a clear refusal of invalid parameters."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nut_ros.ros.node_session import node_command, session_env

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]


def start(tmp_path, overrides):
    log = open(tmp_path / "node.log", "w")
    env = session_env(101 + (os.getpid() + 25) % 100) | {"ROS_LOG_DIR": str(tmp_path / "ros_log")}
    return subprocess.Popen(node_command(REPO / "config" / "nut_ros.yaml", overrides, {}), env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def wait_for_log(path: Path, text: str, timeout=120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_node_with_exit_code_zero(tmp_path, sig):
    proc = start(tmp_path, {"random_init": True})
    try:
        assert wait_for_log(tmp_path / "node.log", "listening on"), (tmp_path / "node.log").read_text()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, (tmp_path / "node.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_invalid_parameters_exit_with_a_message(tmp_path):
    proc = start(tmp_path, {"backend": "tflite", "render_times": [5.0]})
    assert proc.wait(timeout=60) == 2
    log = (tmp_path / "node.log").read_text()
    assert "backend='tflite' is not one of torch, onnxruntime, tensorrt" in log and "render_times" in log
