"""Fuzz: the lifecycle node in-process (rclpy, private domain, over DDS) against bad images, depth, CameraInfo and
stamps; every case has its expected outcome (a counted drop, an ignored CameraInfo, a refused stamp), the node keeps
running and its buffers stay bounded. The per-frame cases without DDS are in test_ros_processor.py."""
import os
import threading
import time

import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros import topics
from nut_ros.ros.node_session import wait_until as session_wait_until

pytestmark = pytest.mark.ros

K = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
T0 = 1_000 * 10**9
DEPTH_TIMEOUT = 0.3  # seconds: auto depth mode stops waiting for depth this long after the last depth image


def wait_until(condition, timeout=60.0):
    return session_wait_until(condition, timeout, poll_s=0.02)


class Rig:
    """A NutRosNode plus a node publishing into it, spun by one executor thread."""

    def __init__(self, domain_offset=0, **params):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter

        from rclpy.lifecycle import TransitionCallbackReturn

        from nut_ros.ros.lifecycle_node import NutRosNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=101 + (os.getpid() + domain_offset) % 100)
        defaults = {"random_init": True, "input_reliability": "reliable", "diagnostics_period": 0.2,
                    "depth_timeout": DEPTH_TIMEOUT}
        overrides = [Parameter(k, value=v) for k, v in {**defaults, **params}.items()]
        self.node = NutRosNode(context=self.context, parameter_overrides=overrides)
        self.configured = self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        if self.configured:
            self.node.trigger_activate()
        self.src = Node("bad_input_source", context=self.context)
        resolve = topics.resolve_type
        image_topic = topics.COMPRESSED_IMAGE if params.get("image_transport") == "compressed" else topics.IMAGE
        self.image = self.src.create_publisher(resolve(topics.INPUT_TYPES[image_topic]), image_topic, 50)
        depth_topic = topics.COMPRESSED_DEPTH if params.get("depth_transport") == "compressedDepth" else topics.DEPTH
        self.depth = self.src.create_publisher(resolve(topics.INPUT_TYPES[depth_topic]), depth_topic, 50)
        self.info = self.src.create_publisher(resolve("sensor_msgs/msg/CameraInfo"), "camera_info", 50)
        self.outputs, self.diagnostics = [], []
        self.src.create_subscription(resolve("sensor_msgs/msg/Image"), topics.output_topic("image"),
                                     self.outputs.append, 50)
        self.src.create_subscription(resolve(topics.DIAGNOSTICS_TYPE), topics.DIAGNOSTICS, self.diagnostics.append, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.src)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        inputs = [self.image, self.info] + ([self.depth] if params.get("depth_source") != "none" else [])
        if self.configured:
            assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in inputs) and self.diagnostics)

    @property
    def health(self):
        return self.node.processor.health

    def send(self, stamp, rgb=None, encoding="rgb8", depth=None, info=True, mutate=None):
        from nut_ros.ros.conversions import depth_to_image, intrinsics_to_camera_info, numpy_to_image

        rgb = np.full((K.height, K.width, 3), 120, np.uint8) if rgb is None else rgb
        if info:
            self.info.publish(intrinsics_to_camera_info(K.scaled(rgb.shape[1], rgb.shape[0]), stamp, "cam"))
        if depth is not None:  # first, so that auto depth mode knows depth is alive when the image comes
            depths = self.node.processor.matcher._depths
            seen = len(depths)
            self.depth.publish(depth if not isinstance(depth, np.ndarray) else depth_to_image(depth, stamp, "cam"))
            assert wait_until(lambda: len(depths) > seen or len(depths) == depths.maxlen)
        msg = numpy_to_image(rgb, encoding, stamp, "cam")
        if mutate:
            mutate(msg)
        self.image.publish(msg)

    def settle(self, received):
        """Wait until ``received`` images arrived and each was processed or dropped."""
        h = self.health
        assert wait_until(lambda: h.received >= received and self.node._slot._item is None
                          and self.node._busy_since is None and h.processed + h.dropped_queue
                          + h.dropped_invalid + self.node.processor.matcher.pending >= h.received), vars(h)

    def close(self):
        import rclpy

        self.node.close()
        self.executor.shutdown()
        self.node.destroy_node()
        self.src.destroy_node()
        rclpy.shutdown(context=self.context)
        self.spinner.join(timeout=5)


