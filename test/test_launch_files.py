"""``ros2 launch nut_ros nut_ros.launch.py`` for real (launch_testing), with a camera process publishing 320x180
rgb8 at 10 Hz: the node comes up active, every output topic has its declared type, the camera's stamps and frame
id, plausible values and a rate; ``ros2 lifecycle``, ``ros2 param`` and ``ros2 topic`` work against it; it stops
with exit code 0 and no ERROR lines."""
import os
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("launch_testing", reason="needs the real ROS 2 tools: `make ros-tools` (../shared/ros2_tools)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
from launch.actions import ExecuteProcess, IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from nut_ros.ros import topics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CAMERA_FRAME = "camera_optical_frame"
# the fixture camera publishes no depth and no odometry: its depth and points have no metric scale
DEPTH, POINTS = "relative/depth", "relative/points"
OUTPUTS = (DEPTH, "image", "camera_info", POINTS, "gaussians", "stats")
METRIC_ONLY = ("depth", "points")  # REP-118 / REP-103 readers take metres: nothing for them here


@pytest.mark.launch_test
@pytest.mark.ros_tools
def generate_test_description():
    camera = ExecuteProcess(cmd=[sys.executable, str(REPO / "test" / "fixtures" / "ros_camera.py"), "--width", "320",
                                 "--height", "180", "--rate", "10"], name="camera", output="screen")
    return launch.LaunchDescription([
        SetEnvironmentVariable("PATH", f"{BIN}:{os.environ.get('PATH', '')}"),
        SetEnvironmentVariable("OMP_NUM_THREADS", "1"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(REPO / "launch" / "nut_ros.launch.py"))),
        camera,
        launch_testing.actions.ReadyToTest(),
    ]), {"camera": camera}


