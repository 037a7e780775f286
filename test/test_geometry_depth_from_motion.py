"""Depth from the camera's own motion on a generated static scene with known depth and poses: a textured room
(back wall, floor, a box) ray-cast for a moving, a static and a turning camera; the depth filter's propagation and
fusion on their own."""
import dataclasses
import math

import cv2
import numpy as np
import pytest
from generated_room import H, K, W, pose, render, rotation

from nut_ros.core.rotations import rotation_angle
from nut_ros.geometry.depth_filter import InverseDepthMap, fuse, propagate
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig
from nut_ros.geometry.focal import FocalCalibration, with_focal_scale
from nut_ros.geometry.two_view import RelativePose, camera_matrix, pose_from_odometry, triangulate_matches
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


@pytest.mark.parametrize("poses, applied", [(SIDEWAYS, True),  # rotation's flow 0.8x the parallax (measured)
                                            ([pose(x=0.02 * i, yaw_deg=2.0 * i) for i in range(4)], False)])  # 9.5x
def test_without_odometry_the_plane_prior_needs_a_translation_that_outweighs_the_turn(poses, applied):
    """The dense fill's plane prior (``plane_prior``) applies without odometry only while the rotation's flow is below
    ``plane_max_turn`` times the parallax (where the camera mostly turns, the map's slant is the pose's error)."""
    dense = []
    for prior in (MotionDepthConfig.plane_prior, 0.0):
        dfm = DepthFromMotion(MotionDepthConfig(max_width=W, plane_prior=prior))
        for i, T in enumerate(poses):
            out = dfm.estimate(render(T)[0], i * 100_000_000, K)
        assert out is not None and not out.metric
        dense.append(out.dense)
    assert (np.abs(dense[0] - dense[1]).max() > 1e-3 * dense[1].max()) == applied


@pytest.mark.parametrize("with_poses", [True, False])
@pytest.mark.parametrize("poses, reason", [([pose()] * 4, "static"),
                                           ([pose(yaw_deg=1.5 * i, pitch_deg=0.5 * i) for i in range(4)], "turn")])
def test_no_depth_without_translation(poses, reason, with_poses):
    """A still camera is seen as still; one turning in place gives no depth: with odometry the poses say the baseline
    is zero (no parallax), without it the tracks fit a rotation-only homography."""
    out, _, dfm = run(poses, with_poses)
    assert out is None
    if reason == "turn":
        reason = "short_parallax" if with_poses else "rotation"
    assert dfm.last_reason == reason


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


@pytest.mark.parametrize("with_poses", [True, False])
def test_stopping_holds_the_last_depth_then_gives_up(with_poses):
    stop = SIDEWAYS + [SIDEWAYS[-1]] * 4  # frame 4 still has parallax against frame 2, then the window is static
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W, window=2, max_hold=2))
    outs = [dfm.estimate(render(T)[0], i, K, T if with_poses else None) for i, T in enumerate(stop)]
    assert [o is not None and o.held_frames for o in outs[-4:]] == [0, 1, 2, False]
    held, moving = outs[-2], outs[-4]
    assert dfm.last_reason == "static"
    both = (held.confidence > 0) & (moving.confidence > 0)
    assert both.mean() > 0.5 * (moving.confidence > 0).mean()  # it grows less certain while held, not forgotten
    np.testing.assert_allclose(held.inv_depth[both], moving.inv_depth[both], rtol=0.01)  # it stood still
    np.testing.assert_allclose(held.dense, moving.dense, rtol=0.05)


@pytest.mark.parametrize("frames", [4, 8])
def test_a_moving_object_is_masked_not_triangulated(frames):
    """The box drops 3 cm per frame while the camera slides sideways: its matches leave their (horizontal) epipolar
    lines, so it gets (almost) no semi-dense depth, and what little it gets is not the wrong depth that a
    static-scene triangulation of its motion would give; fused over more frames, the wall it keeps covering does not
    linger where the box now is."""
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    for i in range(frames):
        T = pose(x=0.04 * i, yaw_deg=0.4 * i)
        rgb, depth, box = render(T, box_drop=0.03 * i)
        out = dfm.estimate(rgb, i, K, T)
    static = ~box & (depth < 3.9)  # the floor and the wall's lower part, beside the box
    kept = out.confidence > 0
    assert kept[static].mean() > 0.5 and kept[box].mean() < 0.1, (kept[static].mean(), kept[box].mean())
    static_err = depth_errors(1 / out.inv_depth, depth, valid=static)
    assert static_err["abs_rel"] < 0.05, static_err

