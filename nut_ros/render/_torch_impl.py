"""Pure-PyTorch orthographic Gaussian rasterizer with the reference kernel's compositing semantics.

Exactness argument for the speed-ups:

* A Gaussian reaches a pixel only if the pixel's 16x16 tile lies in its tile rectangle (as in the CUDA kernel) and
  ``o·exp(power) >= 1/255``, i.e. ``dᵀ·conic·d <= 2·ln(255·o)``. The second set is an ellipse whose bounding box has
  half-widths ``sqrt(2·ln(255·o)·cov2d_aa)`` and ``sqrt(2·ln(255·o)·cov2d_cc)``. Work is therefore binned per small
  pixel *block* (a sub-tile) with the candidates of the block's tile that can reach it; the others would be skipped
  by the kernel anyway. The box is widened slightly so that float rounding can only add candidates.
* Per pixel, candidates are visited in (depth, index) order; with ``T_i = Π_{j<=i} (1 - α_j)`` the kernel stops at
  the first ``T_i < 1e-4`` (that Gaussian excluded) and, since ``T`` never increases, a Gaussian contributes iff
  ``T_i >= 1e-4``. Its weight is ``α_i · T_{i-1}`` and the remaining transmittance is ``1 - Σ weights``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from nut_ros.render.projection import TILE, project_gaussians

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
BLOCK = 4  #: edge of the pixel blocks work is binned into (divides TILE)
CHUNK_ELEMENTS = 1 << 20  #: bound on block·pixel·candidate elements evaluated at once
_BOX_SLACK = 1.001  #: relative widening of the alpha >= 1/255 bounding box (float safety)


def _block_ranges(proj, opacity: Tensor, nbx: int, nby: int) -> tuple[Tensor, Tensor]:
    """Per Gaussian, the half-open block rectangle ``[lo, hi)`` (x, y) it may contribute to; empty when it cannot."""
    per_tile = TILE // BLOCK
    r2 = 2.0 * torch.log(torch.clamp(opacity * 255.0, min=1.0)) * _BOX_SLACK
    extent = torch.sqrt(r2.unsqueeze(-1) * proj.cov2d[..., 0::2].clamp(min=0)) + 1e-3
    extent = torch.where((proj.cov2d[..., 0] * proj.cov2d[..., 2] > proj.cov2d[..., 1] ** 2).unsqueeze(-1),
                         extent, torch.full_like(extent, float("inf")))
    box_lo = torch.floor((proj.uv - extent).clamp(-1e6, 1e6) / BLOCK).long()
    box_hi = torch.floor((proj.uv + extent).clamp(-1e6, 1e6) / BLOCK).long() + 1
    grid = torch.tensor([nbx, nby], device=proj.uv.device)
    lo = torch.maximum(box_lo, proj.rect_min * per_tile).clamp(min=0)
    hi = torch.minimum(torch.minimum(box_hi, proj.rect_max * per_tile), grid)
    alive = proj.visible & (opacity >= ALPHA_MIN)
    hi = torch.where(alive.unsqueeze(-1), torch.maximum(hi, lo), lo)
    return lo, hi


def _bin(proj, opacity: Tensor, nbx: int, nby: int) -> tuple[Tensor, Tensor]:
    """Candidate lists: ``(blocks [M], idx [M, K])`` with flat Gaussian indices in (depth, index) order per block,
    padded with the sentinel ``B·N``; ``blocks`` are flat (batch, block) ids that have at least one candidate."""
    b, n = proj.depth.shape
    device = proj.depth.device
    lo, hi = _block_ranges(proj, opacity, nbx, nby)
    size = (hi - lo).reshape(-1, 2)
    counts = size.prod(-1)
    gid = torch.repeat_interleave(torch.arange(b * n, device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    offset = torch.arange(gid.numel(), device=device) - start[gid]
    width = size[gid, 0]
    lo = lo.reshape(-1, 2)[gid]
    block = (lo[:, 1] + offset // width) * nbx + lo[:, 0] + offset % width
    block = block + (gid // n) * (nbx * nby)
    rank = torch.empty(b, n, dtype=torch.long, device=device)
    order = torch.sort(proj.depth, dim=-1, stable=True).indices
    rank.scatter_(1, order, torch.arange(n, device=device).expand(b, n))
    keys, perm = torch.sort(block * n + rank.reshape(-1)[gid])
    gid = gid[perm]
    block = keys // n
    blocks, per_block = torch.unique_consecutive(block, return_counts=True)
    k = int(per_block.max()) if per_block.numel() else 0
    first = torch.cumsum(per_block, 0) - per_block
    slot = torch.arange(gid.numel(), device=device) - torch.repeat_interleave(first, per_block)
    row = torch.repeat_interleave(torch.arange(blocks.numel(), device=device), per_block)
    idx = torch.full((blocks.numel(), k), b * n, dtype=torch.long, device=device)
    idx[row, slot] = gid
    return blocks, idx


def _composite(params: Tensor, pix: Tensor, idx: Tensor) -> Tensor:
    """Blend candidates ``idx [M, K]`` of ``params [B·N+1, 10]`` at pixels ``pix [M, S, 2]`` -> ``[M, S, 5]``.

    ``params`` columns: u, v, conic (a, b, c), opacity, r, g, b, depth; output columns: r, g, b, depth, alpha.
    """
    g = params[idx]  # [M, K, 10]
    dx = g[:, None, :, 0] - pix[..., 0:1]  # [M, S, K]
    dy = g[:, None, :, 1] - pix[..., 1:2]
    power = -0.5 * (g[:, None, :, 2] * dx * dx + g[:, None, :, 4] * dy * dy) - g[:, None, :, 3] * dx * dy
    alpha = torch.clamp(g[:, None, :, 5] * torch.exp(power), max=ALPHA_MAX)
    alpha = torch.where((power <= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    before = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    weight = torch.where(trans >= T_MIN, alpha * before, torch.zeros_like(alpha))
    feats = torch.cat([g[..., 6:10], torch.ones_like(g[..., :1])], dim=-1)  # [M, K, 5]
    return torch.bmm(weight, feats)


def rasterize_torch(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                    height: int, width: int, background: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N, ·]`` Gaussians; returns colour ``[B,3,H,W]``, depth ``[B,1,H,W]`` and alpha ``[B,1,H,W]``."""
    b, n = means.shape[:2]
    proj = project_gaussians(means, scales, rotations, height, width)
    opacity = opacities[..., 0]
    nbx, nby = math.ceil(width / BLOCK), math.ceil(height / BLOCK)
    with torch.no_grad():
        blocks, idx = _bin(proj, opacity.detach(), nbx, nby)

    params = torch.cat([proj.uv, proj.conic, opacities, colors, proj.depth.unsqueeze(-1)], dim=-1).reshape(b * n, 10)
    params = torch.cat([params, params.new_zeros(1, 10)], dim=0)  # sentinel: opacity 0, never contributes
    ly, lx = torch.meshgrid(torch.arange(BLOCK, device=means.device), torch.arange(BLOCK, device=means.device),
                            indexing="ij")
    local = torch.stack([lx.reshape(-1), ly.reshape(-1)], dim=-1)  # [S, 2]
    within = blocks % (nbx * nby)
    origin = torch.stack([within % nbx, within // nbx], dim=-1) * BLOCK  # [M, 2]

    out = means.new_zeros(b * nbx * nby, BLOCK * BLOCK, 5)
    if blocks.numel():
        chunk = max(1, CHUNK_ELEMENTS // (BLOCK * BLOCK * max(idx.shape[1], 1)))
        parts = []
        for s in range(0, blocks.numel(), chunk):
            pix = (origin[s:s + chunk, None, :] + local).to(means.dtype)
            parts.append(_composite(params, pix, idx[s:s + chunk]))
        out = out.index_put((blocks,), torch.cat(parts, dim=0))
    img = out.reshape(b, nby, nbx, BLOCK, BLOCK, 5).permute(0, 5, 1, 3, 2, 4)
    img = img.reshape(b, 5, nby * BLOCK, nbx * BLOCK)[:, :, :height, :width]
    alpha = img[:, 4:5]
    color = img[:, 0:3] + (1.0 - alpha) * background.to(means).view(1, 3, 1, 1)
    return color, img[:, 3:4], alpha
