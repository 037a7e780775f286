"""Camera motion as a static velocity field: from poses, inverted back to poses, and fitted robustly."""
import numpy as np
import pytest

from nut_ros.perception.ego_motion import MotionField, field_from_poses, fit_static_field, pose_step
from perception_synth import DT, yaw_pose


def test_field_from_poses_is_the_finite_difference_of_static_points():
    rng = np.random.default_rng(0)
    prev, cur = yaw_pose(0.1, (0.2, 0.0, 0.5)), yaw_pose(0.13, (0.25, 0.01, 0.55))
    world = rng.uniform([-3, -1, 1], [3, 1, 7], (100, 3))
    in_prev = (world - prev[:3, 3]) @ prev[:3, :3]
    in_cur = (world - cur[:3, 3]) @ cur[:3, :3]
    np.testing.assert_allclose(field_from_poses(prev, cur, DT)(in_cur), (in_cur - in_prev) / DT, atol=1e-9)


def test_pose_step_inverts_the_field():
    prev, cur = yaw_pose(-0.3, (1.0, 0.0, 2.0)), yaw_pose(-0.25, (1.04, -0.01, 2.03))
    rel = pose_step(field_from_poses(prev, cur, DT), DT)
    np.testing.assert_allclose(prev @ np.linalg.inv(rel), cur, atol=1e-9)


def test_pose_step_inverts_a_fitted_rigid_field_exactly():
    """A fit returns the cross-product matrix nearest the field: the skew part of (I - R^T) / dt, sin(angle) times
    the axis. A turn of 0.3 rad per pair about a tilted axis comes back whole (the nearest rotation to I - [ω]ₓ dt
    would turn by atan(sin 0.3) = 0.287 rad)."""
    axis = np.array([0.2, 1.0, -0.3]) / np.linalg.norm([0.2, 1.0, -0.3])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rel = np.eye(4)
    rel[:3, :3] = np.eye(3) + np.sin(0.3) * k + (1 - np.cos(0.3)) * k @ k
    rel[:3, 3] = (0.05, -0.02, 0.1)
    full = (np.eye(3) - rel[:3, :3].T) / DT
    fitted = MotionField((full - full.T) / 2, rel[:3, :3].T @ rel[:3, 3] / DT)
    np.testing.assert_allclose(pose_step(fitted, DT), rel, atol=1e-12)


@pytest.mark.parametrize("outlier_fraction", [0.0, 0.3])
def test_fit_recovers_camera_motion_despite_moving_points(outlier_fraction):
    rng = np.random.default_rng(1)
    prev, cur = yaw_pose(0.0, (0, 0, 0)), yaw_pose(0.02, (0.03, 0.0, 0.04))
    true = field_from_poses(prev, cur, DT)
    pts = rng.uniform([-3, -1, 1], [3, 1, 7], (3000, 3))
    vel = true(pts) + rng.normal(0, 0.05, pts.shape)
    n_out = int(outlier_fraction * len(pts))
    vel[:n_out] += np.array([1.5, 0.0, -0.8])  # one large object moving together
    fit = fit_static_field(pts, vel, np.ones(len(pts)), np.full(len(pts), 0.3), 6)
    err = np.linalg.norm(fit(pts[n_out:]) - true(pts[n_out:]), axis=1)
    assert np.median(err) < 0.02
    assert fit.inliers == pytest.approx(1 - outlier_fraction, abs=0.05)


def test_fit_needs_enough_points_and_zero_field_is_zero():
    assert fit_static_field(np.ones((5, 3)), np.zeros((5, 3)), np.ones(5), np.ones(5), 3) is None
    assert np.all(MotionField.zero()(np.ones((4, 3))) == 0)