@pytest.fixture(scope="module")
def rig():
    r = Rig()
    yield r
    r.close()


def test_bad_input_is_counted_and_the_node_keeps_working(rig):
    h = rig.health
    drops = rig.node.processor.pipeline.stats.drops
    truncate = lambda m: setattr(m, "data", bytes(m.data)[:100])  # noqa: E731

    rig.send(T0, encoding="rgb8", mutate=lambda m: setattr(m, "encoding", "nv21"))
    rig.settle(1)  # one at a time: two back-to-back frames may meet in the newest-frame slot (a counted queue drop)
    rig.send(T0 + 1, mutate=truncate)
    rig.settle(2)
    assert (h.dropped_invalid, h.processed) == (2, 0)

    rig.send(T0 + 10**8)
    rig.settle(3)
    assert h.processed == 1 and wait_until(lambda: len(rig.outputs) == 1)

    rig.send(T0 + 10**8)  # duplicate stamp
    rig.settle(4)
    rig.send(T0 + 5 * 10**7)  # backwards by 50 ms
    rig.settle(5)
    assert drops["stamp_duplicate"] == 1 and drops["stamp_backwards"] == 1 and h.dropped_invalid == 4

    bad_depth = np.full((K.height, K.width), np.nan, np.float32)
    bad_depth[0, :3] = [0.0, np.inf, -1.0]
    rig.send(T0 + 2 * 10**8, depth=bad_depth)  # depth alive now (auto mode): matched, unusable, used without it
    rig.settle(6)
    assert rig.node.processor.pipeline.stats.depth_unusable == 1 == h.depth_unusable and h.dropped_invalid == 4
    assert h.processed == 2 and wait_until(lambda: len(rig.outputs) == 2)
    assert rig.node.processor.depth_source == "none"
    time.sleep(DEPTH_TIMEOUT + 0.1)  # depth stopped: images go alone again

    rig.send(T0 + 3 * 10**8, rgb=np.full((96, 128, 3), 60, np.uint8), info=False)  # new size: a new stream
    rig.settle(7)
    # (both streams paused: the image waits up to depth_timeout for its depth, then the node's poll hands it on)
    assert wait_until(lambda: h.processed == 3, timeout=5.0) and wait_until(lambda: len(rig.outputs) == 3)
    # two new streams: depth's arrival (the frame with the unusable depth image) and the new size
    assert rig.node.processor.pipeline.stats.resets["input_changed"] == 2


@pytest.mark.parametrize("name, mutate", [
    ("raw image over max_input_pixels", lambda m: (setattr(m, "width", 20000), setattr(m, "height", 20000),
                                                   setattr(m, "step", 60000))),
    ("invalid nanosec", lambda m: setattr(m.header.stamp, "nanosec", 1_500_000_000)),
])
def test_images_refused_before_decoding(rig, name, mutate):
    h = rig.health
    before = (h.received, h.dropped_invalid, h.processed, h.lost)
    stamp = T0 + 20 * 10**9 + before[0] * 10**8  # (later than the images of the cases before)
    rig.send(stamp, mutate=mutate)
    rig.settle(before[0] + 1)
    assert (h.dropped_invalid - before[1], h.processed - before[2]) == (1, 0), name
    rig.send(stamp + 10**8)
    rig.settle(before[0] + 2)
    assert (h.processed - before[2], h.lost - before[3]) == (1, 0), f"{name}: the refused image arrived, not lost"


