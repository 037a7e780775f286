"""Node counters, the ``PipelineStats`` message and the ``/diagnostics`` status derived from them."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from nut_ros.ros.msg_types import make_header, msg_class, resolve_flavor

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
LATENCY_STAGES = ("encode", "decode", "render", "total", "obstacles", "map")  # the last two: perception
STALL_S = 30.0  # a frame taking longer than this makes the status WARN


@dataclass
class Snapshot:
    """Counters at one instant (monotonic seconds ``t``)."""

    t: float
    received: int = 0
    processed: int = 0
    dropped_queue: int = 0
    dropped_invalid: int = 0
    lost: int = 0
    depth_unusable: int = 0
    unpaired: int = 0


@dataclass
class NodeHealth:
    """Thread-safe counters of the node plus a window of recent per-stage latencies (ms)."""

    window: int = 100
    received: int = 0
    processed: int = 0
    dropped_queue: int = 0
    dropped_invalid: int = 0
    lost: int = 0  # images that never arrived (transport losses, see input_sync.LossCounter)
    depth_unusable: int = 0  # frames processed RGB only because their depth image had too few valid pixels
    # of dropped_invalid: images superseded or evicted while waiting for their depth image or a first CameraInfo (a
    # depth camera at half the colour rate leaves every other image without one: not a fault of the images)
    unpaired: int = 0
    # inputs refused (FrameProcessor.diagnostic_values says which), and frames processed without a pose with odometry
    depth_rejected: int = 0
    camera_info_rejected: int = 0
    odometry_rejected: int = 0
    frames_without_pose: int = 0
    latency_ms: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.latency_ms = {s: deque(maxlen=self.window) for s in LATENCY_STAGES}
        self._last = Snapshot(time.monotonic())

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, n in increments.items():
                setattr(self, name, getattr(self, name) + n)

    def record_latency(self, latency_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, window in self.latency_ms.items():
                if stage in latency_ms:
                    window.append(latency_ms[stage])

    def mean_latency(self, stage: str) -> float:
        with self._lock:
            window = self.latency_ms[stage]
            return sum(window) / len(window) if window else 0.0

    def period(self) -> tuple[Snapshot, Snapshot]:
        """(previous snapshot, current snapshot); the current one becomes the next call's previous."""
        with self._lock:
            now = Snapshot(time.monotonic(), self.received, self.processed, self.dropped_queue, self.dropped_invalid,
                           self.lost, self.depth_unusable, self.unpaired)
        last, self._last = self._last, now
        return last, now


def rate_hz(last: Snapshot, now: Snapshot) -> float:
    """Frames processed per second between two snapshots."""
    dt = now.t - last.t
    return (now.processed - last.processed) / dt if dt > 0 else 0.0


def assess(last: Snapshot, now: Snapshot, model_error: str | None, busy_s: float | None = None) -> tuple[int, str]:
    """Diagnostic level and message for the period between two snapshots.

    ``busy_s``: how long the worker has been on its current frame (None when idle), so that a frame slower than
    the diagnostics period is not mistaken for a stall.
    """
    if model_error:
        return ERROR, f"model not loaded: {model_error}"
    received = now.received - last.received
    processed = now.processed - last.processed
    unpaired = now.unpaired - last.unpaired
    invalid = now.dropped_invalid - last.dropped_invalid - unpaired
    if invalid and invalid * 2 >= max(received, processed + invalid):
        return WARN, f"{invalid} of {received} images invalid"
    lost = now.lost - last.lost
    if lost and lost * 100 > received + lost:
        return WARN, f"{lost} of {received + lost} images lost in transport"
    unusable = now.depth_unusable - last.depth_unusable
    if unusable and unusable * 2 >= processed:
        return WARN, f"{unusable} of {processed} frames without depth: their depth images were unusable"
    if processed:
        return OK, f"processing at {rate_hz(last, now):.1f} Hz"
    if busy_s is not None and busy_s < STALL_S:
        return OK, f"processing a frame ({busy_s:.1f} s so far)"
    if received == 0:
        return WARN, "no input images"
    if unpaired:
        return WARN, (f"{received} images received, none processed: {unpaired} had no depth image within "
                      f"sync_tolerance (or no CameraInfo yet)")
    return WARN, f"{received} images received, none processed"


def stats_message(health: NodeHealth, last: Snapshot, now: Snapshot, info: dict, gaussians_live: int,
                  stamp_ns: int, flavor: str = "auto"):
    """``nut_ros_msgs/PipelineStats``; ``info`` holds backend, model, depth_source and metric."""
    return msg_class("nut_ros_msgs/msg/PipelineStats", flavor)(
        header=make_header(stamp_ns, "", flavor), backend=info["backend"], model=info["model"],
        depth_source=info["depth_source"], metric=bool(info["metric"]),
        frames_received=now.received, frames_processed=now.processed, frames_dropped_queue=now.dropped_queue,
        frames_dropped_invalid=now.dropped_invalid, frames_lost=now.lost, gaussians_live=gaussians_live,
        latency_encode_ms=health.mean_latency("encode"), latency_decode_ms=health.mean_latency("decode"),
        latency_render_ms=health.mean_latency("render"), latency_total_ms=health.mean_latency("total"),
        rate_hz=rate_hz(last, now))


def diagnostics_message(stats, level: int, message: str, name: str, hardware_id: str, stamp_ns: int,
                        flavor: str = "auto", extra: dict | None = None):
    """``diagnostic_msgs/DiagnosticArray`` with one status whose key values mirror the stats message, then
    ``extra`` (values the stats message has no field for: ``FrameProcessor.perception_values``)."""
    key_value = msg_class("diagnostic_msgs/msg/KeyValue", flavor)
    keys = ("backend", "model", "depth_source", "metric", "frames_received", "frames_processed",
            "frames_dropped_queue", "frames_dropped_invalid", "frames_lost", "gaussians_live", "rate_hz",
            "latency_total_ms")
    values = [key_value(key=k, value=_fmt(getattr(stats, k))) for k in keys]
    values += [key_value(key=k, value=_fmt(v)) for k, v in (extra or {}).items()]
    status = msg_class("diagnostic_msgs/msg/DiagnosticStatus", flavor)(
        level=bytes([level]) if resolve_flavor(flavor) == "rclpy" else level, name=name, message=message,
        hardware_id=hardware_id, values=values)
    return msg_class("diagnostic_msgs/msg/DiagnosticArray", flavor)(
        header=make_header(stamp_ns, "", flavor), status=[status])


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
