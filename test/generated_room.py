"""A generated static room with known depth for depth-from-motion tests: a textured back wall (4 m), floor (0.8 m
below the camera) and box front (2 m), ray-cast for any camera pose."""
import math

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics

W, H = 320, 240
K = Intrinsics.from_fov(W, H, 60.0)
_TEXTURE = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 255, (512, 512)).astype(np.float32), (0, 0), 1.5)


def rotation(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def pose(x: float = 0.0, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """T_world<-camera (optical axes, world = the first camera's frame)."""
    T = np.eye(4)
    T[:3, :3] = rotation("y", yaw_deg) @ rotation("x", pitch_deg)
    T[0, 3] = x
    return T


def render(T: np.ndarray, box_drop: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8, true depth (metres along the optical axis) and the box's mask of the room seen from ``T``; the box
    (texture and all) moved down by ``box_drop`` metres (a moving object)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1) @ T[:3, :3].T
    o = T[:3, 3]
    best = np.full((H, W), np.inf)
    tex_u, tex_v = np.zeros((H, W)), np.zeros((H, W))
    # (normal axis, plane value, texture axes, extent test, texture drop): back wall z = 4, floor y = 0.8,
    # box front z = 2
    ids = np.full((H, W), -1)
    planes = ((2, 4.0, (0, 1), None, 0.0), (1, 0.8, (0, 2), None, 0.0),
              (2, 2.0, (0, 1), lambda p: (np.abs(p[..., 0] - 0.2) < 0.45) & (np.abs(p[..., 1] - 0.1 - box_drop) < 0.5),
               box_drop))
    for k, (axis, value, (a, b), inside, drop) in enumerate(planes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - o[axis]) / rays[..., axis]
        p = o + t[..., None] * rays
        ok = (t > 0) & (t < best) & (inside(p) if inside else True)
        best, ids = np.where(ok, t, best), np.where(ok, k, ids)
        tex_u, tex_v = np.where(ok, p[..., a] * 90 + 256, tex_u), np.where(ok, (p[..., b] - drop) * 90 + 256, tex_v)
    grey = cv2.remap(_TEXTURE, tex_u.astype(np.float32), tex_v.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_WRAP)
    depth = best * (rays @ T[:3, 2])  # ray length per unit z of the camera -> z
    rgb = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1)
    return rgb, depth.astype(np.float32), ids == 2