def ros2(*args: str, expect: str | tuple[str, ...] = "", timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run the real ``ros2`` CLI of this venv; with ``expect`` (a text or several), retry for up to ``timeout``
    seconds until its output holds each of them (a fresh CLI process discovers the node and its endpoints one by one
    and may see only some of them)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    wanted = (expect,) if isinstance(expect, str) else expect
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([str(BIN / "ros2"), *args], capture_output=True, text=True, timeout=timeout, env=env)
        if all(text in out.stdout + out.stderr for text in wanted) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


class TestNodeAsUsersRunIt(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("launch_test_listener", context=cls.context)
        cls.received = {name: [] for name in OUTPUTS + METRIC_ONLY}
        cls.camera_stamps = set()
        for name in OUTPUTS + METRIC_ONLY:
            cls.node.create_subscription(topics.resolve_type(topics.OUTPUT_TYPES[name]), topics.output_topic(name),
                                         lambda m, n=name: cls.received[n].append((time.monotonic(), m)), 50)
        cls.diagnostics = []
        cls.node.create_subscription(topics.resolve_type(topics.DIAGNOSTICS_TYPE), topics.DIAGNOSTICS,
                                     lambda m: cls.diagnostics.extend(m.status), 10)
        cls.node.create_subscription(topics.resolve_type("sensor_msgs/msg/Image"), "/camera/color/image_raw",
                                     lambda m: cls.camera_stamps.add((m.header.stamp.sec, m.header.stamp.nanosec)),
                                     10)
        # message_filters as users wire the node's outputs: rendered image, depth and CameraInfo by exact stamp
        import message_filters

        cls.synced = []
        subs = [message_filters.Subscriber(cls.node, topics.resolve_type(topics.OUTPUT_TYPES[n]),
                                           topics.output_topic(n)) for n in ("image", DEPTH, "camera_info")]
        cls.sync = message_filters.TimeSynchronizer(subs, 10)
        cls.sync.registerCallback(lambda *msgs: cls.synced.append(msgs))
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)
        cls.spinner = threading.Thread(target=cls.executor.spin, daemon=True)
        cls.spinner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(cls.received["image"]) < 8 or not cls.received["stats"]):
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        cls.context.shutdown()

    def test_a_lifecycle_state_is_active(self):
        out = ros2("lifecycle", "get", "/nut_ros", expect="active [3]")
        self.assertEqual(out.stdout.strip(), "active [3]", out.stderr)

    def test_b_every_output_has_its_type(self):
        lines = [f"{topics.output_topic(name)} [{kind}]" for name, kind in topics.OUTPUT_TYPES.items()
                 if name not in topics.PERCEPTION_OUTPUTS]
        lines.append(f"{topics.DIAGNOSTICS} [{topics.DIAGNOSTICS_TYPE}]")
        out = ros2("topic", "list", "-t", "--spin-time", "3", expect=tuple(lines))
        for line in lines:
            self.assertIn(line, out.stdout)
        for name in topics.PERCEPTION_OUTPUTS:  # perception: false (the default): no publisher to wait on forever
            self.assertNotIn(f"{topics.output_topic(name)} [", out.stdout)
        for name in OUTPUTS:
            self.assertTrue(self.received[name], f"nothing received on ~/{name}")
        for name in METRIC_ONLY:
            self.assertFalse(self.received[name], f"relative lengths published on ~/{name}")

    def test_c_stamps_and_frame_ids_are_the_camera_s(self):
        first_seen = min(self.camera_stamps)  # this listener may have joined after the node's first frames
        checked = 0
        for name in (DEPTH, "image", "camera_info", POINTS, "gaussians"):
            for _, msg in self.received[name]:
                self.assertEqual(msg.header.frame_id, CAMERA_FRAME, name)
                stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                if stamp >= first_seen:
                    self.assertIn(stamp, self.camera_stamps, f"~/{name} stamp {stamp} is not a camera stamp")
                    checked += 1
        self.assertGreater(checked, 10)

    def test_c_message_filters_synchronise_image_depth_and_info(self):
        self.assertGreater(len(self.synced), 5)
        for image, depth, info in self.synced:
            self.assertEqual(image.header.stamp, depth.header.stamp)
            self.assertEqual(image.header.stamp, info.header.stamp)
            self.assertEqual((info.width, info.height), (image.width, image.height))
        self.assertGreaterEqual(len(self.synced), len(self.received["image"]) - 2, "every view completes a triple")

    def test_d_values(self):
        from nut_ros.ros.conversions import image_to_depth_m, image_to_rgb, msg_to_gaussian_cloud, \
            pointcloud2_to_points

        _, image = self.received["image"][-1]
        self.assertEqual((image.encoding, image.width, image.height), ("rgb8", 256, 144))
        self.assertGreater(image_to_rgb(image).std(), 5.0, "a rendered picture, not a flat colour")
        # the fixture camera repeats 8 nearly still frames and publishes no depth: depth from motion finds no
        # parallax, so the node publishes NaN depth (the network's RGB-only guess measures worse than a constant)
        # and says so in ~/stats
        depth = image_to_depth_m(self.received[DEPTH][-1][1])
        self.assertTrue(np.isnan(depth).all(), "no depth input: no depth values")
        self.assertEqual(self.received["stats"][-1][1].depth_source, "none")
        xyz, rgb = pointcloud2_to_points(self.received[POINTS][-1][1])
        self.assertTrue(xyz.shape[0] > 1000 and np.isfinite(xyz).all() and (xyz[:, 2] > 0).all())
        cloud = msg_to_gaussian_cloud(self.received["gaussians"][-1][1])
        self.assertEqual(cloud.count, xyz.shape[0])
        stats = self.received["stats"][-1][1]
        self.assertEqual((stats.backend, stats.model), ("torch", "tiny"))
        self.assertGreater(stats.frames_processed, 0)
        # no image was invalid; an image may have come before the first CameraInfo (the node's subscriptions match
        # the camera's publishers one at a time) and been dropped unpaired, which frames_dropped_invalid includes
        statuses = [{v.key: v.value for v in d.values} for d in self.diagnostics if d.name == "/nut_ros: pipeline"]
        values = [v for v in statuses if "frames_unpaired" in v][-1]  # (an unconfigured node's status has none)
        self.assertEqual(values["frames_dropped_invalid"], values["frames_unpaired"])
        self.assertLessEqual(int(values["frames_unpaired"]), 1)

    def test_e_rates(self):
        times = [t for t, _ in self.received["image"]]
        rate = (len(times) - 1) / (times[-1] - times[0])
        stats = self.received["stats"][-1][1]
        self.assertGreater(rate, 0.3, "outputs keep coming (the tiny model on 2 loaded cores: 1-3 frames/s)")
        self.assertLessEqual(rate, 10.5, "never faster than the camera")
        self.assertGreaterEqual(stats.frames_processed, 8)
        pending = stats.frames_received - stats.frames_processed - stats.frames_dropped_queue \
            - stats.frames_dropped_invalid
        self.assertIn(pending, (0, 1, 2), "every received frame is processed or counted (two may be in flight)")
        hz = subprocess.run(f"timeout -s INT 10 {BIN / 'ros2'} topic hz /nut_ros/image", shell=True,
                            capture_output=True, text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
        self.assertIn("average rate:", hz.stdout, hz.stderr)

    def test_f_parameters(self):
        self.assertIn("String value is: tiny", ros2("param", "get", "/nut_ros", "model", expect="value is").stdout)
        self.assertIn("Set parameter successful", ros2("param", "set", "/nut_ros", "max_rate", "4.0",
                                                       expect="parameter").stdout)
        refused = ros2("param", "set", "/nut_ros", "model", "small", expect="parameter")
        self.assertIn("changes only while the node is unconfigured", refused.stdout + refused.stderr)
        invalid = ros2("param", "set", "/nut_ros", "render_times", "[5.0]", expect="parameter")
        self.assertIn("outside", invalid.stdout + invalid.stderr)
        self.assertIn("Set parameter successful", ros2("param", "set", "/nut_ros", "max_rate", "0.0",
                                                       expect="parameter").stdout)

    def test_g_lifecycle_transitions(self):
        lost_before = self.received["stats"][-1][1].frames_lost
        self.assertIn("Transitioning successful", ros2("lifecycle", "set", "/nut_ros", "deactivate",
                                                       expect="Transitioning").stdout)
        self.assertEqual(ros2("lifecycle", "get", "/nut_ros", expect="[").stdout.strip(), "inactive [2]")
        time.sleep(1.0)
        count = len(self.received["image"])
        time.sleep(2.0)
        self.assertEqual(len(self.received["image"]), count, "inactive: nothing published")
        self.assertIn("Transitioning successful", ros2("lifecycle", "set", "/nut_ros", "activate",
                                                       expect="Transitioning").stdout)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(self.received["image"]) == count:
            time.sleep(0.2)
        self.assertGreater(len(self.received["image"]), count, "active again: outputs again")
        stats_count = len(self.received["stats"])
        while time.monotonic() < deadline + 10 and len(self.received["stats"]) < stats_count + 2:
            time.sleep(0.2)
        # the camera published about 30 images while the node was inactive (not subscribed): none of them was lost
        self.assertLess(self.received["stats"][-1][1].frames_lost - lost_before, 10)

    def test_h_the_shutdown_transition_ends_the_process(self, proc_info):
        self.assertIn("Transitioning successful", ros2("lifecycle", "set", "/nut_ros", "shutdown",
                                                       expect="Transitioning").stdout)
        proc_info.assertWaitForShutdown(process="nut_ros_node", timeout=30)  # exit code 0: TestShutdown


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_node_exits_zero_without_errors(self, proc_info, proc_output):
        names = [n for n in proc_info.process_names() if n.startswith("nut_ros_node")]
        self.assertEqual(len(names), 1, proc_info.process_names())
        self.assertEqual(proc_info[names[0]].returncode, 0)
        text = "".join(o.text.decode() for o in proc_output[names[0]])
        self.assertNotIn("ERROR", text)
        self.assertNotIn("Traceback", text)
