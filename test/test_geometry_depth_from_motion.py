"""Depth from the camera's own motion on a generated static scene with known depth and poses: a textured room
(back wall, floor, a box) ray-cast for a moving, a static and a turning camera."""
import math

import cv2
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.densify import push_pull
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig
from nut_ros.geometry.two_view import RelativePose, camera_matrix, triangulate_matches
from nut_ros.pipeline.metrics import depth_errors

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


def render(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 and true depth (metres along the optical axis) of the room seen from ``T``."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1) @ T[:3, :3].T
    o = T[:3, 3]
    best = np.full((H, W), np.inf)
    tex_u, tex_v = np.zeros((H, W)), np.zeros((H, W))
    # (normal axis, plane value, texture axes, extent test): back wall z = 4, floor y = 0.8, box front z = 2
    planes = ((2, 4.0, (0, 1), None), (1, 0.8, (0, 2), None),
              (2, 2.0, (0, 1), lambda p: (np.abs(p[..., 0] - 0.2) < 0.45) & (np.abs(p[..., 1] - 0.1) < 0.5)))
    for axis, value, (a, b), inside in planes:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - o[axis]) / rays[..., axis]
        p = o + t[..., None] * rays
        ok = (t > 0) & (t < best) & (inside(p) if inside else True)
        best = np.where(ok, t, best)
        tex_u, tex_v = np.where(ok, p[..., a] * 90 + 256, tex_u), np.where(ok, p[..., b] * 90 + 256, tex_v)
    grey = cv2.remap(_TEXTURE, tex_u.astype(np.float32), tex_v.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_WRAP)
    depth = best * (rays @ T[:3, 2])  # ray length per unit z of the camera -> z
    rgb = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1)
    return rgb, depth.astype(np.float32)


def run(poses, with_poses: bool):
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    out = None
    for i, T in enumerate(poses):
        rgb, depth = render(T)
        out = dfm.estimate(rgb, i * 100_000_000, K, T if with_poses else None)
    return out, depth, dfm


SIDEWAYS = [pose(x=0.04 * i, yaw_deg=0.4 * i) for i in range(4)]  # 4 cm and 0.4° per frame


def test_odometry_gives_metric_depth():
    out, depth, _ = run(SIDEWAYS, with_poses=True)
    assert out is not None and out.metric and out.coverage > 0.3
    sparse = depth_errors(1 / out.inv_depth, depth)  # no alignment: the odometry gives the scale
    dense = depth_errors(1 / out.dense, depth)
    assert sparse["abs_rel"] < 0.03 and sparse["delta1"] > 0.97, sparse
    assert dense["abs_rel"] < 0.06 and dense["delta1"] > 0.93, dense


def test_motion_alone_gives_relative_depth():
    out, depth, _ = run(SIDEWAYS, with_poses=False)
    assert out is not None and not out.metric and out.coverage > 0.3
    assert depth_errors(1 / out.inv_depth, depth, align_median=True)["abs_rel"] < 0.04
    assert depth_errors(1 / out.dense, depth, align_median=True)["abs_rel"] < 0.08


@pytest.mark.parametrize("with_poses", [True, False])
@pytest.mark.parametrize("poses, reason", [([pose()] * 4, "static"),
                                           ([pose(yaw_deg=1.5 * i, pitch_deg=0.5 * i) for i in range(4)], None)])
def test_no_depth_without_translation(poses, reason, with_poses):
    out, _, dfm = run(poses, with_poses)
    assert out is None
    assert dfm.last_reason in ((reason,) if reason else ("rotation", "short_parallax", "pose_failed"))


def test_first_frame_and_size_change_have_no_reference():
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    rgb, _ = render(pose())
    assert dfm.estimate(rgb, 0, K) is None and dfm.last_reason == "no_reference"
    small = cv2.resize(rgb, (W // 2, H // 2))
    assert dfm.estimate(small, 1, K.scaled(W // 2, H // 2)) is None and dfm.last_reason == "no_reference"


def test_triangulation_is_exact_for_exact_matches():
    Kc = camera_matrix(K)
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), rng.uniform(1, 6, 50)], -1)
    R = rotation("y", 3.0) @ rotation("x", -2.0)
    t = np.array([0.1, -0.02, 0.05])
    ref = pts @ R.T + t
    x_cur = (pts / pts[:, 2:]) @ Kc.T
    x_ref = (ref / ref[:, 2:]) @ Kc.T
    tri = triangulate_matches(x_cur[None, :, :2], x_ref[None, :, :2], RelativePose(R, t, True), Kc)
    np.testing.assert_allclose(tri.inv_depth[0], 1 / pts[:, 2], rtol=1e-4)
    assert tri.epipolar_px.max() < 1e-3 and (tri.px_per_rho > 0).all()


def test_push_pull_fills_holes_between_known_values():
    values = np.tile(np.linspace(1, 2, 64, dtype=np.float32), (32, 1))
    weights = np.zeros_like(values)
    weights[:, ::9] = 1  # columns 0, 9, ..., 63: every hole lies between known values
    filled = push_pull(np.where(weights > 0, values, 0), weights)
    assert np.abs(filled - values).max() < 0.1 and np.allclose(filled[weights > 0], values[weights > 0], atol=0.03)
