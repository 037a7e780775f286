"""Synthetic pipeline results for the perception tests: a static room of Gaussians seen by a moving camera, plus
moving blobs, with velocities exactly as the pipeline reports them (apparent, per second, optical frame) plus
noise. Cheap: no model runs."""
from __future__ import annotations

import math

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.perception.ego_motion import field_from_poses
from nut_ros.pipeline.types import GaussianCloud, StepResult

K = Intrinsics.from_fov(256, 144, 70.0)
DT = 1 / 15


def yaw_pose(yaw: float, position) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    pose[:3, 3] = position
    return pose


def room_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """World points on a floor (y = 1), a back wall (z = 7) and side walls (x = ±3)."""
    face = rng.integers(0, 4, n)
    p = np.column_stack([rng.uniform(-3, 3, n), rng.uniform(-1.5, 1, n), rng.uniform(0.5, 7, n)])
    p[face == 0, 1] = 1.0
    p[face == 1, 2] = 7.0
    p[face == 2, 0] = -3.0
    p[face == 3, 0] = 3.0
    return p


def blob(rng: np.random.Generator, center, n: int, radius: float = 0.25) -> np.ndarray:
    """The front (camera-facing, -z) hemisphere of a sphere: a camera's Gaussians cover what it sees."""
    d = rng.normal(size=(n, 3))
    d[:, 2] = -np.abs(d[:, 2])
    return np.asarray(center) + radius * d / np.linalg.norm(d, axis=1, keepdims=True)


def step(world_points: np.ndarray, world_velocities: np.ndarray, prev_pose, pose, stamp_ns: int, rng,
         noise: float = 0.03, paired: bool = True, metric: bool = True, frame_id: str = "cam",
         dt: float = DT) -> StepResult:
    """The result a perfect pipeline would give (plus velocity noise) for points seen from ``pose``, ``dt`` after
    ``prev_pose``. ``noise`` is the velocity noise's standard deviation at :data:`DT`: a pipeline's error is one of
    the pair's displacement, so over a shorter interval the same error is a larger one in speed."""
    rot, trans = pose[:3, :3], pose[:3, 3]
    cam = (world_points - trans) @ rot
    visible = (cam[:, 2] > 0.3) & (np.abs(K.fx * cam[:, 0] / np.maximum(cam[:, 2], 1e-6)) < K.width / 2)
    cam = cam[visible]
    vel = np.zeros_like(cam)
    if paired:
        # as a pipeline measures it: the difference of a point's coordinates in the two cameras over dt, i.e. the
        # static field plus the point's own displacement in the previous camera's axes
        vel = field_from_poses(prev_pose, pose, dt)(cam) + world_velocities[visible] @ prev_pose[:3, :3]
        vel += rng.normal(0, noise * DT / dt, vel.shape)
    n = cam.shape[0]
    cloud = GaussianCloud(cam.astype(np.float32), np.full((n, 3), 0.01, np.float32),
                          np.tile(np.float32([1, 0, 0, 0]), (n, 1)), np.ones(n, np.float32),
                          np.full((n, 3), 0.5, np.float32), vel.astype(np.float32), metric=metric)
    return StepResult(stamp_ns, frame_id, metric, "topic" if metric else "none", [], cloud, K, paired=paired,
                      pair_interval_s=dt if paired else None)


def scene_stream(frames: int, movers=((-1.0, 0.5, 3.0, 0.8, 0.0, 0.0),), camera_speed=0.4, yaw_rate=0.2, seed=0,
                 n_room: int = 6000, n_blob: int = 300, noise: float = 0.03, dt: float = DT):
    """Yields ``(result, pose, truths)``, a frame every ``dt`` seconds; ``movers`` rows are (x, y, z, vx, vy, vz) in
    the world frame at t = 0."""
    rng = np.random.default_rng(seed)
    room = room_points(rng, n_room)
    offsets = [blob(rng, (0, 0, 0), n_blob) for _ in movers]
    prev = yaw_pose(0, (0, 0, 0))
    for j in range(frames):
        t = j * dt
        pose = yaw_pose(yaw_rate * math.sin(t), (camera_speed * math.sin(0.5 * t), 0, 0))
        truths = [(np.array(m[:3]) + np.array(m[3:]) * t, np.array(m[3:])) for m in movers]
        pts = np.concatenate([room] + [c + o for (c, _), o in zip(truths, offsets)])
        vel = np.concatenate([np.zeros_like(room)] + [np.tile(v, (n_blob, 1)) for _, v in truths])
        yield step(pts, vel, prev, pose, round(t * 1e9), rng, noise, paired=j > 0, dt=dt), pose, truths
        prev = pose
