"""Pure-PyTorch orthographic Gaussian rasterizer with the reference kernel's compositing semantics.

Why the shortcuts below are exact:

* A Gaussian reaches a pixel only if the pixel's 16x16 tile lies in its tile rectangle (as in the CUDA kernel) and
  ``o·exp(power) >= 1/255``, i.e. ``dᵀ·conic·d <= 2·ln(255·o)``. Work is binned per 4x4-pixel *block* (a sub-tile):
  a Gaussian is listed in the blocks of its tile rectangle that meet the ellipse's bounding box and pass a separable
  lower bound ``q_x·dx² + q_y·dy² <= dᵀ·conic·d`` (exact for axis-aligned ellipses). Blocks it cannot reach would
  skip it in the kernel. Both tests are widened slightly so that rounding can only add candidates.
* Per pixel, candidates are visited in (depth, index) order, the order a stable sort by (tile, depth) gives. With
  ``T_i = Π_{j<=i} (1 - α_j)`` the kernel stops at the first ``T_i < 1e-4`` (that Gaussian excluded); ``T`` never
  increases, so a Gaussian contributes iff ``T_i >= 1e-4``, with weight ``α_i·T_{i-1}``; the background gets
  ``1 - Σ weights`` (the same number as the final T). Blocks whose pixels have all stopped are dropped between
  slices of their candidate lists, which is where the kernel's early exit pays off for large, overlapping Gaussians.
* ``ln(o) + power`` is a quadratic polynomial in the pixel offset inside a block, so it is evaluated for all
  (candidate, pixel) pairs by one matrix product with per-candidate coefficients in block-centred coordinates.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.render.projection import LOWPASS, TILE, Projection, project_gaussians

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
BLOCK = 4  #: edge of the pixel blocks work is binned into (divides TILE)
CHUNK_ELEMENTS = 1 << 18  #: bound on the (pixel, candidate) pairs evaluated at once
FIRST_SLICE = 32  #: candidates per block in the first slice (then doubling)
_BOX_SLACK = 1.001  #: relative widening of the alpha >= 1/255 bounding box (float safety)
_NEVER = -80.0  #: log-value of skipped/stopped terms: exp gives ~1.8e-35 (lower values hit exp's slow underflow path)
_PAD_LOG_OPACITY = -1e4  #: log-opacity of the padding candidate
_LOG_ALPHA_MIN = math.log(ALPHA_MIN)
_LOG_T_MIN = math.log(T_MIN)


def _reach(proj: Projection, opacity: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where each Gaussian can reach ``alpha >= 1/255``: ``dᵀ·conic·d <= r2``.

    Returns ``r2 [B, N]`` (widened for rounding), the bounding-box half-widths ``[B, N, 2]`` and the weights
    ``q [B, N, 2]`` of a separable lower bound ``q_x·dx² + q_y·dy² <= dᵀ·conic·d`` (zeros where none is known).
    """
    a, b, c = proj.cov2d.unbind(-1)
    ca, cb, cc = proj.conic.unbind(-1)
    r2 = 2.0 * torch.log(torch.clamp(opacity * 255.0, min=1.0)) * _BOX_SLACK + 1e-4
    definite = a * c > b * b
    extent = torch.sqrt(r2.unsqueeze(-1) * torch.stack([a, c], -1).clamp(min=0)) + 1e-3
    extent = torch.where(definite.unsqueeze(-1), extent, torch.full_like(extent, 1e6))
    # 2|b·dx·dy| <= |b|(dx² + dy²) gives (a-|b|, c-|b|) when both are >= 0, else use the smaller eigenvalue
    diag = torch.stack([ca - cb.abs(), cc - cb.abs()], dim=-1)
    lam_min = (0.5 * (ca + cc) - torch.sqrt((0.5 * (ca - cc)) ** 2 + cb * cb)).clamp(min=0)
    q = torch.where((diag >= 0).all(-1, keepdim=True), diag, lam_min.unsqueeze(-1).expand_as(diag))
    q = torch.where(definite.unsqueeze(-1), q / _BOX_SLACK, torch.zeros_like(q))
    return r2, extent, q


def _expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For ``counts [R]``: the owner ``[Σ counts]`` of each expanded item and its rank within the owner."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    rank = torch.arange(owner.numel(), device=counts.device) - (torch.cumsum(counts, 0) - counts).index_select(0, owner)
    return owner, rank


