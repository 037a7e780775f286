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

MIN_INLIERS = 0.3  # a fitted camera motion explaining less of the Gaussians' weight is not trusted (frame skipped)
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
    field's matrix is the cross-product matrix ``[ω]ₓ``: its rotation is :func:`fitted_rotation`'s. Any other matrix
    (a field from poses) is ``I - R^T`` over ``dt`` up to noise: ``R^T`` is its nearest rotation."""
    m = field.matrix * dt
    if np.array_equal(m, -m.T):
        omega = torch.tensor([field.matrix[2, 1], field.matrix[0, 2], field.matrix[1, 0]], dtype=torch.float64)
        rot = fitted_rotation(omega, dt)[0].numpy()
    else:
        u, _, vt = np.linalg.svd(np.eye(3) - m)  # R^T, projected onto the rotations
        rt = u @ vt
        if np.linalg.det(rt) < 0:
            rt = u @ np.diag([1.0, 1.0, -1.0]) @ vt
        rot = rt.T
    rel = np.eye(4)
    rel[:3, :3] = rot
    rel[:3, 3] = rot @ field.offset * dt
    return rel


def fitted_rotation(omega: torch.Tensor, dt) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation ``R`` of ``T_cur<-prev`` (:func:`pose_step`) of the fitted field ``[ω]ₓ`` over ``dt``, and the
    unit quaternion ``(x, y, z, w)`` of ``R^T``; torch float64 on ``omega``'s device (a CUDA graph can hold it).

    For a rotation ``R`` by ``θ`` about ``n`` the skew part of ``(I - R^T) / dt`` is ``sin θ [n]ₓ / dt``, so
    ``sin θ = |ω| dt`` (at most 1) and, with ``m = [ω dt]ₓ = sin θ [n]ₓ``, Rodrigues' formula reads
    ``R = I + m + m² / (1 + cos θ)`` (projecting ``I - [ω]ₓ dt`` onto the rotations instead would turn by
    ``atan(sin θ)``, short by about ``θ³ / 2`` per pair). ``R^T`` turns by ``θ`` about ``-n``: its quaternion is
    ``(-n sin(θ/2), cos(θ/2))``, with ``n sin(θ/2) = ω dt / (2 cos(θ/2))`` where ``|ω| dt`` is below 1."""
    w = omega.to(torch.float64) * dt
    s = torch.linalg.vector_norm(w)
    sin = s.clamp_max(1.0)
    cos = torch.sqrt(1 - sin * sin)
    w = w * torch.where(s > 1.0, 1.0 / s, 1.0)  # |ω| dt past 1 (no rotation makes it): θ = 90°
    m = cross_matrix(w)
    rot = torch.eye(3, dtype=torch.float64, device=w.device) + m + (m @ m) / (1 + cos)
    half_cos = torch.sqrt((1 + cos) / 2)
    return rot, torch.cat([-w / (2 * half_cos), half_cos[None]])


def cross_matrix(v: torch.Tensor) -> torch.Tensor:
    """``[v]ₓ`` (3x3, torch): ``[v]ₓ X = v × X``."""
    zero = torch.zeros_like(v[0])
    return torch.stack([torch.stack([zero, -v[2], v[1]]), torch.stack([v[2], zero, -v[0]]),
                        torch.stack([-v[1], v[0], zero])])


def quaternion_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a ⊗ b`` of quaternions ``(x, y, z, w)`` (torch): the rotation of ``R(a) R(b)``."""
    va, vb = a[:3], b[:3]
    return torch.cat([a[3] * vb + b[3] * va + torch.linalg.cross(va, vb), (a[3] * b[3] - va @ vb)[None]])


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


def fit_trusted(result):
    """Whether a :func:`solve_static_field` result is a camera motion to trust: enough Gaussians, no failed solve,
    finite, explaining at least :data:`MIN_INLIERS` of the weight (numpy: a bool; torch: a bool tensor, on the
    device)."""
    finite = result[:7].isfinite().all() if isinstance(result, torch.Tensor) else np.isfinite(result[:7]).all()
    return (result[7] >= MIN_FIT_POINTS) & (result[8] == 0) & finite & (result[6] >= MIN_INLIERS)


def field_of(result: np.ndarray) -> MotionField | None:
    """The :class:`MotionField` of a :func:`solve_static_field` result on the host (c, ω, the inlier share, the
    Gaussians with weight, solve failures), or None (too few Gaussians, a failed solve, not finite)."""
    if result[7] < MIN_FIT_POINTS or result[8] != 0 or not np.isfinite(result[:7]).all():
        return None
    c, om = result[:3], result[3:6]
    skew = np.array([[0, -om[2], om[1]], [om[2], 0, -om[0]], [-om[1], om[0], 0]])
    return MotionField(skew, c, float(result[6]))
