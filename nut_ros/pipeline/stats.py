"""Counters and bounded latency windows of a streaming pipeline."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from nut_ros.pipeline.metrics import percentiles

#: pipeline stages timed per processed frame, in order
STAGES = ("preprocess", "encode", "decode", "flow", "render", "postprocess", "total")


@dataclass
class StreamStats:
    """What happened to the frames pushed so far; latency windows keep the last ``window`` frames per stage."""

    window: int = 1000
    frames_in: int = 0
    frames_processed: int = 0
    drops: Counter = field(default_factory=Counter)  # reason -> count
    resets: Counter = field(default_factory=Counter)  # reason -> count (streams restarted)
    # frames whose depth image had too few valid pixels (a blinded or covered sensor, a scene beyond its range): they
    # went on RGB only
    depth_unusable: int = 0
    rerenders: int = 0  # frames rendered twice: the CUDA rasterizer's sort buffer was too small (render/pair_budget)
    latency_ms: dict[str, deque] = field(default_factory=dict)

    def __post_init__(self):
        self.latency_ms = {s: deque(maxlen=self.window) for s in STAGES}

    @property
    def frames_dropped(self) -> int:
        return sum(self.drops.values())

    def record(self, latency: dict[str, float]) -> None:
        for stage, ms in latency.items():
            self.latency_ms.setdefault(stage, deque(maxlen=self.window)).append(ms)

    def latency_summary(self) -> dict[str, dict[str, float]]:
        """Per stage: p50/p90/p99/mean/max over the window (stages never timed are left out)."""
        return {s: percentiles(v) for s, v in self.latency_ms.items() if v}

    def as_dict(self) -> dict:
        return {"frames_in": self.frames_in, "frames_processed": self.frames_processed,
                "drops": dict(self.drops), "resets": dict(self.resets), "depth_unusable": self.depth_unusable,
                "rerenders": self.rerenders,
                "latency_ms": self.latency_summary()}
