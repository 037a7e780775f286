"""Plain data types that flow through the streaming pipeline (numpy on the outside, no ROS)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nut_ros.core.choices import MAX_GAP_S, MAX_VIEWS, RENDER_TIME_RANGE
from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.depth_from_motion import MotionDepth

if TYPE_CHECKING:
    import torch


@dataclass
class Frame:
    """One camera frame as it enters the pipeline."""

    rgb: np.ndarray  # [H, W, 3] uint8, RGB order
    stamp_ns: int
    frame_id: str = "camera_optical_frame"
    depth_m: np.ndarray | None = None  # [H, W] float32 metres, aligned to rgb; NaN / 0 / inf = invalid
    intrinsics: Intrinsics | None = None  # of ``rgb``
    # pose of this frame's optical frame in a fixed world frame (odometry / TF), 4x4 float64 T_world<-camera in metres;
    # None when the robot gives no odometry (then camera motion, if needed, is estimated from the images)
    camera_pose: np.ndarray | None = None


@dataclass
class GaussianCloud:
    """Gaussians in the camera optical frame (x right, y down, z forward), structure of arrays, float32."""

    positions: np.ndarray  # [N, 3]
    scales: np.ndarray  # [N, 3] standard deviations along x, y, z
    rotations: np.ndarray  # [N, 4] (w, x, y, z)
    opacities: np.ndarray  # [N]
    colors: np.ndarray  # [N, 3] in [0, 1]
    velocities: np.ndarray  # [N, 3] per second: m/s (metric) or relative units per second
    metric: bool = False  # True: metres and m/s; False: relative (canonical) units

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])


#: columns of a cloud table (``StepResult.device_cloud``): the GaussianCloud's fields side by side, float32
CLOUD_COLUMNS = {"positions": slice(0, 3), "scales": slice(3, 6), "rotations": slice(6, 10), "opacities": slice(10, 11),
                 "colors": slice(11, 14), "velocities": slice(14, 17)}


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
    # what produced the geometry: "topic" (metric depth camera), "odometry" (depth from motion, metric scale from
    # odometry poses), "motion" (depth from motion, relative scale), "none" (the network alone, relative)
    depth_source: str
    views: list[RenderedView]
    gaussians: GaussianCloud
    intrinsics: Intrinsics  # of the rendered views (model resolution)
    latency_ms: dict[str, float] = field(default_factory=dict)
    paired: bool = True  # False for the first frame of a stream (static Gaussians of that frame only)
    pair_interval_s: float | None = None  # seconds between the pair's two frames (None when not paired)
    # the depth the model got for the newest frame at the model resolution (metres when it came from a depth topic or
    # odometry, relative units from motion alone; NaN where invalid), None when it got none
    input_depth: np.ndarray | None = None
    motion_depth: MotionDepth | None = None  # depth from motion of the newest frame (semi-dense, dense, confidence)
    # the rows of ``gaussians`` as the pipeline built them on its device ([N, 17] float32 torch tensor, columns
    # CLOUD_COLUMNS; on a GPU the perception stage works on it there), None when the backend gives numpy only
    device_cloud: torch.Tensor | None = None
    # input_depth as the pipeline left it on the device that prepared the model's inputs ([h, w] float32 tensor; the
    # perception stage reads it there beside device_cloud), None when there was none
    device_depth: torch.Tensor | None = None
    # what made the Gaussians' velocities: "learned" (the network's flow head), "flow" (classical optical flow on the
    # CPU) or "none" (no motion prior); PipelineConfig.motion_prior as the pipeline resolved it
    motion_prior: str = "flow"

    def view_at(self, pair_time: float) -> RenderedView:
        """The view rendered at ``pair_time`` (KeyError when it was not requested)."""
        for view in self.views:
            if abs(view.pair_time - pair_time) < 1e-9:
                return view
        raise KeyError(f"no view at pair time {pair_time}; have {[v.pair_time for v in self.views]}")

    @property
    def newest(self) -> RenderedView:
        """The view at the newest frame's time (pair time 1)."""
        return self.view_at(1.0)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of :class:`nut_ros.pipeline.stream.StreamingPipeline`."""

    # pair times rendered per step (1 = newest; (0,1) interpolate; >1 predict); () = Gaussians only, no renders
    render_times: tuple[float, ...] = (1.0,)
    max_gap_s: float = MAX_GAP_S  # a forward gap or backwards jump larger than this starts a new stream (reset)
    depth_min_m: float = 0.05  # input depth outside [depth_min_m, depth_max_m] is invalid
    depth_max_m: float = 20.0
    # a depth image with fewer valid pixels is not used: dropped within a stream with depth, else RGB only (stream.py)
    min_valid_depth_fraction: float = 0.01
    depth_min_alpha: float = 0.5  # rendered depth is NaN where accumulated alpha is below this
    # False: the host queues each stage while the device still works on the earlier ones, and waits once, for the
    # outputs (the total is exact; on a GPU a stage's time is then the host's, and the wait shows in postprocess);
    # True: wait for the device at every stage boundary, so that per-stage times are the device's (profiling)
    stage_sync: bool = False
    # rendered depth of a frame without any depth input (no depth image, no depth from motion yet): the network's
    # guess from RGB alone, worse than a constant depth on real footage (docs/EVALUATION.md); False: NaN
    network_depth: bool = False
    cloud_min_opacity: float = 0.01  # Gaussians fainter than this at the newest time are left out of the cloud
    default_hfov_deg: float = 60.0  # horizontal field of view assumed when a frame has no intrinsics
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # where the velocities' motion comes from: "learned" (the model's flow head), "flow" (classical optical flow on
    # the CPU, flow_preset) or "none" (the velocity head alone); "auto": "flow" for a model with the learned head on
    # a CPU torch backend (the head measures better but makes a tiny frame 2x slower there), else the model's own
    motion_prior: str = "auto"
    # flow of the prior: DIS ultrafast | fast | medium or sparse_to_dense (motion_prior.choose_flow_preset: the
    # node's "auto" picks sparse_to_dense where the flow feeds its obstacles)
    flow_preset: str = "medium"
    flow_max_width: int = 512  # the flow runs on the model-resolution frames halved until at most this wide
    flow_check: bool = False  # no prior where the forward and backward flows disagree (cost quality on training data)
    # colour of a view between the pair's frames (0 < t < 1): the mean of ``interp_samples`` renders spread over
    # ``interp_window · 4t(1-t)`` pair intervals around t (``stream.window_times``); 0 or 1 sample: one render.
    # 0 by default: on the training sequences (test/bench/interp_study.py, TartanAir and TUM train, tiny) a window
    # of 0.8 lost 0.3-2.0 dB against one render with learned and with classical motion
    interp_window: float = 0.0
    interp_samples: int = 5
    # a view between the pair's frames (0 < t < 1): "joint" renders both frames' Gaussians at once (each faded by
    # its temporal opacity, composited by depth); "per_frame" renders each frame's set alone, unfaded, and blends them
    # with weights (1-t)·alpha0 and t·alpha1 like the flow-warp baseline (stream.per_frame_blend); key frames (t = 0,
    # 1) and predictions are always joint. On the training sequences (test/bench/interp_study.py, tiny, first 91
    # frames, stride 3) per_frame scored TartanAir 28.63 vs joint 28.54 dB with learned motion, 28.24 vs 28.15 with
    # classical, TUM fr1_rpy train 19.71 vs 19.71 and 17.04 vs 17.02: equal within 0.1 dB, at 15-25 % more time per
    # in-between view (two renders), so the default is the cheaper "joint"
    interp_blend: str = "joint"
    # depth from the camera's own motion (nut_ros.geometry.depth_from_motion) fed to the model's depth input:
    # "auto": for frames without a depth image (metric with Frame.camera_pose, else relative); "off": never
    depth_from_motion: str = "auto"
    motion_depth_width: int = 256  # depth from motion runs on the frame shrunk to at most this wide
    # OpenCV's threads (process-wide) for the host's image work: depth from motion and classical flow. 0 = auto: one
    # when the network runs on a GPU (the host's OpenCV calls are small and serial there, and waking a thread pool
    # per call cost more than it saved: tiny compiled on the H200, 5.53 ms p50 with one OpenCV thread against 6.83 ms
    # with 16, OpenCV's default there, 2026-12-04, docs/BENCHMARKS.md), OpenCV's default otherwise; n > 0: n threads
    opencv_threads: int = 0

    def __post_init__(self):
        """``ValueError`` for views the pipeline cannot render (also on ``dataclasses.replace``, so a change between
        frames is refused whole, before it applies)."""
        lo, hi = RENDER_TIME_RANGE
        times = self.render_times
        if len(times) > MAX_VIEWS or not all(isinstance(t, (int, float)) and math.isfinite(t) and lo <= t <= hi
                                              for t in times):
            raise ValueError(f"render_times must be at most {MAX_VIEWS} pair times in [{lo:g}, {hi:g}], got {times!r}")
        if not (isinstance(self.interp_samples, int) and self.interp_samples >= 1
                and math.isfinite(self.interp_window) and self.interp_window >= 0):
            raise ValueError(f"interp_samples must be an integer >= 1 and interp_window finite and >= 0, got "
                             f"{self.interp_samples!r} and {self.interp_window!r}")
