"""Depth from the camera's own motion on a generated static scene with known depth and poses: a textured room
(back wall, floor, a box) ray-cast for a moving, a static and a turning camera."""
import cv2
import numpy as np
import pytest
from generated_room import H, K, W, pose, render, rotation

from nut_ros.geometry.densify import push_pull
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig
from nut_ros.geometry.two_view import RelativePose, camera_matrix, triangulate_matches
from nut_ros.pipeline.metrics import depth_errors


def run(poses, with_poses: bool):
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    out = None
    for i, T in enumerate(poses):
        rgb, depth, _ = render(T)
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
    rgb, _, _ = render(pose())
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


def test_stopping_holds_the_last_depth_then_gives_up():
    stop = SIDEWAYS + [SIDEWAYS[-1]] * 4  # frame 4 still has parallax against frame 2, then the window is static
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W, window=2, max_hold=2))
    outs = [dfm.estimate(render(T)[0], i, K, T) for i, T in enumerate(stop)]
    assert [o is not None and o.held_frames for o in outs[-4:]] == [0, 1, 2, False]
    held, moving = outs[-2], outs[-4]
    assert dfm.last_reason == "static"
    np.testing.assert_allclose(held.dense, moving.dense, rtol=0.02)  # the camera stood still: the same depth


def test_a_moving_object_is_masked_not_triangulated():
    """The box drops 3 cm per frame while the camera slides sideways: its matches leave their (horizontal) epipolar
    lines, so it gets (almost) no semi-dense depth, and what little it gets is not the wrong depth that a
    static-scene triangulation of its motion would give."""
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    for i, T in enumerate(SIDEWAYS):
        rgb, depth, box = render(T, box_drop=0.03 * i)
        out = dfm.estimate(rgb, i, K, T)
    static = ~box & (depth < 3.9)  # the floor and the wall's lower part, beside the box
    kept = out.confidence > 0
    assert kept[static].mean() > 0.5 and kept[box].mean() < 0.1, (kept[static].mean(), kept[box].mean())
    static_err = depth_errors(1 / out.inv_depth, depth, valid=static)
    assert static_err["abs_rel"] < 0.05, static_err
