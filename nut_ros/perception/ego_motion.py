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

The fit runs in float64 on the Gaussians' device (:func:`solve_static_field`, which a CUDA graph can hold): on a GPU
as one Triton kernel (:mod:`nut_ros.perception.fit_kernel`), else in torch; its result comes back to the host in one
download (:func:`field_of` reads it).

"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nut_ros.perception import fit_kernel
from nut_ros.perception.tensors import download

MIN_FIT_POINTS = 12  # fewer Gaussians give no field (6 unknowns, 3 equations per Gaussian, margin for outliers)
HUBER_ROUNDS = 2  # first reweighting rounds use Huber weights (convex: robust start), the rest Tukey's
TUKEY_C = 2.0  # Tukey's cut-off in units of the moving threshold
RIDGE = 1e-9  # times the normal matrix's trace, added to its diagonal: a nearly degenerate sample stays solvable


@dataclass(frozen=True)
class MotionField:
    """Apparent velocity of static points: ``v(X) = matrix @ X + offset`` (per second, optical frame)."""

    matrix: np.ndarray  # [3, 3]
    offset: np.ndarray  # [3]
    inliers: float = 1.0  # fraction of the fitted Gaussians' weight the field explains (1 for odometry)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The field at ``points [N, 3]``, in their dtype (the perception stage applies it on the device as
        :func:`nut_ros.perception.dense.affine_rows`)."""
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
    """``T_cur<-prev`` (4x4) of the camera motion that produces ``field`` over ``dt`` (inverse of the above). A fitted
    field's matrix is the cross-product matrix ``[ω]ₓ``: for a rotation ``R`` by ``θ`` about ``n`` the skew part of
    ``(I - R^T) / dt`` is ``sin θ [n]ₓ / dt``, so ``θ = arcsin(|ω| dt)`` (projecting ``I - [ω]ₓ dt`` onto the
    rotations instead would turn by ``atan(sin θ)``, short by about ``θ³ / 2`` per pair). Any other matrix (a field
    from poses) is ``I - R^T`` over ``dt`` up to noise: ``R^T`` is its nearest rotation."""
    m = field.matrix * dt
    if np.array_equal(m, -m.T):
        axis = np.array([m[2, 1], m[0, 2], m[1, 0]])
        sin = np.linalg.norm(axis)
        k = m / sin if sin > 0 else m  # [n]ₓ
        angle = np.arcsin(min(sin, 1.0))
        rt = (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k).T  # R (Rodrigues), transposed
    else:
        u, _, vt = np.linalg.svd(np.eye(3) - m)  # R^T, projected onto the rotations
        rt = u @ vt
        if np.linalg.det(rt) < 0:
            rt = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    rel = np.eye(4)
    rel[:3, :3] = rt.T
    rel[:3, 3] = rt.T @ field.offset * dt
    return rel


def _design(points: torch.Tensor) -> torch.Tensor:
    """``[N, 3, 6]`` rows of ``v = c + ω × X`` in the unknowns ``(c, ω)``."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows = [[one, zero, zero, zero, z, -y], [zero, one, zero, -z, zero, x], [zero, zero, one, y, -x, zero]]
    return torch.stack([torch.stack(r, -1) for r in rows], 1)


def fit_static_field(points, velocities, weights, threshold, iterations: int,
                     z_weight: float = 1.0) -> MotionField | None:
    """Robust rigid field fitted to Gaussians ``points [N,3]`` moving at ``velocities [N,3]`` (tensors on one
    device, or numpy).

    ``weights [N]`` (e.g. opacities; 0 leaves a Gaussian out) and ``threshold [N]`` (the speed above which each
    Gaussian counts as moving) scale the residuals; ``z_weight`` scales the optical-z equations (the depth rate is
    noisier than the image-plane motion). None when fewer than ``MIN_FIT_POINTS`` Gaussians carry weight or the
    solve fails.
    """
    return field_of(download(solve_static_field(points, velocities, weights, threshold, iterations, z_weight)))


def solve_static_field(points, velocities, weights, threshold, iterations: int,
                       z_weight: float = 1.0) -> torch.Tensor:
    """The solve of :func:`fit_static_field` on the inputs' device, without waiting for it (a CUDA graph can hold
    it): one float64 tensor ``[9]`` for :func:`field_of`. On a GPU one Triton kernel where Triton works
    (:mod:`~nut_ros.perception.fit_kernel`), else the torch operations below."""
    points, velocities, weights, threshold = (torch.as_tensor(a) for a in (points, velocities, weights, threshold))
    if points.is_cuda and fit_kernel.available():
        result = fit_kernel.solve(points, velocities, weights, threshold, iterations, z_weight, RIDGE, HUBER_ROUNDS,
                                  TUKEY_C)
        if result is not None:
            return result
    f64 = torch.float64
    keep = weights > 0
    axis_weight = torch.full((3,), z_weight, dtype=f64, device=points.device)
    axis_weight[:2].fill_(1.0)  # (an item assigned a number copies it from the host: not inside a CUDA graph)
    a = _design(torch.where(keep[:, None], points.double(), 0.0)) * axis_weight[:, None]
    v = torch.where(keep[:, None], velocities.double(), 0.0) * axis_weight
    thresh = torch.where(keep, threshold.double(), 1.0)
    rows, flat_v = a.reshape(-1, 6), v.reshape(-1)  # one row per equation (3 per Gaussian)
    prior = torch.where(keep, weights.double() / thresh ** 2, 0.0)
    w = prior
    failed = torch.zeros((), dtype=torch.int32, device=points.device)
    ridge = RIDGE * torch.eye(6, dtype=f64, device=points.device)
    for k in range(iterations + 1):
        weighted = rows * w[:, None].expand(-1, 3).reshape(-1, 1)
        lhs, rhs = weighted.T @ rows, weighted.T @ flat_v
        params, info = torch.linalg.solve_ex(lhs + ridge * torch.trace(lhs), rhs)
        failed = torch.maximum(failed, info)
        r = torch.linalg.vector_norm(v - a @ params, dim=1) / thresh
        if k < HUBER_ROUNDS:
            w = prior / r.clamp_min(1.0)
        else:
            w = prior * (1 - (r / TUKEY_C) ** 2).clamp_min(0) ** 2
    inliers = (prior * (r < 1)).sum() / prior.sum()
    return torch.cat([params, inliers[None], keep.sum()[None].to(f64), failed[None].to(f64)])


def field_of(result: np.ndarray) -> MotionField | None:
    """The :class:`MotionField` of a :func:`solve_static_field` result on the host (c, ω, the inlier share, the
    Gaussians with weight, solve failures), or None (too few Gaussians, a failed solve, not finite)."""
    if result[7] < MIN_FIT_POINTS or result[8] != 0 or not np.isfinite(result[:7]).all():
        return None
    c, om = result[:3], result[3:6]
    skew = np.array([[0, -om[2], om[1]], [om[2], 0, -om[0]], [-om[1], om[0], 0]])
    return MotionField(skew, c, float(result[6]))
