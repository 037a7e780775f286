"""The camera's own motion as the apparent velocity field of static points, from odometry or fitted robustly.

A static point at ``X`` (current camera optical frame) moved, over the pair interval ``dt``, from ``R^T (X - t)``
where ``(R, t) = T_cur<-prev``. Its apparent velocity is the affine field

    v(X) = M X + c,   M = (I - R^T) / dt,   c = R^T t / dt

(:class:`MotionField`). With odometry both poses are known (:func:`field_from_poses`). Without, the field is fitted
to the Gaussians' velocities (:func:`fit_static_field`): for a rigid motion over a short interval ``M`` is a
cross-product matrix ``[ω]ₓ`` (6 unknowns: ``ω`` and ``c``), solved by iteratively reweighted least squares that
scores each Gaussian's residual against the moving threshold (Huber rounds, then Tukey's biweight), so the static
background dominates and moving objects drop out of the fit. :func:`pose_step` turns a field back into the camera's
pose change, which integrates into a pose in the key frame when there is no odometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FIT_POINTS = 12  # fewer Gaussians give no field (6 unknowns, 3 equations per Gaussian, margin for outliers)
HUBER_ROUNDS = 2  # first reweighting rounds use Huber weights (convex: robust start), the rest Tukey's
TUKEY_C = 2.0  # Tukey's cut-off in units of the moving threshold


@dataclass(frozen=True)
class MotionField:
    """Apparent velocity of static points: ``v(X) = matrix @ X + offset`` (per second, optical frame)."""

    matrix: np.ndarray  # [3, 3]
    offset: np.ndarray  # [3]
    inliers: float = 1.0  # fraction of the fitted Gaussians' weight the field explains (1 for odometry)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix.T.astype(points.dtype) + self.offset.astype(points.dtype)

    @staticmethod
    def zero() -> "MotionField":
        return MotionField(np.zeros((3, 3)), np.zeros(3))


def field_from_poses(prev_pose: np.ndarray, cur_pose: np.ndarray, dt: float) -> MotionField:
    """The static field of a camera that moved from ``prev_pose`` to ``cur_pose`` (4x4 T_world<-camera) in ``dt`` s."""
    rel = np.linalg.solve(cur_pose, prev_pose)  # T_cur<-prev
    rt = rel[:3, :3].T
    return MotionField((np.eye(3) - rt) / dt, rt @ rel[:3, 3] / dt)


def pose_step(field: MotionField, dt: float) -> np.ndarray:
    """``T_cur<-prev`` (4x4) of the camera motion that produces ``field`` over ``dt`` (inverse of the above)."""
    u, _, vt = np.linalg.svd(np.eye(3) - field.matrix * dt)  # R^T, projected onto the rotations
    rt = u @ vt
    if np.linalg.det(rt) < 0:
        rt = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    rel = np.eye(4)
    rel[:3, :3] = rt.T
    rel[:3, 3] = rt.T @ field.offset * dt
    return rel


def _design(points: np.ndarray) -> np.ndarray:
    """``[N, 3, 6]`` rows of ``v = c + ω × X`` in the unknowns ``(c, ω)``."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows = [[one, zero, zero, zero, z, -y], [zero, one, zero, -z, zero, x], [zero, zero, one, y, -x, zero]]
    return np.stack([np.stack(r, -1) for r in rows], 1)


def fit_static_field(points: np.ndarray, velocities: np.ndarray, weights: np.ndarray, threshold: np.ndarray,
                     iterations: int, z_weight: float = 1.0) -> MotionField | None:
    """Robust rigid field fitted to Gaussians ``points [N,3]`` moving at ``velocities [N,3]``.

    ``weights [N]`` (e.g. opacities) and ``threshold [N]`` (the speed above which each Gaussian counts as moving)
    scale the residuals; ``z_weight`` scales the optical-z equations (the depth rate is noisier than the image-plane
    motion). None when too few Gaussians carry weight.
    """
    keep = weights > 0
    if keep.sum() < MIN_FIT_POINTS:
        return None
    axis_weight = np.array([1.0, 1.0, z_weight])
    a = _design(points[keep].astype(np.float64)) * axis_weight[:, None]
    v = velocities[keep].astype(np.float64) * axis_weight
    rows, flat_v = a.reshape(-1, 6), v.reshape(-1)  # one row per equation (3 per Gaussian), for BLAS products
    prior = weights[keep] / threshold[keep].astype(np.float64) ** 2
    w = prior.copy()
    params = np.zeros(6)
    for k in range(iterations + 1):
        weighted = rows * np.repeat(w, 3)[:, None]
        lhs, rhs = weighted.T @ rows, weighted.T @ flat_v
        try:
            params = np.linalg.solve(lhs + 1e-9 * np.eye(6) * np.trace(lhs), rhs)
        except np.linalg.LinAlgError:
            return None
        r = np.linalg.norm(v - a @ params, axis=1) / threshold[keep]
        if k < HUBER_ROUNDS:
            w = prior / np.maximum(r, 1.0)
        else:
            w = prior * np.clip(1 - (r / TUKEY_C) ** 2, 0, None) ** 2
    c, om = params[:3], params[3:]
    skew = np.array([[0, -om[2], om[1]], [om[2], 0, -om[0]], [-om[1], om[0], 0]])
    inliers = float(prior[r < 1].sum() / prior.sum())
    return MotionField(skew, c, inliers)
