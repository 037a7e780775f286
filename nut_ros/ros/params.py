"""Typed, validated parameters of the ``nut_ros`` node.

``NodeParams`` is the single source of truth: each field carries its description, constraint and whether it may
change while the node is configured (``dynamic``); they are used both to declare the ROS parameters (with
descriptors and ranges) and to validate the values. The module imports rclpy only inside ``declare_and_read`` so
the catalogue can be checked without ROS.
"""
from __future__ import annotations

import array
import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from nut_ros.core.choices import (BACKENDS, DEPTH_FROM_MOTION, FLOW_PRESETS, INTERP_BLENDS, MAX_GAP_S, MAX_VIEWS,
                                  MOTION_PRIORS, RENDER_TIME_RANGE)
from nut_ros.core.config import CONFIGS
from nut_ros.perception.params import MapParams, ObstacleParams

TRANSPORTS = ("raw", "compressed")
DEPTH_TRANSPORTS = ("raw", "compressedDepth")
RELIABILITIES = ("auto", "reliable", "best_effort")  # nut_ros.ros.transport.RELIABILITIES
DEPTH_SOURCES = ("auto", "topic", "none")
RECTIFY_MODES = ("auto", "always", "never")
#: max_rate must leave at least this many frames per max_gap_s: frames processed at 1/max_rate come that far apart
#: give or take a camera period and the stamps' jitter, and a gap over max_gap_s restarts the stream
MIN_GAPS_PER_FRAME = 2.0


class ParamError(ValueError):
    """One or more parameters are invalid; the message names each of them."""