def _bin(proj: Projection, opacity: Tensor, nbx: int, nby: int) -> tuple[Tensor, Tensor]:
    """Candidate lists per pixel block.

    Returns ``block [P]`` (flat (batch, block) id, non-decreasing) and ``gid [P]`` (flat Gaussian index), sorted by
    block, then depth, then index. A Gaussian is listed in the blocks of its tile rectangle whose pixel centres can
    reach the ellipse ``dᵀ·conic·d <= r2`` by the separable lower bound (per block row, an interval of columns).
    """
    b, n = proj.depth.shape
    device = proj.depth.device
    r2, extent, q = _reach(proj, opacity)
    box_lo = torch.floor((proj.uv - extent).clamp(-1e6, 1e6) / BLOCK).long()
    box_hi = torch.floor((proj.uv + extent).clamp(-1e6, 1e6) / BLOCK).long() + 1
    per_tile = TILE // BLOCK
    lo = torch.maximum(box_lo, proj.rect_min * per_tile).clamp(min=0)
    hi = torch.minimum(torch.minimum(box_hi, proj.rect_max * per_tile), torch.tensor([nbx, nby], device=device))
    alive = (proj.visible & (opacity >= ALPHA_MIN)).unsqueeze(-1)
    hi = torch.where(alive, torch.maximum(hi, lo), lo)

    # block rows of every Gaussian, in (batch, depth, index) order
    order = torch.sort(proj.depth, dim=-1, stable=True).indices + n * torch.arange(b, device=device)[:, None]
    order = order.reshape(-1)
    ints = torch.cat([lo.reshape(-1, 2), hi.reshape(-1, 2)], dim=-1).index_select(0, order)
    owner, rank = _expand(ints[:, 3] - ints[:, 1])
    gid = order.index_select(0, owner)
    ints = ints.index_select(0, owner)
    u, v, qx, qy, r2 = torch.cat([proj.uv, q, r2.unsqueeze(-1)], dim=-1).reshape(-1, 5).index_select(0, gid).unbind(-1)
    by = ints[:, 1] + rank
    top = (by * BLOCK).to(v.dtype)
    dy = (top - v).clamp(min=0) + (v - top - (BLOCK - 1)).clamp(min=0)
    budget = r2 - qy * dy * dy
    half = torch.where(qx > 0, torch.sqrt(budget.clamp(min=0) / qx), torch.full_like(qx, 1e6)).clamp(max=1e6)
    x_lo = torch.maximum(ints[:, 0], torch.ceil((u - half - (BLOCK - 1)) / BLOCK).long())
    x_hi = torch.minimum(ints[:, 2], torch.floor((u + half) / BLOCK).long() + 1)
    width = torch.where(budget >= 0, (x_hi - x_lo).clamp(min=0), torch.zeros_like(x_hi))

    # blocks of every row: flat id = row base + rank
    owner, _ = _expand(width)
    base = by * nbx + x_lo + torch.div(gid, n, rounding_mode="floor") * (nbx * nby) - (torch.cumsum(width, 0) - width)
    block = base.index_select(0, owner) + torch.arange(owner.numel(), device=device)
    block, perm = torch.sort(block.to(torch.int32), stable=True)
    return block.long(), gid.index_select(0, owner).index_select(0, perm.long())


def _coefficients(params: Tensor, centre: Tensor) -> Tensor:
    """Coefficients of ``ln(o) + power`` in the monomials (1, x, y, x², xy, y²) of the offset from ``centre``.

    ``params [..., 6]`` = (u, v, conic a, b, c, ln o); ``centre [..., 2]``; returns ``[..., 6]``.
    """
    du, dv = params[..., 0] - centre[..., 0], params[..., 1] - centre[..., 1]
    a, b, c, log_o = params[..., 2], params[..., 3], params[..., 4], params[..., 5]
    bu, bv = a * du + b * dv, b * du + c * dv
    c0 = log_o - 0.5 * (du * bu + dv * bv)
    return torch.stack([c0, bu, bv, -0.5 * a, -b, -0.5 * c], dim=-1)


def _composite(coeffs: Tensor, feats: Tensor, monomials: Tensor, log_trans0: Tensor) -> tuple[Tensor, Tensor]:
    """Front-to-back blend of the next candidates of some blocks.

    ``coeffs [M, K, 6]``, ``feats [M, K, F]``, ``log_trans0 [M, S]`` (log transmittance before these candidates)
    -> contributions ``[M, S, F]`` and the log transmittance after them ``[M, S]``. Transmittance is accumulated in
    log space (a running product underflows into slow denormals); the weight ``α_i·T_{i-1}`` is written as
    ``T_i·α_i/(1 - α_i)`` with ``T_i`` zeroed once it falls below ``T_MIN``.
    """
    log_alpha = torch.matmul(monomials, coeffs.transpose(1, 2))  # [M, S, K]
    alpha = torch.exp(F.threshold(log_alpha, _LOG_ALPHA_MIN, _NEVER)).clamp(max=ALPHA_MAX)
    keep = 1.0 - alpha
    log_trans = torch.cumsum(torch.log(keep), dim=-1) + log_trans0.unsqueeze(-1)
    trans = torch.exp(F.threshold(log_trans, _LOG_T_MIN, _NEVER))
    return torch.bmm(trans * (alpha / keep), feats), log_trans[..., -1]