SLOW = [pose(x=0.02 * i, yaw_deg=0.2 * i) for i in range(12)]  # 2 cm and 0.2° per frame: one pair sees little


@pytest.mark.parametrize("with_poses", [True, False])
def test_fusion_over_frames_beats_one_pair(with_poses):
    """12 frames fused against one pair (an estimator that saw only the last 3 frames): with the same reference
    choice, the fused map covers more than twice as much, its semi-dense error is below 3/4 and its dense fill's below
    half of the pair's (measured: 0.022 / 0.038-0.047 and 0.03-0.04 / 0.26-0.39)."""
    frames = [render(T) for T in SLOW]
    config = MotionDepthConfig(max_width=W)
    fused = DepthFromMotion(config)
    for i, T in enumerate(SLOW):
        out = fused.estimate(frames[i][0], i, K, T if with_poses else None)
    pair = DepthFromMotion(config)
    for i in range(len(SLOW) - 3, len(SLOW)):
        one = pair.estimate(frames[i][0], i, K, SLOW[i] if with_poses else None)
    depth = frames[-1][1]
    assert out is not None and one is not None and out.held_frames == one.held_frames == 0
    align = {"align_median": not with_poses}
    errors = {name: (depth_errors(1 / o.inv_depth, depth, **align)["abs_rel"],
                     depth_errors(1 / o.dense, depth, **align)["abs_rel"], o.coverage)
              for name, o in (("fused", out), ("pair", one))}
    (sparse, dense, coverage), (sparse1, dense1, coverage1) = errors["fused"], errors["pair"]
    assert coverage > 2 * coverage1 and sparse < 0.75 * sparse1 and dense < 0.5 * dense1, errors
    assert sparse < 0.03 and dense < 0.06, errors
    assert out.fused_count[out.confidence > 0].min() >= 2  # what it outputs was confirmed


@pytest.mark.parametrize("with_poses", [True, False])
def test_the_map_carries_through_a_turn_in_place(with_poses):
    """After moving, the camera turns in place (no parallax, no measurement): the fused map is carried into the
    turned frames (odometry, or PnP against the map) and keeps its accuracy."""
    turn = SIDEWAYS + [pose(x=SIDEWAYS[-1][0, 3], yaw_deg=1.2 + 1.0 * i) for i in range(1, 5)]
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W, window=2))  # the turned frames soon see no translation
    for i, T in enumerate(turn):
        rgb, depth, _ = render(T)
        out = dfm.estimate(rgb, i, K, T if with_poses else None)
    assert out is not None and out.held_frames == 3 and out.coverage > 0.3
    align = {"align_median": not with_poses}
    assert depth_errors(1 / out.inv_depth, depth, **align)["abs_rel"] < 0.04
    assert depth_errors(1 / out.dense, depth, **align)["abs_rel"] < 0.08


def test_reset_forgets_the_map():
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    for i, T in enumerate(SIDEWAYS):
        out = dfm.estimate(render(T)[0], i, K, T)
    assert out is not None
    dfm.reset()
    still = render(SIDEWAYS[-1])[0]
    assert dfm.estimate(still, 10, K, SIDEWAYS[-1]) is None and dfm.last_reason == "no_reference"
    assert dfm.estimate(still, 11, K, SIDEWAYS[-1]) is None and dfm.last_reason == "static"


def test_propagation_is_exact_for_exact_depth():
    before, after = pose(), pose(x=0.1, yaw_deg=2.0)
    depth0, depth1 = render(before)[1], render(after)[1]
    rel = pose_from_odometry(before, after)  # X_after = R X_before + t
    moved = propagate(InverseDepthMap.measured(1 / depth0, 0.01 / depth0), rel.R, rel.t, camera_matrix(K), 0.0)
    known = moved.known
    assert known.mean() > 0.9  # all but what the turn brought into view
    assert np.median(np.abs(moved.rho[known] * depth1[known] - 1)) < 1e-3
    assert np.mean(np.abs(moved.rho[known] * depth1[known] - 1)) < 0.01  # the box's edges: one pixel off at most
    rel_sigma = np.sqrt(moved.var[known]) * depth1[known]
    assert np.median(np.abs(rel_sigma / 0.01 - 1)) < 0.02  # σ_ρ/ρ carried along (it was 0.01 everywhere)