def _param(default, description: str, *, choices: tuple[str, ...] | None = None,
           lo: float | None = None, hi: float | None = None, dynamic: bool = False):
    meta = {"description": description, "choices": choices, "range": None if lo is None else (lo, hi),
            "dynamic": dynamic}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NodeParams:
    """All parameters of the node. ``dynamic`` ones may change at any time (``ros2 param set``); the others while
    the node is unconfigured (lifecycle ``cleanup``, set, ``configure``)."""

    autostart: bool = _param(True, "Configure and activate at start-up (nut_ros_node then exits non-zero when "
                             "configuring fails); false: wait for `ros2 lifecycle set`.")
    backend: str = _param("torch", "Inference backend.", choices=BACKENDS)
    model: str = _param("tiny", "Model configuration name (nut_ros.core.config registry).")
    checkpoint: str = _param("", "Weights: a .safetensors file for torch (empty: the packaged weights of `model`); "
                             "for onnxruntime an export folder or its `*.manifest.json`; for tensorrt an engine "
                             "folder or its `*.engines.json` (both required).")
    random_init: bool = _param(False, "Run with random weights when no weights exist (the checkpoint, or the packaged "
                               "weights of `model`); weights that exist are always used (tests and demos only).")
    device: str = _param("cpu", "Torch device: cpu, cuda or cuda:N.")
    bf16: bool = _param(False, "bf16 autocast of the network (torch backend on CUDA only).")
    compile: bool = _param(False, "torch.compile the network (torch backend; it compiles at configure: about a minute "
                           "on a GPU, 1-1.5 min on 2 CPU cores, ~10 s at later starts from Inductor's cache, "
                           "TORCHINDUCTOR_CACHE_DIR, by default under /tmp; fused kernels, replayed inside the CUDA "
                           "graphs when cuda_graphs is on). For CUDA: small 9.0 (H200; 9.3 on an H100) against 14.0 ms "
                           "per frame on an H200. On a 2-core CPU (Inductor's C++ kernels, a C++ compiler needed): "
                           "tiny 152 against 166 ms per frame (docs/BENCHMARKS.md). A failure to compile is logged and "
                           "the network runs eagerly.")
    cuda_graphs: bool = _param(True, "Replay the network as CUDA graphs (torch backend on a CUDA device; no effect "
                               "elsewhere). Same kernels as eager (or as compiled), without the launch overhead.")
    input_width: int = _param(0, "Network input width the model (or engine) must have; 0: accept its native size. "
                              "Camera images of any size are resized to it.", lo=0, hi=4096)
    input_height: int = _param(0, "Network input height the model (or engine) must have; 0: accept its native size.",
                               lo=0, hi=4096)
    image_transport: str = _param("raw", "Subscribe to `image_raw` (raw) or `image_raw/compressed`.",
                                  choices=TRANSPORTS)
    input_reliability: str = _param("auto", "Reliability QoS of the input subscriptions: auto (reliable when every "
                                    "publisher is, which delivers large images over UDP; else best effort), reliable "
                                    "or best_effort (applied within a second when changed).", choices=RELIABILITIES,
                                    dynamic=True)
    input_qos_depth: int = _param(10, "History depth of the input subscriptions (frames buffered while the node is "
                                  "busy; the processing takes only the newest).", lo=1, hi=100)
    depth_source: str = _param("auto", "Metric depth from the `depth` topic (topic), never (none), or when "
                               "depth messages arrive (auto).", choices=DEPTH_SOURCES)
    depth_transport: str = _param("raw", "Subscribe to `depth` (raw) or `depth/compressedDepth` (PNG, as "
                                  "compressed_depth_image_transport publishes it).", choices=DEPTH_TRANSPORTS)
    depth_scale: float = _param(0.001, "Metres per unit of 16UC1 depth images.", lo=1e-6, hi=1.0, dynamic=True)
    rectify: str = _param("auto", "Rectify the images (and the depth aligned to them) of a CameraInfo with lens "
                          "distortion, as image_proc does: always, never, or auto (unless the image topic says it is "
                          "rectified: a name part starting with image_rect, as image_proc's, equal to rect, or "
                          "holding 'rectified' or 'undistort').", choices=RECTIFY_MODES)
    max_input_pixels: int = _param(3840 * 2160, "Images with more pixels are dropped (a depth image counts as one "
                                   "without valid pixels), checked from the header before decoding; 0: no cap.",
                                   lo=0, hi=1_000_000_000, dynamic=True)
    sync_tolerance: float = _param(0.02, "Largest stamp difference in seconds for image/depth/CameraInfo matching.",
                                   lo=0.0, hi=1.0, dynamic=True)
    sync_buffer: int = _param(10, "Messages kept per input for stamp matching.", lo=1, hi=100)
    depth_timeout: float = _param(1.0, "Seconds without depth (auto mode), or before a first CameraInfo, after "
                                  "which images are used without them; also the longest the first image after a "
                                  "pause of both streams waits for its depth (auto mode).", lo=0.0, hi=60.0)
    use_odometry: bool = _param(False, "Subscribe to `odom` (nav_msgs/Odometry) and give each frame the camera pose "
                                "interpolated at its stamp (between poses at most 0.5 s apart; the last 10 s of "
                                "poses are kept).")
    camera_mount: list[float] = _param([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Pose of the camera optical frame in the "
                                       "odometry's child frame [x, y, z, roll, pitch, yaw] (m, rad; all 0 when the "
                                       "odometry is the camera's own, as nut_ros_make_bag --poses writes it).",
                                       lo=-1000.0, hi=1000.0)
    camera_frame: str = _param("", "TF frame of the camera optical frame; when set, the mount is looked up in TF "
                               "(odometry child frame -> this frame, needs tf2_ros) instead of camera_mount, again "
                               "every second; until TF has it, odometry is ignored and frames get no pose.")
    publish_depth: bool = _param(True, "Publish the rendered depth (32FC1): `~/depth` in metres when metric, "
                                "else `~/relative/depth` in relative units.", dynamic=True)
    publish_image: bool = _param(True, "Publish the rendered RGB image (`~/image`, rgb8).", dynamic=True)
    publish_camera_info: bool = _param(True, "Publish the CameraInfo of the rendered images (`~/camera_info`).",
                                       dynamic=True)
    publish_points: bool = _param(True, "Publish the Gaussian centres as a coloured PointCloud2: `~/points` "
                                  "when metric, else `~/relative/points`.", dynamic=True)
    publish_gaussians: bool = _param(True, "Publish the Gaussians (`~/gaussians`, nut_ros_msgs/GaussianSet).",
                                     dynamic=True)
    render_times: list[float] = _param([1.0], "Normalised pair times to render: 1 newest frame, (0, 1) "
                                       "interpolation, (1, 2] prediction; 1 to 8 of them, each view published "
                                       "in time order with the stamp of the time it shows; no time twice.",
                                       lo=RENDER_TIME_RANGE[0], hi=RENDER_TIME_RANGE[1], dynamic=True)
    motion_prior: str = _param("auto", "Where the velocities' motion comes from: learned (the model's flow head), "
                               "flow (classical optical flow on the CPU, flow_preset) or none; auto: flow for a "
                               "model with the learned head on a CPU torch backend (the head measures better, "
                               "docs/EVALUATION.md, but makes a tiny frame 2x slower there), else as the model was "
                               "trained (learned on a GPU and in exported graphs).",
                               choices=("auto", *MOTION_PRIORS))
    flow_preset: str = _param("auto", "Optical flow of the motion prior: a DIS preset or sparse_to_dense (needs "
                              "OpenCV contrib; 4-5.5x DIS medium's cost); auto: sparse_to_dense with perception "
                              "where OpenCV has contrib (more precise obstacles), else DIS medium (better flow and "
                              "in-between frames on the training data, docs/EVALUATION.md).",
                              choices=("auto", *FLOW_PRESETS))
    flow_max_width: int = _param(512, "The motion prior's flow runs on the model-resolution frames halved until at "
                                 "most this wide (256: about 5x faster for `small`, blurrier motion boundaries).",
                                 lo=16, hi=4096)
    flow_check: bool = _param(False, "No motion prior where the forward and backward flows disagree (occlusions, "
                              "failed matches).")
    interp_window: float = _param(0.0, "Views between the pair's frames (render_times in (0, 1)) average their "
                                  "colour over this many pair intervals times 4t(1-t) around t (the expected image "
                                  "when the motion is uncertain; 0: one render).", lo=0.0, hi=1.0, dynamic=True)
    interp_samples: int = _param(5, "Renders averaged over interp_window.", lo=1, hi=32, dynamic=True)
    interp_blend: str = _param("joint", "Views between the pair's frames: one render of both frames' Gaussians "
                               "(joint), or each frame's rendered alone and blended by time and coverage "
                               "(per_frame: equal quality on the training sequences, two renders).",
                               choices=INTERP_BLENDS, dynamic=True)
    depth_from_motion: str = _param("auto", "Depth from the camera's own motion fed to the network for frames "
                                     "without a depth image (metric with use_odometry, else relative): auto, or "
                                     "off.", choices=DEPTH_FROM_MOTION)
    motion_depth_width: int = _param(256, "Depth from motion runs on the image shrunk to at most this wide.",
                                     lo=32, hi=4096)
    opencv_threads: int = _param(0, "OpenCV's threads (process-wide) for depth from motion and classical flow; 0: "
                                 "auto (one when the network runs on a GPU, where a thread pool per small call "
                                 "cost more than it saved, docs/BENCHMARKS.md; OpenCV's default on a CPU).",
                                 lo=0, hi=256)
    network_depth: bool = _param(False, "Publish the rendered depth of frames without any depth input (no depth "
                                 "image, no depth from motion yet): the network's guess from RGB alone, worse than "
                                 "a constant depth on real footage (docs/EVALUATION.md); false: NaN there.")
    max_rate: float = _param(0.0, "Most frames processed per second; 0: as fast as possible. A rate set here must "
                             "be at least 2/max_gap_s.", lo=0.0, hi=1000.0, dynamic=True)
    max_gap_s: float = _param(MAX_GAP_S, "A gap between processed frames' stamps (forward, or a jump "
                              "backwards) longer than this starts a new stream: no pair, motion or depth from motion "
                              "across it. Raise it for a camera, a max_rate or a processing rate below 1 Hz.",
                              lo=0.01, hi=3600.0)
    worker_nice: int = _param(0, "Niceness of the processing thread: 5-10 lets message reception pre-empt it when a "
                              "fast camera outpaces the node on few cores (fewer frames lost, fewer processed when "
                              "other processes compete for the CPU).", lo=0, hi=19)
    frame_id: str = _param("", "Frame id of the outputs; empty: the input image's frame id.", dynamic=True)
    diagnostics_period: float = _param(1.0, "Seconds between /diagnostics and `~/stats` updates.", lo=0.05, hi=60.0,
                                       dynamic=True)
    perception: bool = _param(False, "Moving obstacles (`~/obstacles`, `~/obstacle_markers`) and a persistent local "
                              "map (`~/map_points`, `~/map`) from the live Gaussians (per frame with odometry: "
                              "10.5 ms p50 with `tiny` on a quiet 2-core CPU, 12.4 ms without odometry; eager, "
                              "2.6 ms on an H200; docs/BENCHMARKS.md). Obstacle velocities come from the Gaussians' "
                              "motion: motion_prior flow gives better ones than the learned head (docs/ROS_SETUP.md).")
    perception_compile: bool = _param(False, "torch.compile the perception stage's per-Gaussian part inside its CUDA "
                                      "graphs (perception with the torch backend on a CUDA device; no effect "
                                      "elsewhere). It compiles on the first frames of each stream setting (depth "
                                      "image or not, odometry or not): tens of seconds each, while newer frames "
                                      "are dropped (counted). Its outputs match the eager stage's within rounding "
                                      "(tested); on an H100 it saved 0.5-0.9 ms per frame where the stage's GPU part "
                                      "is long (no odometry, tiny), nothing for small with odometry; on an H200 "
                                      "tiny compiled takes 2.05 ms p50 with odometry (docs/ROS_SETUP.md). A failure to "
                                      "compile is logged and the stage goes on without.")
    publish_obstacles: bool = _param(True, "Publish the tracked moving obstacles every processed frame "
                                     "(`~/obstacles`, nut_ros_msgs/ObstacleArray, empty arrays too; perception).",
                                     dynamic=True)
    publish_obstacle_markers: bool = _param(True, "Publish the obstacles' boxes and velocity arrows for RViz "
                                            "(`~/obstacle_markers`, visualization_msgs/MarkerArray; perception).",
                                            dynamic=True)
    publish_map_points: bool = _param(True, "Publish the local map's centres every map_period (`~/map_points`, "
                                      "`~/relative/map_points` without metric scale; PointCloud2, transient local; "
                                      "perception).", dynamic=True)
    publish_map: bool = _param(True, "Publish the local map's Gaussians every map_period (`~/map`, "
                               "nut_ros_msgs/GaussianSet, transient local; perception).", dynamic=True)
    obstacle_moving_speed: float = _param(ObstacleParams.moving_speed, "A Gaussian moves when its speed over the "
                                          "ground, averaged over its image cell, exceeds this (m/s, or relative units "
                                          "per second without metric depth; above 0: the camera-motion fit divides "
                                          "by the threshold) ...", lo=0.001, hi=100.0)
    obstacle_moving_speed_per_m: float = _param(ObstacleParams.moving_speed_per_m, "... plus this much per metre "
                                                "of depth (velocity noise grows with depth).", lo=0.0, hi=100.0)
    obstacle_flow_error_ratio: float = _param(ObstacleParams.flow_error_ratio, "... plus this share of the camera's "
                                              "own apparent speed at the Gaussian (flow and odometry err by a share "
                                              "of it; times the surface slope for the depth rate).", lo=0.0, hi=10.0)
    obstacle_learned_flow_error_ratio: float = _param(ObstacleParams.learned_flow_error_ratio, "That share when the "
                                                      "velocities come from the learned flow head (motion_prior "
                                                      "learned, the GPU default).", lo=0.0, hi=10.0)
    obstacle_flow_error_knee_px: float = _param(ObstacleParams.flow_error_knee_px, "Classical flow's share grows "
                                                "with the pair's static displacement at the Gaussian beyond this "
                                                "many model pixels (pairs far apart, as a slow node takes them, move "
                                                "the view further than the flow follows; 0: off) ...", lo=0.0,
                                                hi=1000.0)
    obstacle_flow_error_growth: float = _param(ObstacleParams.flow_error_growth, "... by this much per knee beyond "
                                               "it (0: off) ...", lo=0.0, hi=100.0)
    obstacle_flow_error_max_factor: float = _param(ObstacleParams.flow_error_max_factor, "... to at most this many "
                                                   "times the share (a fast turn still leaves movers visible).",
                                                   lo=1.0, hi=1000.0)
    obstacle_floor_interval_s: float = _param(ObstacleParams.floor_interval_s, "Pair interval (s) the noise floors "
                                              "above are for; shorter pairs scale them up (same pixel noise, "
                                              "higher speed).", lo=0.0, hi=10.0)
    obstacle_depth_tolerance: float = _param(ObstacleParams.depth_tolerance, "With a metric depth input, Gaussians "
                                             "farther than this (relative) from their pixel's input depth are "
                                             "ignored (0: off).", lo=0.0, hi=10.0)
    obstacle_depth_margin_px: int = _param(ObstacleParams.depth_margin_px, "... and those within this many model "
                                           "pixels of a pixel without input depth.", lo=0, hi=1000)
    obstacle_voxel: float = _param(ObstacleParams.voxel, "Clustering grid of the moving Gaussians (m); touching "
                                   "moving voxels form one obstacle.", lo=0.001, hi=10.0)
    obstacle_min_cluster: int = _param(ObstacleParams.min_cluster_gaussians, "Fewest moving Gaussians of an "
                                       "obstacle (smaller clusters are noise).", lo=1, hi=1_000_000)
    obstacle_min_cluster_depth: float = _param(ObstacleParams.min_cluster_depth, "... up to this depth (m); beyond "
                                               "it the fewest falls as 1/depth^2 (a far object covers fewer "
                                               "pixels), but only full-sized clusters start a track.",
                                               lo=0.001, hi=1000.0)
    obstacle_min_width: float = _param(ObstacleParams.min_width, "Narrowest obstacle across the view (m); "
                                       "narrower clusters are slivers along depth edges.", lo=0.0, hi=100.0)
    obstacle_max_size: float = _param(ObstacleParams.max_size, "Largest obstacle extent (m); larger clusters are "
                                      "structure whose flow is wrong.", lo=0.001, hi=1000.0)
    obstacle_max_range: float = _param(ObstacleParams.max_range, "Gaussians farther than this (optical z, m) are "
                                       "ignored by the obstacle detection.", lo=0.001, hi=1000.0)
    obstacle_confirm_hits: int = _param(ObstacleParams.confirm_hits, "Detections before a track is reported.",
                                        lo=1, hi=1000)
    obstacle_max_misses: int = _param(ObstacleParams.max_misses, "A track is dropped when more frames than this "
                                      "pass without a detection.", lo=0, hi=1000)
    obstacle_gate: float = _param(ObstacleParams.gate, "Largest distance (m) between a track's prediction and a "
                                  "detection it may take.", lo=0.001, hi=100.0)
    obstacle_min_travel: float = _param(ObstacleParams.min_travel, "A track is confirmed once its centre moved "
                                        "this far (m) over its last detections.", lo=0.0, hi=100.0)
    obstacle_min_agreement: float = _param(ObstacleParams.min_agreement, "A track is confirmed only when that "
                                           "travel points within this cosine of its mean measured velocity (-1: "
                                           "any direction).", lo=-1.0, hi=1.0)
    obstacle_min_speed: float = _param(ObstacleParams.min_speed, "Confirmed tracks slower than this (m/s) are not "
                                       "reported.", lo=0.0, hi=100.0)
    obstacle_depth_image_only: bool = _param(ObstacleParams.depth_image_only, "Detect obstacles only on frames "
                                             "whose depth came from a depth image: on depth from the camera's own "
                                             "motion (RGB only, or RGB + odometry) they were nearly all false "
                                             "(docs/EVALUATION.md); those frames still feed the local map.")
    map_voxel: float = _param(MapParams.voxel, "Local map resolution: one Gaussian per occupied voxel (m).",
                              lo=0.001, hi=10.0)
    map_budget: int = _param(MapParams.budget, "Most Gaussians in the local map; over it, the farthest from the "
                             "camera are dropped (72 bytes each: 60 of table, 12 of index; plus padding on a GPU).",
                             lo=1, hi=100_000_000)
    map_max_range: float = _param(MapParams.max_range, "Gaussians deeper than this (m) are not added to the map.",
                                  lo=0.001, hi=1000.0)
    map_period: float = _param(MapParams.snapshot_period_s, "Seconds (of frame stamps) between local map "
                               "publications; the map is published only when it changed.", lo=0.0, hi=3600.0)
    map_frame: str = _param("", "Frame id of the map with odometry: its coordinates are the odometry's, so this "
                            "must name the odometry's frame (it only labels the map; another name is warned about "
                            "once); empty: the odometry's header.frame_id.")
    keyframe_frame: str = _param("", "Frame id of the map without odometry: the camera optical frame of the "
                                 "stream's first frame (key frame), which changes whenever the stream restarts (a "
                                 "gap, a new image size); empty: `<frame_id>_keyframe` (the frame_id parameter, else "
                                 "the input image's header.frame_id).")
    marker_lifetime: float = _param(2.0, "Lifetime of the obstacle markers in RViz (s): every frame's markers replace "
                                    "the last (DELETEALL first), so this only clears them once the node stops; "
                                    "shorter than the frame period, they blink.", lo=0.0, hi=3600.0, dynamic=True)

    def validate(self) -> "NodeParams":
        """Check every field against its constraint; raise ``ParamError`` listing all problems."""
        errors = []
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value not in meta["choices"]:
                errors.append(f"{f.name}={value!r} is not one of {', '.join(meta['choices'])}")
            if meta["range"]:
                lo, hi = meta["range"]
                for v in value if isinstance(value, list) else [value]:
                    if not (math.isfinite(v) and lo <= v <= hi):
                        errors.append(f"{f.name}={value!r} is outside [{lo}, {hi}]")
                        break
        if self.max_gap_s > 0 and 0 < self.max_rate < MIN_GAPS_PER_FRAME / self.max_gap_s:
            errors.append(f"max_rate={self.max_rate!r} spaces frames by up to max_gap_s={self.max_gap_s!r} s: frames "
                          f"would start new streams (max_gap_s at least {MIN_GAPS_PER_FRAME / self.max_rate:g} s; it "
                          "changes while the node is unconfigured)")
        if len(self.camera_mount) != 6:
            errors.append(f"camera_mount must be [x, y, z, roll, pitch, yaw], got {self.camera_mount!r}")
        if not 1 <= len(self.render_times) <= MAX_VIEWS:
            errors.append(f"render_times must name 1 to {MAX_VIEWS} times, got {len(self.render_times)}")
        if len(set(self.render_times)) != len(self.render_times):
            errors.append(f"render_times={self.render_times!r} names a time twice")
        if (self.input_width == 0) != (self.input_height == 0):
            errors.append("input_width and input_height must both be 0 (native) or both be set")
        if self.model not in CONFIGS:
            errors.append(f"model={self.model!r} is not a model configuration ({', '.join(sorted(CONFIGS))})")
        if not (self.device in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            errors.append(f"device={self.device!r} is not cpu, cuda or cuda:N")
        if (self.bf16 or self.compile) and self.backend != "torch":
            errors.append("bf16 and compile apply to the torch backend only")
        if self.bf16 and not self.device.startswith("cuda"):
            errors.append("bf16 needs a CUDA device")
        if not errors:
            try:
                self.perception_params()
            except ValueError as err:
                errors.append(str(err))
        if errors:
            raise ParamError("invalid nut_ros parameters: " + "; ".join(errors))
        return self

    def perception_params(self) -> tuple[ObstacleParams, MapParams]:
        """The perception stage's settings (``ValueError`` naming the field when the core refuses a value)."""
        return (ObstacleParams(moving_speed=self.obstacle_moving_speed,
                               moving_speed_per_m=self.obstacle_moving_speed_per_m,
                               flow_error_ratio=self.obstacle_flow_error_ratio,
                               learned_flow_error_ratio=self.obstacle_learned_flow_error_ratio,
                               flow_error_knee_px=self.obstacle_flow_error_knee_px,
                               flow_error_growth=self.obstacle_flow_error_growth,
                               flow_error_max_factor=self.obstacle_flow_error_max_factor,
                               floor_interval_s=self.obstacle_floor_interval_s,
                               depth_tolerance=self.obstacle_depth_tolerance,
                               depth_margin_px=self.obstacle_depth_margin_px, voxel=self.obstacle_voxel,
                               min_cluster_gaussians=self.obstacle_min_cluster,
                               min_cluster_depth=self.obstacle_min_cluster_depth, min_width=self.obstacle_min_width,
                               max_size=self.obstacle_max_size, max_range=self.obstacle_max_range,
                               confirm_hits=self.obstacle_confirm_hits, max_misses=self.obstacle_max_misses,
                               gate=self.obstacle_gate, min_travel=self.obstacle_min_travel,
                               min_agreement=self.obstacle_min_agreement, min_speed=self.obstacle_min_speed,
                               depth_image_only=self.obstacle_depth_image_only),
                MapParams(voxel=self.map_voxel, budget=self.map_budget, max_range=self.map_max_range,
                          snapshot_period_s=self.map_period))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NodeParams":
        """Build from a plain mapping (e.g. the node's section of a params file); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ParamError(f"unknown nut_ros parameters: {', '.join(unknown)}")
        typed = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                typed[f.name] = coerce_value(f.name, values[f.name], _default(f))
        return cls(**typed).validate()


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def coerce_value(name: str, value, default):
    """Enforce the declared type the way ROS does (ints are accepted for floats, nothing else is converted)."""
    kind = type(default)
    if isinstance(value, array.array):  # rclpy gives array parameters set at run time as array.array
        value = value.tolist()
    if kind is list:
        if value is None:  # (an empty list in a params file: ROS gives it no type, so it arrives unset)
            raise ParamError(f"{name} must be a list of numbers, got none: ROS parameters cannot hold an empty list, "
                             f"give at least one number (default {default})")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         for v in value):
            raise ParamError(f"{name} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ParamError(f"{name} must be of type {kind.__name__}, got {value!r}")
    return value


def catalogue() -> dict[str, Any]:
    """Parameter name -> default value, in declaration order."""
    return {f.name: _default(f) for f in dataclasses.fields(NodeParams)}


def declare_and_read(node) -> NodeParams:
    """Declare every parameter on ``node`` with a descriptor (ranges, read-only) and return the validated values."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values = {}
    for f in dataclasses.fields(NodeParams):
        meta, default = f.metadata, _default(f)
        text = meta["description"] + ("" if meta["dynamic"] else " Changes only while unconfigured.")
        descriptor = ParameterDescriptor(description=text, dynamic_typing=isinstance(default, (float, list)))
        if meta["choices"]:
            descriptor.additional_constraints = "one of: " + ", ".join(meta["choices"])
        if meta["range"]:
            lo, hi = meta["range"]
            if isinstance(default, list):
                descriptor.additional_constraints = f"each in [{lo}, {hi}]"
            elif isinstance(default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                                      step=0.0)]
        values[f.name] = node.declare_parameter(f.name, default, descriptor).value
    return NodeParams.from_dict(values)


def load_params_file(path: str | Path, node_name: str = "nut_ros",
                     warn: Callable[[str], None] | None = None) -> NodeParams:
    """Read a ROS params file as the node ``/<node_name>`` (root namespace, as the tools run it) reads it, into
    validated ``NodeParams``.

    A section applies when its fully qualified key matches the node's whole name as rcl matches it: ``/**`` stands
    for any namespaces (none too), ``/*`` for one name, a key without a leading ``/`` is taken from the root, and
    namespace keys holding node keys are joined with ``/``. So ``/**``, ``/*``, ``nut_ros``, ``/nut_ros`` and
    ``/**/nut_ros`` apply, ``/robot/nut_ros`` does not. Matching sections apply in file order (a later one
    overrides). Nested parameter names are joined with ``.``. Sections that do not apply and unknown parameter names
    are left out with a warning (``warn``, default: printed on stderr), as the node warns of unknown names.
    ``ParamError`` naming the file when it is not YAML or not a params file (node names, optionally under
    namespaces, mapping to ``ros__parameters``)."""
    import yaml

    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ParamError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ParamError(f"{path} is not a ROS params file (a mapping of node names to ros__parameters)")
    values: dict[str, Any] = {}
    node = "/" + node_name.strip("/")
    for name, section in _sections(path, doc):
        if _applies(name, node):
            values.update(_flatten(section))
        else:
            warn(f"{path}: section {name} does not apply to the node {node}: ignored")
    names = {f.name for f in dataclasses.fields(NodeParams)}
    unknown = sorted(set(values) - names)
    if unknown:
        warn(f"{path}: unknown parameters ignored: {', '.join(unknown)}")
    return NodeParams.from_dict({k: v for k, v in values.items() if k in names})


def _applies(key: str, node: str) -> bool:
    """Whether the params-file section ``key`` (fully qualified) names the node ``node`` (rcl's rule: ``/**`` any
    namespaces, ``/*`` one name, the whole name matched)."""
    pattern = re.escape(key).replace(r"/\*\*", r"(/\w+)*").replace(r"/\*", r"(/\w+)")
    return re.fullmatch(pattern, node) is not None


def _sections(path: str | Path, doc: dict, namespace: str = "") -> Iterator[tuple[str, dict]]:
    """``(fully qualified node key, ros__parameters)`` of every node section of a params file's mapping ``doc``
    (keys without ros__parameters are namespaces holding more); ``ParamError`` for anything else."""
    for key, value in doc.items():
        name = f"{namespace}/{str(key).strip('/')}"
        if not isinstance(value, dict):
            raise ParamError(f"{path}: {name} is {value!r}, not a node's section (a mapping with ros__parameters) "
                             "or a namespace of them")
        if "ros__parameters" not in value:
            yield from _sections(path, value, name)
        elif not isinstance(value["ros__parameters"], dict):
            raise ParamError(f"{path}: {name}.ros__parameters must be a mapping of parameter names to values")
        else:
            yield name, value["ros__parameters"]


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """Parameter names and values of a ros__parameters mapping, nested names joined with ``.`` as ROS does."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
