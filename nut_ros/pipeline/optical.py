"""Canonical (STAG) Gaussians -> units the robot can use: metric depth rendering and the camera optical frame.

Each frame of a pair was normalised with its own affine map on inverse depth (:mod:`nut_ros.pipeline.depth`).
:func:`rebase_inverse_depth` rewrites every Gaussian's slot ``ŷ`` (and its velocity) into one shared canonical
frame in which the renderer's fixed map ``d = 1/(0.2 + 9.8 ŷ)`` gives ``metres / depth_scale``. The rasterizer's
footprint does not depend on depth (orthographic, constant Jacobian), so rendering the rebased set yields exact
per-Gaussian metric depth compositing (``depth_scale · Σ αT d``) and metric front-to-back order, at no extra cost.
The shared frame covers depths ``[0.1, 5] · depth_scale``; Gaussians leaving it are culled, as in the reference.

:func:`optical_cloud` back-projects Gaussians at a time ``t`` through pinhole intrinsics of the rendered image:
pixel ``u = (W/2) x + (W-1)/2``, ``v = -(H/2) z + (H-1)/2``; ``Z = depth_scale · d``; ``X = (u - cx) Z / fx``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from nut_ros.core.gaussians import INV_DEPTH_OFFSET, INV_DEPTH_SCALE, Gaussians, disparity_to_depth
from nut_ros.core.geometry import Intrinsics
from nut_ros.pipeline.types import GaussianCloud

#: shared-frame slot ŷ' of the farthest input depth: a small margin so it is not culled by rounding
FAR_MARGIN = 0.005


def shared_depth_scale(inv_far: Sequence[float]) -> float:
    """Metres per canonical depth unit such that the farthest frame's far plane lands at ŷ' = ``FAR_MARGIN``.

    The shared frame then covers depths from about ``d_far / 40`` to ``1.02 · d_far``.
    """
    return (INV_DEPTH_OFFSET + INV_DEPTH_SCALE * FAR_MARGIN) / min(inv_far)


def rebase_inverse_depth(g: Gaussians, norms: Sequence[tuple[float, float]], depth_scale: float) -> Gaussians:
    """Rewrite ``ŷ`` of a pair's Gaussians from per-frame normalisations into the shared metric-scaled frame.

    ``norms[k] = (inv_far, inv_near)`` of the frame whose Gaussians have anchor time ``t0 == k`` (0 or 1).
    """
    t0 = g.t0
    inv_far = torch.full_like(t0, norms[0][0])
    span = torch.full_like(t0, norms[0][1] - norms[0][0])
    for k, (far, near) in enumerate(norms[1:], start=1):
        inv_far = torch.where(t0 == k, torch.full_like(t0, far), inv_far)
        span = torch.where(t0 == k, torch.full_like(t0, near - far), span)
    # s/d = s·(inv_far + span·ŷ) must equal 0.2 + 9.8·ŷ'  =>  ŷ' = (s·inv_far - 0.2)/9.8 + (s·span/9.8)·ŷ
    gain = depth_scale * span / INV_DEPTH_SCALE
    offset = (depth_scale * inv_far - INV_DEPTH_OFFSET) / INV_DEPTH_SCALE
    xyz = torch.stack([g.xyz[..., 0], offset + gain * g.xyz[..., 1], g.xyz[..., 2]], dim=-1)
    vel = torch.stack([g.velocity[..., 0], gain * g.velocity[..., 1], g.velocity[..., 2]], dim=-1)
    return Gaussians(xyz, vel, g.rgb, g.opacity, g.scale, g.gamma, g.t0)


def default_intrinsics(width: int, height: int, hfov_deg: float) -> Intrinsics:
    """Square-pixel pinhole intrinsics with horizontal field of view ``hfov_deg`` (used when no CameraInfo exists)."""
    f = (width / 2) / float(np.tan(np.radians(hfov_deg) / 2))
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height)


def optical_cloud(g: Gaussians, t: float, k: Intrinsics, depth_scale: float, pair_interval_s: float | None,
                  metric: bool, min_opacity: float = 0.0) -> GaussianCloud:
    """Gaussians of batch element 0 at pair time ``t`` in the optical frame of an image described by ``k``.

    Culled Gaussians (ŷ(t) outside [0, 1]) and those with ``α(t) < min_opacity`` are left out. Velocities are the
    instantaneous derivative at ``t`` divided by ``pair_interval_s`` (zero when it is None).
    """
    w, h = k.width, k.height
    p = g.premap_position(t)[0].float()
    vel = g.velocity[0].float()
    alpha = g.temporal_opacity(t)[0, :, 0].float()
    y_hat = p[:, 1]
    keep = (y_hat >= 0) & (y_hat <= 1) & (alpha >= min_opacity)
    p, vel, alpha, scale, rgb = p[keep], vel[keep], alpha[keep], g.scale[0][keep].float(), g.rgb[0][keep].float()

    d = disparity_to_depth(p[:, 1])
    z = depth_scale * d
    u = (w / 2) * p[:, 0] + (w - 1) / 2
    v = -(h / 2) * p[:, 2] + (h - 1) / 2
    positions = torch.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], dim=-1)

    sx = (w / 2) * scale[:, 0] * z / k.fx
    sy = (h / 2) * scale[:, 1] * z / k.fy
    scales = torch.stack([sx, sy, (sx + sy) / 2], dim=-1)

    if pair_interval_s:
        du, dv = (w / 2) * vel[:, 0], -(h / 2) * vel[:, 2]
        dz = -depth_scale * INV_DEPTH_SCALE * vel[:, 1] * d * d  # d/dτ of s / (0.2 + 9.8 ŷ + eps)
        velocities = torch.stack([(du * z + (u - k.cx) * dz) / k.fx, (dv * z + (v - k.cy) * dz) / k.fy, dz], -1)
        velocities = velocities / pair_interval_s
    else:
        velocities = torch.zeros_like(positions)

    rotations = torch.zeros(positions.shape[0], 4, dtype=positions.dtype, device=positions.device)
    rotations[:, 0] = 1.0

    def np32(x: Tensor) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float32, copy=False)

    return GaussianCloud(np32(positions), np32(scales), np32(rotations), np32(alpha), np32(rgb), np32(velocities),
                         metric=metric)

