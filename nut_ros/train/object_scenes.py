"""Generated rooms with exactly known moving objects, for evaluating and tuning obstacle tracking and mapping.

A scene is a textured room (floor, ceiling, walls) with a few static boxes and a few moving boxes and spheres,
seen by a moving pinhole camera. Every pixel is ray-cast analytically against every surface (planes, axis-aligned
boxes, spheres) and z-buffered, so depth, per-pixel object ids, object positions, velocities and sizes are exact.
Textures are solid (3-D) sums of sinusoids in each surface's own frame, so a moving object carries its texture and
optical flow sees it move.

Frames: the world frame is the optical frame of the camera at frame 0 (x right, y down, z forward, metres), so a
tracker that anchors its map in the first camera frame reports in the same frame as the ground truth. Objects move
at constant velocity and bounce off the room's walls (the velocity of a frame is the one after any bounce).
Scenes are deterministic in their seed; by convention seeds below :data:`VALIDATION_SEED0` are for tuning
(training) and seeds from it on for evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nut_ros.core.geometry import Intrinsics

VALIDATION_SEED0 = 10_000  # seeds >= this are the validation set; tune thresholds only on seeds below
N_WAVES = 12  # sinusoids of a solid texture
BACKGROUND_ID = -1  # object id of room pixels


@dataclass(frozen=True)
class ObjectSceneConfig:
    """Distribution of the generated scenes (metres, seconds)."""

    height: int = 180
    width: int = 320
    frames: int = 40
    fps: float = 15.0
    hfov_deg: float = 70.0
    room_half_width: float = 3.0  # walls at x = ±this
    room_depth: float = 8.0  # back wall at z = this
    floor: float = 1.0  # floor at y = +this (below the camera), ceiling at y = -(this + 1)
    moving: tuple[int, int] = (1, 3)  # number of moving objects, inclusive range
    static: tuple[int, int] = (1, 3)  # number of static boxes
    speed: tuple[float, float] = (0.4, 1.5)  # m/s of a moving object
    size: tuple[float, float] = (0.35, 0.8)  # box edge / sphere diameter
    camera_speed: float = 0.5  # largest camera translation speed, m/s
    camera_yaw_rate: float = 0.35  # largest camera yaw rate, rad/s
    static_camera_prob: float = 0.2
    noise_std: float = 2.0  # RGB sensor noise, grey levels


@dataclass
class SceneObject:
    """One object: ``kind`` "box" (axis-aligned, ``size`` = full extents) or "sphere" (``size`` = diameter x3)."""

    oid: int
    kind: str
    center: np.ndarray  # [3] world position at frame 0
    velocity: np.ndarray  # [3] world velocity, m/s (zeros for a static object)
    size: np.ndarray  # [3] full extents
    texture: np.ndarray  # [N_WAVES, 7] wave vector (3), phase (3 channels), amplitude
    colour: np.ndarray  # [3] base colour in [0, 1]

    @property
    def moving(self) -> bool:
        return bool(np.any(self.velocity != 0))


@dataclass
class ObjectTruth:
    """Ground truth of one object in one frame (world frame)."""

    oid: int
    center: np.ndarray
    velocity: np.ndarray
    size: np.ndarray
    moving: bool
    visible_px: int  # pixels where the object is the nearest surface


@dataclass
class ObjectFrame:
    """One rendered frame with its ground truth."""

    index: int
    stamp_ns: int
    rgb: np.ndarray  # [H, W, 3] uint8
    depth_m: np.ndarray  # [H, W] float32 camera z
    ids: np.ndarray  # [H, W] int16 object id per pixel (BACKGROUND_ID for the room)
    camera_pose: np.ndarray  # [4, 4] float64 T_world<-camera_optical
    intrinsics: Intrinsics
    objects: list[ObjectTruth] = field(default_factory=list)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Random solid texture: wave vectors of 2-40 rad/m in random directions, per-channel phases, amplitudes."""
    direction = rng.normal(size=(N_WAVES, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = direction * np.exp(rng.uniform(math.log(2.0), math.log(40.0), (N_WAVES, 1)))
    return np.concatenate([k, rng.uniform(0, 2 * math.pi, (N_WAVES, 3)), rng.uniform(0.3, 1.0, (N_WAVES, 1))], 1)


def _shade(local: np.ndarray, texture: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Colour ``[M, 3]`` in [0, 1] of surface points ``local [M, 3]`` (in the surface's own frame)."""
    phase = local @ texture[:, :3].T  # [M, N_WAVES]
    amp = texture[:, 6] / texture[:, 6].sum()
    waves = np.stack([np.sin(phase + texture[:, 3 + c]) @ amp for c in range(3)], 1)  # in [-1, 1]
    return np.clip(colour * (0.7 + 0.6 * waves), 0.0, 1.0)


def _yaw(angle: float) -> np.ndarray:
    """Rotation about the optical y axis (down): positive yaw turns the camera to its right."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class ObjectSceneGenerator:
    """Samples a scene from a seed and renders its frames on the CPU (numpy)."""

    def __init__(self, config: ObjectSceneConfig = ObjectSceneConfig()):
        self.cfg = config
        self.intrinsics = Intrinsics.from_fov(config.width, config.height, config.hfov_deg)

    def scene(self, seed: int, moving: bool = True, camera_motion: bool | None = None) -> list[ObjectFrame]:
        """All frames of the scene of ``seed``; ``moving=False`` keeps every object still (a static scene);
        ``camera_motion`` forces the camera to move (True) or stand (False) instead of sampling it."""
        cfg, rng = self.cfg, np.random.default_rng(seed)
        objects = self._sample_objects(rng, moving)
        cam_still = rng.uniform() < cfg.static_camera_prob if camera_motion is None else not camera_motion
        cam_vel = np.zeros(3) if cam_still else rng.uniform([-1, -0.2, -0.3], [1, 0.2, 1]) * cfg.camera_speed
        # the camera pans to and fro (yaw_rate · period / 2π at most) while it translates
        yaw_rate = 0.0 if cam_still else rng.uniform(0.5, 1) * cfg.camera_yaw_rate
        period, phase = rng.uniform(2.0, 4.0), rng.uniform(0, 2 * math.pi)
        walls = [self._wall(rng) for _ in range(6)]
        frames = []
        for j in range(cfg.frames):
            t = j / cfg.fps
            pose = np.eye(4)
            pose[:3, :3] = _yaw(yaw_rate * period / (2 * math.pi) * (math.sin(2 * math.pi * t / period + phase)
                                                                     - math.sin(phase)))
            pose[:3, 3] = cam_vel * t
            frames.append(self._render(j, t, pose, objects, walls, rng))
        return frames

    # -- sampling ------------------------------------------------------------------------------------------------
    def _wall(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _texture(rng) * np.r_[[0.5] * 3, [1.0] * 4], rng.uniform(0.25, 0.85, 3)

    def _sample_objects(self, rng: np.random.Generator, moving: bool) -> list[SceneObject]:
        cfg = self.cfg
        n_moving = int(rng.integers(cfg.moving[0], cfg.moving[1] + 1)) if moving else 0
        n_static = int(rng.integers(cfg.static[0], cfg.static[1] + 1))
        out = []
        for oid in range(n_moving + n_static):
            kind = "sphere" if oid < n_moving and rng.uniform() < 0.4 else "box"
            size = np.full(3, rng.uniform(*cfg.size)) if kind == "sphere" else rng.uniform(*cfg.size, 3)
            for _ in range(20):  # inside the first view, apart from the objects placed so far
                depth = rng.uniform(1.8, 5.5)
                center = np.array([rng.uniform(-0.6, 0.6) * depth * math.tan(math.radians(cfg.hfov_deg) / 2), 0.0,
                                   depth])
                if all(np.linalg.norm((center - o.center)[[0, 2]]) > (size.max() + o.size.max()) / 2 + 0.1
                       for o in out):
                    break
            center[1] = cfg.floor - size[1] / 2 - (rng.uniform(0, 0.6) if kind == "sphere" else 0.0)
            velocity = np.zeros(3)
            if oid < n_moving:
                heading = rng.uniform(-math.pi, math.pi)
                velocity = rng.uniform(*cfg.speed) * np.array([math.cos(heading), 0.0, math.sin(heading)])
            out.append(SceneObject(oid, kind, center, velocity, size, _texture(rng), rng.uniform(0.2, 1.0, 3)))
        return out

    def _object_state(self, obj: SceneObject, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Centre and velocity at time ``t``: constant velocity, reflected between the room's bounds."""
        lo = np.array([-self.cfg.room_half_width, -10.0, 0.8]) + obj.size / 2
        hi = np.array([self.cfg.room_half_width, 10.0, self.cfg.room_depth - 0.2]) - obj.size / 2
        span = hi - lo
        raw = obj.center + obj.velocity * t - lo
        phase = np.mod(raw, 2 * span)
        folded = np.where(phase <= span, phase, 2 * span - phase)
        sign = np.where(phase <= span, 1.0, -1.0)
        return lo + folded, obj.velocity * sign

    # -- rendering -----------------------------------------------------------------------------------------------
    def _render(self, index: int, t: float, pose: np.ndarray, objects: list[SceneObject],
                walls: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> ObjectFrame:
        cfg, k = self.cfg, self.intrinsics
        v, u = np.mgrid[0:cfg.height, 0:cfg.width].astype(np.float64)
        dirs_cam = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1).reshape(-1, 3)
        rot, origin = pose[:3, :3], pose[:3, 3]
        dirs = dirs_cam @ rot.T  # world directions whose camera z is 1, so a ray parameter is the camera depth
        best = np.full(dirs.shape[0], np.inf)
        hit_id = np.full(dirs.shape[0], BACKGROUND_ID - 1, np.int16)  # walls: -2 - wall index
        # room: planes x = ±w, y = floor, y = -(floor + 1), z = depth, z = -1 (behind the start)
        planes = [(0, -cfg.room_half_width), (0, cfg.room_half_width), (1, cfg.floor), (1, -(cfg.floor + 1.0)),
                  (2, cfg.room_depth), (2, -1.0)]
        for w, (axis, value) in enumerate(planes):
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (value - origin[axis]) / dirs[:, axis]
            closer = (s > 1e-3) & (s < best)
            best[closer], hit_id[closer] = s[closer], -2 - w
        states = [self._object_state(o, t) for o in objects]
        for obj, (center, _) in zip(objects, states):
            s = _ray_box(origin, dirs, center, obj.size) if obj.kind == "box" else \
                _ray_sphere(origin, dirs, center, obj.size[0] / 2)
            closer = s < best
            best[closer], hit_id[closer] = s[closer], obj.oid
        points = origin + dirs * best[:, None]
        rgb = np.zeros_like(points)
        for w, (texture, colour) in enumerate(walls):
            sel = hit_id == -2 - w
            rgb[sel] = _shade(points[sel], texture, colour)
        truths = []
        for obj, (center, velocity) in zip(objects, states):
            sel = hit_id == obj.oid
            rgb[sel] = _shade(points[sel] - center, obj.texture, obj.colour)
            truths.append(ObjectTruth(obj.oid, center, velocity, obj.size.copy(), obj.moving, int(sel.sum())))
        rgb = rgb * 255 + rng.normal(0, cfg.noise_std, rgb.shape)
        ids = np.where(hit_id >= 0, hit_id, BACKGROUND_ID).astype(np.int16)
        shape = (cfg.height, cfg.width)
        return ObjectFrame(index, round(t * 1e9), np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(*shape, 3),
                           best.astype(np.float32).reshape(shape), ids.reshape(shape), pose, k, truths)


def _ray_box(origin: np.ndarray, dirs: np.ndarray, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit of an axis-aligned box (inf where missed or behind), slab method."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        a = (center - size / 2 - origin) * inv
        b = (center + size / 2 - origin) * inv
    near = np.nanmax(np.minimum(a, b), axis=1)
    far = np.nanmin(np.maximum(a, b), axis=1)
    return np.where((far >= near) & (near > 1e-3), near, np.inf)


def _ray_sphere(origin: np.ndarray, dirs: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Ray parameter of the first hit of a sphere (inf where missed or behind)."""
    oc = origin - center
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = dirs @ oc
    c = oc @ oc - radius * radius
    disc = b * b - a * c
    s = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (s > 1e-3), s, np.inf)
