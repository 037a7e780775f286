"""The ``nut_ros`` ROS 2 node: camera stream in, dynamic Gaussian map out.

ROS wiring only. Callbacks match image, depth and CameraInfo by stamp (``input_sync``) and hand the newest match
to a worker thread through a slot of depth one, so they never block and a burst only replaces the pending frame
(counted as a queue drop). The worker builds a pipeline ``Frame`` (``inputs``), pushes it through the
``StreamingPipeline`` and publishes what ``outputs`` builds. A timer publishes ``~/stats`` and ``/diagnostics``.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import PipelineConfig
from nut_ros.ros import topics
from nut_ros.ros.conversions import ConversionError, stamp_to_ns
from nut_ros.ros.health import NodeHealth, assess, diagnostics_message, stats_message
from nut_ros.ros.input_sync import LatestSlot, Matched, StampMatcher
from nut_ros.ros.inputs import frame_from_messages
from nut_ros.ros.outputs import STEP_OUTPUTS, VIEW_OUTPUTS, step_messages, view_messages
from nut_ros.ros.params import NodeParams, declare_and_read

THROTTLE_S = 5.0


class NutRosNode(Node):
    """Subscribes ``image_raw`` (or ``image_raw/compressed``), ``depth``, ``camera_info``; publishes ``~/*``."""

    def __init__(self, **kwargs):
        super().__init__(topics.NODE_NAME, **kwargs)
        self.params: NodeParams = declare_and_read(self)
        p = self.params
        self.health = NodeHealth()
        self.pipeline: StreamingPipeline | None = None
        self.model_error: str | None = None
        self._load_pipeline()

        self._matcher = StampMatcher(p.depth_source, int(p.sync_tolerance * 1e9), p.sync_buffer, p.depth_timeout)
        self._slot: LatestSlot[tuple[Matched, float]] = LatestSlot()
        self._unmatched_seen = 0
        self._last_intrinsics = None
        self._metric = False
        self._depth_source = "none"

        enabled = {name for name in topics.OUTPUT_TYPES if name == "stats" or getattr(p, f"publish_{name}")}
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._pubs = {name: self.create_publisher(topics.resolve_type(topics.OUTPUT_TYPES[name]), f"~/{name}",
                                                  out_qos)
                      for name in enabled}
        self._diag_pub = self.create_publisher(topics.resolve_type(topics.DIAGNOSTICS_TYPE), topics.DIAGNOSTICS, 10)

        in_qos = QoSProfile(depth=p.input_qos_depth, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.RELIABLE if p.input_reliability == "reliable"
                            else ReliabilityPolicy.BEST_EFFORT)
        image_topic = topics.COMPRESSED_IMAGE if p.image_transport == "compressed" else topics.IMAGE
        self.create_subscription(topics.resolve_type(topics.INPUT_TYPES[image_topic]), image_topic,
                                 self._on_image, in_qos)
        if p.depth_source != "none":
            self.create_subscription(topics.resolve_type(topics.INPUT_TYPES[topics.DEPTH]), topics.DEPTH,
                                     self._on_depth, in_qos)
        self.create_subscription(topics.resolve_type(topics.INPUT_TYPES[topics.CAMERA_INFO]), topics.CAMERA_INFO,
                                 self._on_info, in_qos)
        self.create_timer(p.diagnostics_period, self._publish_health)

        self._stop = threading.Event()
        self._busy_since: float | None = None
        self._worker = threading.Thread(target=self._work, name="nut_ros_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"listening on {self.resolve_topic_name(image_topic)} (depth: {p.depth_source}); backend {p.backend}, "
            f"model {p.model} on {p.device}; publishing {', '.join(sorted(self._pubs))}")

    # -- setup -----------------------------------------------------------------------------------------------
    def _load_pipeline(self) -> None:
        """Build backend and pipeline; on failure keep running in the ERROR state (counted, reported)."""
        p = self.params
        try:
            options = {"bf16": p.bf16, "compile": p.compile} if p.backend == "torch" else {}
            backend = make_backend(p.backend, p.model, p.checkpoint or None, p.device, random_init=p.random_init,
                                   **options)
            config = backend.model_config
            if p.checkpoint and config.name != p.model:
                raise ValueError(f"checkpoint {p.checkpoint} holds model {config.name!r}, but parameter model is "
                                 f"{p.model!r}")
            native = config.image_size
            if p.input_width and (p.input_height, p.input_width) != tuple(native):
                raise ValueError(f"input size {p.input_width}x{p.input_height} differs from the model's "
                                 f"{native[1]}x{native[0]}")
        except Exception as err:  # noqa: BLE001 - any load failure leaves the node up, in the ERROR state
            self.model_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"cannot load the model; every frame will be dropped: {self.model_error}")
            return
        self.pipeline = StreamingPipeline(backend, PipelineConfig(render_times=tuple(p.render_times),
                                                                   motion_prior=p.motion_prior,
                                                                   flow_preset=p.flow_preset,
                                                                   flow_max_width=p.flow_max_width,
                                                                   flow_check=p.flow_check,
                                                                   interp_window=p.interp_window,
                                                                   interp_samples=p.interp_samples))
        flow = self.pipeline.flow_prior
        if flow is not None and flow.preset != p.flow_preset:
            self.get_logger().warning(f"flow_preset {p.flow_preset} needs OpenCV's contrib modules "
                                      f"(opencv-contrib-python-headless); the motion prior uses "
                                      f"{self.pipeline.flow_settings}")
        if p.random_init:
            self.get_logger().warning("running with a randomly initialised model (random_init: true)")

    # -- callbacks (executor thread) -----------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        self.health.count(received=1)
        self._hand_off(self._matcher.add_image(stamp_to_ns(msg.header.stamp), msg))

    def _on_depth(self, msg) -> None:
        self._hand_off(self._matcher.add_depth(stamp_to_ns(msg.header.stamp), msg))

    def _on_info(self, msg) -> None:
        self._hand_off(self._matcher.add_info(stamp_to_ns(msg.header.stamp), msg))

    def _hand_off(self, matched: Matched | None) -> None:
        unmatched = self._matcher.unmatched - self._unmatched_seen
        if unmatched:
            self._unmatched_seen = self._matcher.unmatched
            self.health.count(dropped_invalid=unmatched)
            self.get_logger().warning(f"{self._matcher.unmatched} images dropped so far while waiting for their "
                                      f"depth image or a first CameraInfo (sync_tolerance "
                                      f"{self.params.sync_tolerance} s)", throttle_duration_sec=THROTTLE_S)
        if matched is not None and self._slot.put((matched, time.perf_counter())):
            self.health.count(dropped_queue=1)

    # -- worker thread -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        period = 1.0 / self.params.max_rate if self.params.max_rate > 0 else 0.0
        while not self._stop.is_set():
            item = self._slot.get(timeout=0.2)
            if item is None:
                continue
            started = self._busy_since = time.perf_counter()
            try:
                self._process(*item)
            except Exception as err:  # noqa: BLE001 - one bad frame must not kill the worker
                self.health.count(dropped_invalid=1)
                self.get_logger().error(f"frame failed: {type(err).__name__}: {err}", throttle_duration_sec=THROTTLE_S)
            self._busy_since = None
            if period:
                self._stop.wait(max(0.0, period - (time.perf_counter() - started)))

    def _process(self, matched: Matched, arrived: float) -> None:
        log = self.get_logger()
        if self.pipeline is None:
            self.health.count(dropped_invalid=1)
            log.error(f"frame dropped, no model: {self.model_error}", throttle_duration_sec=THROTTLE_S)
            return
        try:
            built = frame_from_messages(matched, self.params.depth_scale, self.params.frame_id)
        except ConversionError as err:
            self.health.count(dropped_invalid=1)
            log.warning(f"frame dropped: {err}", throttle_duration_sec=THROTTLE_S)
            return
        for note in built.notes:
            log.warning(note, throttle_duration_sec=THROTTLE_S)
        frame = built.frame
        self._note_intrinsics(frame.intrinsics)

        drops_before = Counter(self.pipeline.stats.drops)
        try:
            result = self.pipeline.push(frame)
        except ValueError as err:
            self.health.count(dropped_invalid=1)
            log.warning(f"frame dropped: {err}", throttle_duration_sec=THROTTLE_S)
            return
        if result is None:
            reasons = ", ".join((self.pipeline.stats.drops - drops_before).keys())
            self.health.count(dropped_invalid=1)
            log.warning(f"frame at {frame.stamp_ns} ns dropped by the pipeline: {reasons}",
                        throttle_duration_sec=THROTTLE_S)
            return

        self._metric, self._depth_source = result.metric, result.depth_source
        enabled = set(self._pubs)
        for msgs in view_messages(result, frame.frame_id, enabled & set(VIEW_OUTPUTS)):
            for name, msg in msgs.items():
                self._pubs[name].publish(msg)
        for name, msg in step_messages(result, frame.frame_id, enabled & set(STEP_OUTPUTS),
                                       serialized_gaussians=True).items():
            self._pubs[name].publish(msg)
        self.health.count(processed=1)
        self.health.record_latency({**result.latency_ms, "total": (time.perf_counter() - arrived) * 1e3})

    def _note_intrinsics(self, intrinsics) -> None:
        if intrinsics is None:
            self.get_logger().warning("no CameraInfo: assuming a default field of view", throttle_duration_sec=30.0)
        elif intrinsics != self._last_intrinsics:
            if self._last_intrinsics is not None:
                self.get_logger().info(f"CameraInfo changed: {intrinsics}")
            self._last_intrinsics = intrinsics

    # -- health (executor thread) --------------------------------------------------------------------------------
    def _publish_health(self) -> None:
        last, now = self.health.period()
        p = self.params
        info = {"backend": p.backend, "model": p.model, "depth_source": self._depth_source, "metric": self._metric}
        live = self.pipeline.live_gaussians if self.pipeline is not None else 0
        stamp = self.get_clock().now().nanoseconds
        stats = stats_message(self.health, last, now, info, live, stamp)
        self._pubs["stats"].publish(stats)
        busy_since = self._busy_since
        level, message = assess(last, now, self.model_error,
                                None if busy_since is None else time.perf_counter() - busy_since)
        self._diag_pub.publish(diagnostics_message(stats, level, message, f"{self.get_name()}: pipeline",
                                                   f"{p.backend}/{p.device}", stamp))

    def close(self) -> None:
        """Stop and join the worker thread (idempotent)."""
        self._stop.set()
        self._slot.close()
        self._worker.join(timeout=30.0)


def main(args=None) -> int:
    try:
        rclpy.init(args=args)
    except Exception as err:  # noqa: BLE001 - malformed --ros-args (e.g. a parameter rcl cannot parse)
        print(f"nut_ros: cannot start: {err}", file=sys.stderr)
        return 2
    try:
        node = NutRosNode()
    except Exception as err:  # noqa: BLE001 - invalid parameters: say why and exit non-zero
        rclpy.logging.get_logger(topics.NODE_NAME).fatal(str(err))
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
