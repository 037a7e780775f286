"""A 1280x720 rgb8 camera at 30 Hz in another process on this host, into ``ros2 launch nut_ros nut_ros.launch.py``
with its defaults: the frames reach the node (reliable input, as the camera publishes) and what is lost shows in
``~/stats``. The same camera into the previous defaults (best-effort input, no shared-memory profile) loses most
frames, and the loss is counted (frames_lost) instead of silent.

Measured on the 2-core CI machine under a load average of about 7 from other jobs (2026-12-03, four runs):
defaults 182 to 271 of 300 received, the rest counted lost (the node's executor falls behind while its worker
holds the interpreter); previous defaults 27 and 44 of 300 (250-265 counted lost); a bare subscriber process got 298
of 300 at the same time. The thresholds below leave room for that load."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nut_ros.ros import topics
from nut_ros.ros.node_session import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.ros_tools, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FRAMES = 300  # 10 s at 30 Hz


def run_camera_into_launch(tmp_path, launch_args: list[str]) -> tuple[int, object]:
    """Start the launch file, stream the camera into it, return (frames published, the node's last stats)."""
    from ros_listener import Listener

    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the camera runs with Fast DDS's defaults, as drivers do
    log = open(tmp_path / "launch.log", "w")
    launch = subprocess.Popen([str(BIN / "ros2"), "launch", "nut_ros", "nut_ros.launch.py", *launch_args], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    listener = Listener("transport_listener")
    stats = listener.subscribe(topics.OUTPUT_TYPES["stats"], topics.output_topic("stats"))
    try:
        assert wait_until(lambda: stats, 120.0), (tmp_path / "launch.log").read_text()
        camera = subprocess.run([sys.executable, str(REPO / "test" / "fixtures" / "ros_camera.py"), "--width",
                                 "1280", "--height", "720", "--rate", "30", "--frames", str(FRAMES),
                                 "--wait-subscriber", "30"], env=env, capture_output=True, text=True, timeout=120)
        published = json.loads(camera.stdout.strip().splitlines()[-1])["published"]
        seen = [None, time.monotonic()]

        def settled():
            now = (stats[-1].frames_received, stats[-1].frames_lost)
            if now != seen[0]:
                seen[:] = [now, time.monotonic()]
            return time.monotonic() - seen[1] > 3.0

        wait_until(settled, 60.0)
        return published, stats[-1]
    finally:
        os.killpg(launch.pid, signal.SIGINT)
        try:
            launch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
        listener.close()


def test_720p_camera_reaches_the_node_with_launch_defaults(tmp_path):
    published, s = run_camera_into_launch(tmp_path, [])
    print(f"launch defaults: {s.frames_received} of {published} received, {s.frames_lost} counted lost")
    assert published == FRAMES
    # delivery itself is load-dependent (61-90 % on the 2-core dev VM, docs/BENCHMARKS.md): this checks the transport
    # carries 2.7 MB images at all (the previous defaults got 9-15 %) and that the rest is counted, not lost silently
    assert s.frames_received >= 0.25 * published, (s.frames_received, published)
    assert s.frames_received + s.frames_lost >= published - 15, "what was lost between frames is counted"


def test_losses_with_the_previous_defaults_are_counted(tmp_path):
    published, s = run_camera_into_launch(tmp_path, ["input_reliability:=best_effort", "use_fastdds_profile:=false"])
    print(f"previous defaults: {s.frames_received} of {published} received, {s.frames_lost} counted lost")
    if s.frames_lost == 0:  # how many best effort loses is the host's (most of them on the dev VM), not nut_ros's
        pytest.skip(f"best effort lost nothing between received frames here ({s.frames_received} of {published})")
    assert s.frames_received + s.frames_lost <= published
    assert s.frames_received + s.frames_lost >= 0.5 * published, "the losses between received frames are counted"
