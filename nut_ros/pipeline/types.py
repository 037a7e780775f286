"""Plain data types that flow through the streaming pipeline (numpy on the outside, no ROS)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nut_ros.core.geometry import Intrinsics


@dataclass
class Frame:
    """One camera frame as it enters the pipeline."""

    rgb: np.ndarray  # [H, W, 3] uint8, RGB order
    stamp_ns: int
    frame_id: str = "camera_optical_frame"
    depth_m: np.ndarray | None = None  # [H, W] float32 metres, aligned to rgb; NaN / 0 / inf = invalid
    intrinsics: Intrinsics | None = None  # of ``rgb``


@dataclass
class GaussianCloud:
    """Gaussians in the camera optical frame (x right, y down, z forward), structure of arrays, float32."""

    positions: np.ndarray  # [N, 3]
    scales: np.ndarray  # [N, 3] standard deviations along x, y, z
    rotations: np.ndarray  # [N, 4] (w, x, y, z)
    opacities: np.ndarray  # [N]
    colors: np.ndarray  # [N, 3] in [0, 1]
    velocities: np.ndarray  # [N, 3] per second (metric) or per pair interval (relative)
    metric: bool = False  # True: metres and m/s; False: relative (canonical) units

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])


@dataclass
class RenderedView:
    """The Gaussian map rendered at one time, at the model resolution."""

    stamp_ns: int  # the time this view represents
    pair_time: float  # normalised pair time (0 = previous frame, 1 = newest, >1 = prediction)
    rgb: np.ndarray  # [h, w, 3] uint8
    depth: np.ndarray  # [h, w] float32, metres if metric else relative; NaN where alpha is ~0
    alpha: np.ndarray  # [h, w] float32


@dataclass
class StepResult:
    """Everything the pipeline produces for one input frame."""

    stamp_ns: int
    frame_id: str
    metric: bool
    depth_source: str  # "topic" (metric input depth) or "none" (relative)
    views: list[RenderedView]
    gaussians: GaussianCloud
    intrinsics: Intrinsics  # of the rendered views (model resolution)
    latency_ms: dict[str, float] = field(default_factory=dict)