@pytest.mark.parametrize("k, why", [
    ([1e-40, 0, 31.5, 0, 1e-40, 23.5, 0, 0, 1], "fx = 1e-40: every point at infinity"),
    ([1e-3, 0, 31.5, 0, 1e-3, 23.5, 0, 0, 1], "fx = 1e-3: points 1e4 m away"),
    ([60, 0, 1e12, 0, 60, 23.5, 0, 0, 1], "cx = 1e12"),
    ([float("nan"), 0, 31.5, 0, 60, 23.5, 0, 0, 1], "NaN"),
    ([0.0] * 9, "uncalibrated"),
])
def test_implausible_camera_info_is_ignored_and_the_frame_still_processed(rig, k, why):
    from nut_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image

    h = rig.health
    processed, rejected = h.processed, h.camera_info_rejected
    stamp = T0 + 30 * 10**9 + processed * 10**8
    info = intrinsics_to_camera_info(K, stamp, "cam")
    info.k = [float(v) for v in k]
    rig.info.publish(info)
    infos = rig.node.processor.matcher._infos  # the image must meet its own CameraInfo, not an older one
    assert wait_until(lambda: any(s == stamp for s, _ in list(infos)))
    rig.image.publish(numpy_to_image(np.full((K.height, K.width, 3), 90, np.uint8), "rgb8", stamp, "cam"))
    rig.settle(h.received + 1)
    assert h.processed == processed + 1, why
    assert rig.node.processor.last_intrinsics == K, f"{why}: the last valid intrinsics of 64x48 images are used"
    assert h.camera_info_rejected == rejected + 1, why


def test_burst_faster_than_processing_drops_old_frames_and_stays_bounded(rig, capfd):
    h = rig.health
    processed, received, queued, lost = h.processed, h.received, h.dropped_queue, h.lost
    stamp = T0 + 10 * 10**9
    for i in range(30):  # the input QoS (KEEP_LAST) may already thin this out before the node sees it
        rig.send(stamp + i * 10**6, info=False)
    last = stamp + 29 * 10**6
    assert wait_until(lambda: any(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == last for m in rig.outputs))
    rig.settle(h.received)
    assert h.received - received > 2 and h.dropped_queue > queued, "frames arriving while busy replace each other"
    assert h.processed - processed < h.received - received
    assert rig.node.processor.matcher.pending <= rig.node.params.sync_buffer
    assert (h.received - received) + (h.lost - lost) == 30, "what the QoS thinned out is counted as lost"
    err = capfd.readouterr().err
    assert "frames dropped so far because the node was still busy" in err


def test_missing_checkpoint_leaves_the_node_unconfigured_with_the_reason(tmp_path):
    rig = Rig(domain_offset=50, random_init=False, checkpoint=str(tmp_path / "missing.safetensors"))
    try:
        assert not rig.configured and rig.node.processor is None
        assert "missing.safetensors" in rig.node.error
        assert rig.image.get_subscription_count() == 0, "unconfigured: nothing subscribed"
        assert wait_until(lambda: rig.diagnostics)
        status = rig.diagnostics[-1].status[0]
        assert status.level == b"\x02" and "configure failed" in status.message and "missing" in status.message
    finally:
        rig.close()


def test_compressed_input_and_interpolated_views():
    from nut_ros.ros.conversions import compress_image, intrinsics_to_camera_info

    rig = Rig(domain_offset=75, image_transport="compressed", render_times=[1.0, 0.5])
    try:
        stamps = [T0, T0 + 10**8]
        for i, stamp in enumerate(stamps):
            rig.info.publish(intrinsics_to_camera_info(K, stamp, "cam"))
            rig.image.publish(compress_image(np.full((K.height, K.width, 3), 40 * i, np.uint8), "rgb8", "jpeg",
                                             stamp_ns=stamp, frame_id="cam"))
            rig.settle(i + 1)
        assert rig.health.processed == 2
        assert wait_until(lambda: len(rig.outputs) == 3)
        got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in rig.outputs]
        assert got == [T0, T0 + 5 * 10**7, T0 + 10**8], "first frame: one view; then the pair at t = 0.5 and 1"
    finally:
        rig.close()