def test_fusion_weights_by_inverse_variance_and_drops_disagreement():
    prior = InverseDepthMap.measured(np.array([[1.0, 1.0, np.nan, 1.0]]), np.array([[0.1, 0.1, 0.1, 0.1]]))
    measured = InverseDepthMap.measured(np.array([[1.1, np.nan, 2.0, 2.0]]), np.array([[0.2, 0.1, 0.1, 0.1]]))
    out = fuse(prior, measured, max_sigmas=3.0, unconfirmed_noise=0.2)
    w0, w1 = 1 / 0.1**2, 1 / 0.2**2
    np.testing.assert_allclose(out.rho[0, :3], [(1.0 * w0 + 1.1 * w1) / (w0 + w1), 1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out.var[0, :3], [1 / (w0 + w1), 0.01 + 0.2**2, 0.01], rtol=1e-6)  # unconfirmed
    assert out.count[0].tolist() == [2, 1, 1, 0] and np.isnan(out.rho[0, 3])  # 1 vs 2 at σ 0.1: 7σ apart


def _pairs_of_a_turning_camera(count: int, seed: int = 2):
    """Exact tracks of random points for ``count`` pairs of a camera that slides 2 cm and turns 1-3° per pair."""
    rng = np.random.default_rng(seed)
    Kc = camera_matrix(K)
    for _ in range(count):
        pts = np.stack([rng.uniform(-2, 2, 200), rng.uniform(-1.5, 1.5, 200), rng.uniform(1.5, 6, 200)], -1)
        R = rotation("y", rng.uniform(-3, 3)) @ rotation("x", rng.uniform(-3, 3))
        if np.degrees(rotation_angle(R)) < 1:
            R = rotation("y", 2.0) @ R
        t = rng.normal(size=3) * 0.02
        ref = pts @ R.T + t
        yield (pts / pts[:, 2:]) @ Kc.T, (ref / ref[:, 2:]) @ Kc.T, RelativePose(R, t, True)


@pytest.mark.parametrize("movers", [False, True])
@pytest.mark.parametrize("focal_error", [1.0, 1.15, 0.8])
def test_focal_calibration_finds_the_true_focal_length(focal_error, movers):
    """Tracks of the true camera, a camera model whose focal length is ``focal_error`` times the true one: the scale
    it finds brings it back within 1 % (measured 0.1 %); with the true one it keeps 1 exactly; before ``min_pairs``
    it keeps 1. A moving object (15 % of the tracks shifted by 5-15 px together) changes none of that: the cost
    leaves out the worst fifth of the tracks (with all of them the scale stays 1 for a focal length 15 % too long,
    and is 1.2 % off for 20 % too short)."""
    given = with_focal_scale(camera_matrix(K), focal_error)
    cal = FocalCalibration()
    rng = np.random.default_rng(3)
    for i, (p_cur, p_ref, rel) in enumerate(_pairs_of_a_turning_camera(24)):
        p_ref = p_ref[:, :2].copy()
        if movers:
            p_ref[: int(0.15 * len(p_ref))] += rng.uniform(5, 15) * np.array([math.cos(i), math.sin(i)])
        cal.add(given, rel, lambda: (p_cur[:, :2], p_ref))
        if i < cal.min_pairs - 1:
            assert cal.scale == 1.0
    if focal_error == 1.0:
        assert cal.scale == 1.0
    else:
        assert abs(cal.scale * focal_error - 1) < 0.01, cal.scale


def test_odometry_depth_calibrates_a_wrong_focal_length():
    """Odometry and a camera model whose focal length is 15 % too long (as a depth camera's intrinsics given for the
    colour image): its rotation compensation is off, so triangulated depth is wrong (measured AbsRel 0.07-0.72 on the
    last six frames, 0.72 on the 28th); calibrated against the odometry's rotation (from the 21st frame) it is metric
    again (0.021 on the 28th, as with the true intrinsics). The camera slides 3 cm and turns ±1-2° per frame."""
    wrong = dataclasses.replace(K, fx=K.fx * 1.15, fy=K.fy * 1.15)
    poses = [pose(x=0.03 * i, yaw_deg=2.0 * math.sin(i), pitch_deg=1.0 * math.cos(1.3 * i)) for i in range(28)]
    errors = {}
    for calibrate in (False, True):
        dfm = DepthFromMotion(MotionDepthConfig(max_width=W, calibrate_focal=calibrate))
        for i, T in enumerate(poses):
            rgb, depth, _ = render(T)
            out = dfm.estimate(rgb, i, wrong, T)
        assert out is not None and out.metric
        errors[calibrate] = (depth_errors(1 / out.inv_depth, depth)["abs_rel"], out.focal_scale)
    assert errors[False][1] == 1.0 and errors[False][0] > 0.1, errors
    assert abs(errors[True][1] * 1.15 - 1) < 0.02 and errors[True][0] < 0.04, errors


def test_tracks_of_the_strongest_corners_are_the_first_rows_of_all():
    """Every corner is tracked on its own (the reference search with odometry tracks only the strongest corners and
    reuses all corners' tracks where they are made)."""
    from nut_ros.geometry.two_view import corners, track
    cur, ref = (cv2.cvtColor(render(T)[0], cv2.COLOR_RGB2GRAY) for T in (SIDEWAYS[3], SIDEWAYS[1]))
    p0 = corners(cur, 300, max(cur.shape) / 40)
    n = len(p0) // 3
    p1, ok = track(cur, ref, p0)
    p1_few, ok_few = track(cur, ref, p0[:n])
    assert n >= 30 and ok_few.sum() >= 20
    np.testing.assert_array_equal(ok_few, ok[:n])
    np.testing.assert_array_equal(p1_few[ok_few], p1[:n][ok[:n]])


@pytest.mark.parametrize("with_poses", [True, False])
def test_a_frame_without_corners_gives_no_depth_quietly(with_poses):
    """A flat image has no corners to track: no depth ('lost_tracks'), and no numpy warning of empty medians."""
    import warnings

    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    flat = np.full((H, W, 3), 128, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(4):
            out = dfm.estimate(flat, i * 100_000_000, K, pose(x=0.04 * i) if with_poses else None)
    assert out is None and dfm.last_reason == "lost_tracks"


@pytest.mark.parametrize("missing", [{6}, {3, 7}])
def test_a_frame_without_odometry_keeps_the_metric_map_metric(missing):
    """Odometry late for a frame (no pose): the metric map goes on in metres through the map's own pose, and no
    output mixes relative and metric values (before, frame 7 came out labelled metric 16x too far)."""
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W))
    for i in range(12):
        T = pose(x=0.015 * i, yaw_deg=0.3 * i)
        rgb, depth, _ = render(T)
        out = dfm.estimate(rgb, i * 100_000_000, K, None if i in missing else T)
        if i < 3 or out is None:
            continue
        assert out.metric, f"frame {i}: a metric map held over a missing pose"
        errors = depth_errors(1 / out.inv_depth, depth)  # no alignment
        assert errors["abs_rel"] < 0.05 and errors["delta1"] > 0.95, (i, errors)


def test_without_odometry_a_metric_map_stays_metric_for_max_hold_frames_only():
    """Odometry lost for good: the map's own pose keeps metres for ``max_hold`` frames, then the map is dropped and
    depth from motion goes on relative (metres are never claimed for ever on the map's own drift)."""
    dfm = DepthFromMotion(MotionDepthConfig(max_width=W, max_hold=3))
    metric = []
    for i in range(14):
        T = pose(x=0.015 * i, yaw_deg=0.3 * i)
        out = dfm.estimate(render(T)[0], i * 100_000_000, K, T if i < 5 else None)
        metric.append(None if out is None else out.metric)
    assert metric[3:5] == [True, True] and all(m in (True, None) for m in metric[5:8]), metric
    assert not any(metric[9:]) and False in metric[9:], metric