def _candidate_table(block: Tensor, gid: Tensor, padding: int, nbx: int, nby: int, dtype: torch.dtype):
    """Padded candidate lists, one row per non-empty block, rows by decreasing length.

    Returns the flat (batch, block) ids ``[M]``, the row lengths (list), ``idx [M, K]`` (``padding`` past a row's
    end) and the blocks' centre pixels ``[M, 2]``.
    """
    device = block.device
    blocks, per_block = torch.unique_consecutive(block, return_counts=True)
    by_size = torch.sort(per_block, descending=True, stable=True).indices
    rank = torch.empty_like(by_size)
    rank[by_size] = torch.arange(by_size.numel(), device=device)
    first = torch.repeat_interleave(torch.cumsum(per_block, 0) - per_block, per_block)
    sizes = per_block[by_size].tolist()
    idx = torch.full((len(sizes), sizes[0] if sizes else 0), padding, dtype=torch.long, device=device)
    idx[torch.repeat_interleave(rank, per_block), torch.arange(gid.numel(), device=device) - first] = gid
    blocks = blocks[by_size]
    within = blocks % (nbx * nby)
    centres = (torch.stack([within % nbx, within // nbx], dim=-1) * BLOCK).to(dtype) + (BLOCK - 1) / 2
    return blocks, sizes, idx, centres


def rasterize_torch(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                    height: int, width: int, background: Tensor,
                    lowpass: float = LOWPASS) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N, ·]`` Gaussians; returns colour ``[B,3,H,W]``, depth ``[B,1,H,W]`` and alpha ``[B,1,H,W]``."""
    b, n = means.shape[:2]
    dtype, device = means.dtype, means.device
    proj = project_gaussians(means, scales, rotations, height, width, lowpass)
    nbx, nby = math.ceil(width / BLOCK), math.ceil(height / BLOCK)
    with torch.no_grad():
        block, gid = _bin(proj, opacities[..., 0].detach(), nbx, nby)
        blocks, sizes, idx, centres = _candidate_table(block, gid, b * n, nbx, nby, dtype)

    log_o = torch.log(opacities.clamp(min=ALPHA_MIN))
    params = torch.cat([proj.uv, proj.conic, log_o, colors, proj.depth.unsqueeze(-1), torch.ones_like(log_o)], -1)
    pad = params.new_tensor([[0, 0, 0, 0, 0, _PAD_LOG_OPACITY, 0, 0, 0, 0, 0]])  # the padding candidate
    params = torch.cat([params.reshape(b * n, 11), pad], dim=0)
    local = torch.arange(BLOCK, dtype=dtype, device=device) - (BLOCK - 1) / 2
    ly, lx = torch.meshgrid(local, local, indexing="ij")
    lx, ly = lx.reshape(-1), ly.reshape(-1)
    monomials = torch.stack([torch.ones_like(lx), lx, ly, lx * lx, lx * ly, ly * ly], dim=-1)  # [S, 6]

    # Blocks advance through their candidate lists in slices of doubling length; a block leaves once its list ends
    # or all its pixels have stopped. Each slice is evaluated in chunks of at most ~CHUNK_ELEMENTS pairs.
    out = means.new_zeros(len(sizes), BLOCK * BLOCK, 5)
    lengths = torch.tensor(sizes, device=device)
    active = torch.arange(len(sizes), device=device)
    log_trans = means.new_zeros(len(sizes), BLOCK * BLOCK)
    start, step = 0, FIRST_SLICE
    while active.numel():
        rows = max(1, CHUNK_ELEMENTS // (BLOCK * BLOCK * step))
        contribs, lasts = [], []
        for first in range(0, active.numel(), rows):
            part = active[first:first + rows]
            cand = idx[:, start:start + step].index_select(0, part)
            g = params.index_select(0, cand.reshape(-1)).view(*cand.shape, 11)
            coeffs = _coefficients(g[..., :6], centres.index_select(0, part)[:, None, :])
            contrib, last = _composite(coeffs, g[..., 6:], monomials, log_trans[first:first + rows])
            contribs.append(contrib)
            lasts.append(last)
        out = out.index_add(0, active, torch.cat(contribs))
        log_trans = torch.cat(lasts)
        start, step = start + step, 2 * step
        going = (lengths.index_select(0, active) > start) & (log_trans.max(-1).values >= _LOG_T_MIN)
        active, log_trans = active[going], log_trans[going]
    out = means.new_zeros(b * nbx * nby, BLOCK * BLOCK, 5).index_put((blocks,), out)
    img = out.reshape(b, nby, nbx, BLOCK, BLOCK, 5).permute(0, 5, 1, 3, 2, 4)
    img = img.reshape(b, 5, nby * BLOCK, nbx * BLOCK)[:, :, :height, :width]
    alpha = img[:, 4:5]
    color = img[:, 0:3] + (1.0 - alpha) * background.to(means).view(1, 3, 1, 1)
    return color, img[:, 3:4], alpha