@pytest.mark.parametrize("case", ["corrupt", "other_model"])
def test_unusable_checkpoint_leaves_the_node_unconfigured(tmp_path, case):
    from nut_ros.core.checkpoint import save_checkpoint
    from nut_ros.core.model import build_model

    path = tmp_path / "weights.safetensors"
    if case == "corrupt":
        path.write_bytes(b"\x00" * 64)
    else:
        save_checkpoint(build_model("tiny"), path)
    rig = Rig(domain_offset=60, random_init=False, checkpoint=str(path), model="small")
    try:
        assert not rig.configured and rig.node.processor is None
        assert ("holds model 'tiny'" in rig.node.error) == (case == "other_model"), rig.node.error
    finally:
        rig.close()


def test_compressed_depth_is_subscribed_and_makes_the_output_metric():
    from nut_ros.ros.conversions import compress_depth

    rig = Rig(domain_offset=85, depth_transport="compressedDepth", depth_source="topic")
    try:
        depth = np.full((K.height, K.width), 1.5, np.float32)
        rig.send(T0, depth=compress_depth(depth, "32FC1", stamp_ns=T0, frame_id="cam"))
        rig.settle(1)
        assert rig.health.processed == 1 and rig.node.processor.metric
        assert rig.node.processor.depth_source == "topic"
    finally:
        rig.close()


def test_camera_info_changing_every_frame_is_logged_throttled(rig, capfd):
    from nut_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image
    from nut_ros.ros.lifecycle_node import THROTTLE_S

    h = rig.health
    start = T0 + 40 * 10**9
    time.sleep(THROTTLE_S)  # earlier tests' size changes logged the same line: start a fresh throttle window
    capfd.readouterr()
    for i in range(8):
        stamp = start + i * 10**8
        k = Intrinsics(60.0 + i, 60.0 + i, 31.5, 23.5, 64, 48)
        rig.info.publish(intrinsics_to_camera_info(k, stamp, "cam"))
        rig.image.publish(numpy_to_image(np.full((48, 64, 3), 70, np.uint8), "rgb8", stamp, "cam"))
        rig.settle(h.received + 1)
    changes = capfd.readouterr().err.count("CameraInfo changed")
    assert 1 <= changes <= 2, f"{changes} log lines for 8 changes within a few seconds"


def test_an_input_topic_of_another_message_type_is_named_in_the_diagnostics(rig):
    """A compressed stream published on the raw depth topic never reaches the node: /diagnostics says so (WARN,
    with the types and what to set) while that publisher is there, and stops once it is gone."""
    import rclpy
    from rclpy.node import Node

    other = rclpy.Context()  # (DDS refuses two types of one topic in one participant)
    rclpy.init(context=other, domain_id=rig.context.get_domain_id())
    source = Node("compressed_source", context=other)
    wrong = source.create_publisher(topics.resolve_type("sensor_msgs/msg/CompressedImage"), topics.DEPTH, 5)

    def said(diag) -> bool:
        status = diag.status[0]
        return "not sensor_msgs/msg/Image" in status.message and status.level == b"\x01"

    try:
        seen = len(rig.diagnostics)
        assert wait_until(lambda: any(said(d) for d in rig.diagnostics[seen:]), timeout=10.0)
        message = next(d for d in rig.diagnostics[seen:] if said(d)).status[0].message
        assert "/depth is published as sensor_msgs/msg/CompressedImage" in message and "compressedDepth" in message
    finally:
        source.destroy_publisher(wrong)
        source.destroy_node()
        rclpy.shutdown(context=other)
    seen = len(rig.diagnostics)
    assert wait_until(lambda: len(rig.diagnostics) > seen + 2 and not said(rig.diagnostics[-1]), timeout=10.0)
