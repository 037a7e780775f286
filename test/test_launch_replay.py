"""``ros2 launch nut_ros replay.launch.py`` for real (launch_testing) on the demo bag (60 frames, 15 frames/s): the
bag waits for the node to subscribe, so all 60 frames reach it (``~/stats``), each processed or counted; the node
and ``ros2 bag play`` exit with code 0."""
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="needs the real ROS 2 tools: `make ros-tools` (../shared/ros2_tools)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from nut_ros.ros import topics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FRAMES = 60


@pytest.mark.launch_test
@pytest.mark.ros_tools
def generate_test_description():
    from nut_ros.tools import demo

    bag = Path(tempfile.mkdtemp(prefix="nut_ros_replay_launch_")) / "input_bag"
    assert demo.write_clip_bag(demo.CLIP_DIR, bag) == FRAMES
    return launch.LaunchDescription([
        SetEnvironmentVariable("PATH", f"{BIN}:{os.environ.get('PATH', '')}"),
        SetEnvironmentVariable("OMP_NUM_THREADS", "1"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(REPO / "launch" / "replay.launch.py")),
                                 launch_arguments={"bag": str(bag), "rviz": "false"}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestReplayDeliversEveryFrame(unittest.TestCase):

    def test_all_frames_reach_the_node(self):
        from ros_listener import Listener

        listener = Listener("replay_listener")
        stats = listener.subscribe(topics.OUTPUT_TYPES["stats"], topics.output_topic("stats"))
        try:
            def done():
                s = stats[-1] if stats else None
                return s is not None and s.frames_received >= FRAMES and (
                    s.frames_processed + s.frames_dropped_queue + s.frames_dropped_invalid >= FRAMES)

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not done():
                time.sleep(0.2)
            last = stats[-1]
            print(f"replay launch: received {last.frames_received}, processed {last.frames_processed}, queue drops "
                  f"{last.frames_dropped_queue}, invalid {last.frames_dropped_invalid}, lost {last.frames_lost}")
            self.assertEqual(last.frames_received, FRAMES, "every frame of the bag reached the node")
            self.assertEqual(last.frames_lost, 0)
            self.assertEqual(last.frames_dropped_invalid, 0)
            self.assertEqual(last.frames_processed + last.frames_dropped_queue, FRAMES)
        finally:
            listener.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_processes_exit_zero(self, proc_info):
        names = proc_info.process_names()
        self.assertTrue(any(n.startswith("nut_ros_node") for n in names), names)
        for name in names:
            self.assertEqual(proc_info[name].returncode, 0, name)
