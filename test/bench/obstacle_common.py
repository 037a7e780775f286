"""Shared by the obstacle benchmarks: generated object scenes through the real pipeline, cached, and ground truth
per Gaussian.

``pipeline_results(seed, ...)`` renders a scene of :mod:`nut_ros.train.object_scenes`, pushes its frames through
:class:`~nut_ros.pipeline.stream.StreamingPipeline` (torch backend, shipped weights, no renders: Gaussians only)
with metric depth (``source="topic"``), RGB only (``"motion"``: depth from motion, relative) or RGB with the
scene's camera poses as odometry (``"odometry"``: depth from motion, metric), and caches the frames' ground truth
and the results' Gaussian clouds under /tmp/nut_ros_obstacle_cache (keyed by model, a hash of its weights, velocity
source, seed and input), so tuning and evaluation can replay them cheaply.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from nut_ros.core.choices import FLOW_PRESETS
from nut_ros.core.motion_prior import choose_flow_preset
from nut_ros.perception.ego_motion import field_from_poses
from nut_ros.pipeline.backends import default_checkpoint, make_backend
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig
from nut_ros.train.object_scenes import BACKGROUND_ID, ObjectSceneConfig, ObjectSceneGenerator

CACHE = Path("/tmp/nut_ros_obstacle_cache")
AMBIGUOUS = -2  # a Gaussian off every true surface (edges, mixed depths)
OBSTACLE_FLOW = choose_flow_preset("auto", obstacles=True)  # the node's flow preset with perception on
SOURCE_TAGS = {"topic": "d", "motion": "rgb", "odometry": "rgbodo"}  # depth input -> its part of a cache file's name


def add_flow_args(ap: argparse.ArgumentParser) -> None:
    """``--flow-preset`` and ``--flow-check``: the classical flow of the motion prior (default: the node's with
    perception on)."""
    ap.add_argument("--flow-preset", default=OBSTACLE_FLOW, choices=FLOW_PRESETS, help="PipelineConfig.flow_preset")
    ap.add_argument("--flow-check", action=argparse.BooleanOptionalAction, default=PipelineConfig.flow_check,
                    help="PipelineConfig.flow_check")


class SceneRunner:
    """One pipeline (model on a device) reused for many scenes."""

    def __init__(self, model: str = "tiny", device: str = "cpu", cache: Path = CACHE,
                 config: ObjectSceneConfig = ObjectSceneConfig(), motion_prior: str = "auto",
                 flow_preset: str = OBSTACLE_FLOW, flow_check: bool = PipelineConfig.flow_check):
        self.model, self.device, self.cache, self.motion_prior = model, device, Path(cache), motion_prior
        self.flow_preset, self.flow_check = flow_preset, flow_check
        self.gen = ObjectSceneGenerator(config)
        self._pipe = None
        self._memo: dict[str, list] = {}  # scenes already loaded in this process
        self.weights = hashlib.sha256(default_checkpoint(model).read_bytes()).hexdigest()[:8]

    def pipe(self) -> StreamingPipeline:
        if self._pipe is None:
            self._pipe = StreamingPipeline(make_backend("torch", self.model, device=self.device),
                                           PipelineConfig(render_times=(), motion_prior=self.motion_prior,
                                                          flow_preset=self.flow_preset, flow_check=self.flow_check))
        return self._pipe

    def results(self, seed: int, source: str = "topic", moving: bool = True, camera_motion: bool | None = None):
        """``[(frame without images, StepResult)]`` of one scene (cached on disk); ``source``: the depth input
        (``topic``, ``motion`` or ``odometry``, see the module docstring)."""
        pipe = self.pipe()
        velocity = f"{pipe.motion_prior}-{pipe.flow_settings}".replace(" ", "").replace(",", "-")
        tag = (f"{self.model}-{self.weights}_{velocity}_{seed}_{SOURCE_TAGS[source]}_{int(moving)}_"
               f"{camera_motion}.pkl")
        path = self.cache / tag
        if tag in self._memo:
            return self._memo[tag]
        if path.is_file():  # the tag names the velocity source (results cached before StepResult.motion_prior)
            cached = pickle.loads(path.read_bytes())
            self._memo[tag] = [(f, replace(r, motion_prior=pipe.motion_prior)) for f, r in cached]
            return self._memo[tag]
        frames = self.gen.scene(seed, moving=moving, camera_motion=camera_motion)
        pipe.reset()
        out = []
        for f in frames:
            res = pipe.push(Frame(f.rgb, f.stamp_ns, depth_m=f.depth_m if source == "topic" else None,
                                  intrinsics=f.intrinsics, camera_pose=f.camera_pose if source == "odometry" else None))
            if res is not None:
                out.append((replace(f, rgb=None), replace(res, views=[])))
        self.cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
        return out


def gaussian_truth(frame, prev_frame, positions: np.ndarray, dt: float):
    """Per Gaussian (current camera frame): object id (``BACKGROUND_ID``, an object id, or ``AMBIGUOUS`` when off
    the true surface by more than 5 % of depth or outside the image) and the true velocity over the ground in
    camera axes (zero for the room); plus the true static field of the camera's motion."""
    k = frame.intrinsics
    z = positions[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(k.fx * positions[:, 0] / z + k.cx)
        v = np.rint(k.fy * positions[:, 1] / z + k.cy)
    inside = (z > 0) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
    ui, vi = np.where(inside, u, 0).astype(int), np.where(inside, v, 0).astype(int)
    ids = frame.ids[vi, ui].astype(np.int64)
    on_surface = inside & (np.abs(frame.depth_m[vi, ui] - z) < 0.05 * np.maximum(z, 1e-6))
    ids = np.where(on_surface, ids, AMBIGUOUS)
    rot = frame.camera_pose[:3, :3]
    vel = np.zeros_like(positions)
    for obj in frame.objects:
        vel[ids == obj.oid] = rot.T @ obj.velocity
    return ids, vel, field_from_poses(prev_frame.camera_pose, frame.camera_pose, dt)


def moving_ids(frame) -> set[int]:
    return {o.oid for o in frame.objects if o.moving}


__all__ = ["AMBIGUOUS", "BACKGROUND_ID", "CACHE", "SceneRunner", "gaussian_truth", "moving_ids"]
