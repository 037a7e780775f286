"""Per-Gaussian preprocess of the reference orthographic rasterizer (EWA splatting with a constant Jacobian).

World ``(x, y, z)`` (``y`` = camera depth after the inverse-depth map) goes to camera ``(x, -z, y)``; with
tanfov = 1 the focal lengths are ``fx = W/2`` and ``fy = H/2`` and pixel centres sit at integer coordinates:
``u = ((x·p_w + 1)·W - 1)/2``, ``v = ((-z·p_w + 1)·H - 1)/2`` with ``p_w = 1/(1 + 1e-7)``.
The screen covariance is ``J W Σ Wᵀ Jᵀ + lowpass·I`` (the reference's low-pass is 0.3 px²) with
``J = diag(fx, fy)`` and ``Σ = R S² Rᵀ`` built from the *unnormalised* quaternion. Everything here is
differentiable except the integer tile bookkeeping.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from nut_ros.render.kernel_config import TILE
#: px² added to the screen covariance diagonal by the reference rasterizer; a model's own value is
#: ``ModelConfig.raster_lowpass`` (the public ``rasterize`` always takes it explicitly)
LOWPASS = 0.3
EIGEN_FLOOR = 0.1  #: floor of ``mid² - det`` in the eigenvalue used for the radius


class Projection(NamedTuple):
    """Screen-space Gaussians; ``visible`` is False for culled ones (behind the camera, singular or 0 tiles)."""

    uv: Tensor  # [..., N, 2] pixel centre (u, v)
    depth: Tensor  # [..., N] camera z (world y)
    cov2d: Tensor  # [..., N, 3] (a, b, c) of [[a, b], [b, c]] in px², low-pass included
    conic: Tensor  # [..., N, 3] inverse of cov2d as (a', b', c')
    radius: Tensor  # [..., N] int32, ceil(3·sqrt(λmax)); 0 when culled
    rect_min: Tensor  # [..., N, 2] int64 first tile (x, y)
    rect_max: Tensor  # [..., N, 2] int64 one past the last tile (x, y)
    visible: Tensor  # [..., N] bool


def quaternion_rows_xz(q: Tensor) -> tuple[Tensor, Tensor]:
    """Rows 0 and 2 of the 3DGS rotation matrix of the (unnormalised) quaternion ``q = (w, x, y, z)``."""
    r, x, y, z = q.unbind(-1)
    row0 = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - r * z), 2 * (x * z + r * y)], dim=-1)
    row2 = torch.stack([2 * (x * z - r * y), 2 * (y * z + r * x), 1 - 2 * (x * x + y * y)], dim=-1)
    return row0, row2


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Number of tiles ``(gx, gy)`` covering a ``width`` x ``height`` image."""
    return (width + TILE - 1) // TILE, (height + TILE - 1) // TILE


def project_gaussians(means: Tensor, scales: Tensor, rotations: Tensor, height: int, width: int,
                      lowpass: float = LOWPASS) -> Projection:
    """Project world-frame Gaussians ``means [..., N, 3]``, ``scales [..., N, 3]``, ``rotations [..., N, 4]``;
    ``lowpass`` (px²) is added to the screen covariance's diagonal."""
    x, depth, z = means.unbind(-1)
    fx, fy = width / 2.0, height / 2.0
    p_w = 1.0 / (means.new_tensor(1.0) + 1e-7)
    u = ((x * p_w + 1.0) * width - 1.0) * 0.5
    v = ((-z * p_w + 1.0) * height - 1.0) * 0.5

    row0, row2 = quaternion_rows_xz(rotations)
    m0, m2 = row0 * scales, row2 * scales  # rows of R·S
    sxx, sxz, szz = (m0 * m0).sum(-1), (m0 * m2).sum(-1), (m2 * m2).sum(-1)
    a = fx * fx * sxx + lowpass
    b = -(fx * fy) * sxz  # camera y = -world z
    c = fy * fy * szz + lowpass
    det = a * c - b * b
    definite = (det > 0) & torch.isfinite(det)  # a thin Gaussian's float32 conic may come out indefinite: culled
    det_inv = 1.0 / torch.where(definite, det, torch.ones_like(det))
    conic = torch.stack([c * det_inv, -b * det_inv, a * det_inv], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=EIGEN_FLOOR))
        radius = torch.ceil(3.0 * torch.sqrt(lam))
        gx, gy = tile_grid(height, width)
        lo = torch.stack([(u - radius) / TILE, (v - radius) / TILE], dim=-1)
        hi = torch.stack([(u + radius + TILE - 1) / TILE, (v + radius + TILE - 1) / TILE], dim=-1)
        grid = torch.tensor([gx, gy], device=means.device)
        # C (int) truncation followed by max(0, .) equals floor followed by max(0, .)
        rect_min = torch.minimum(torch.nan_to_num(lo.floor(), 0.0).clamp(min=0).long(), grid)
        rect_max = torch.minimum(torch.nan_to_num(hi.floor(), 0.0).clamp(min=0).long(), grid)
        area = (rect_max - rect_min).prod(-1)
        visible = (depth > 0) & definite & (area > 0)
        radius = torch.where(visible, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(torch.stack([u, v], dim=-1), depth, torch.stack([a, b, c], dim=-1), conic, radius,
                      rect_min, rect_max, visible)
