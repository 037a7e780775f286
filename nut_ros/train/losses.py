"""Training losses: photometric, explicit moving-object mask term, depth (scale/shift-invariant and direct) and
trajectory supervision of the Gaussians' motion against exact ground truth.

The reference's bugs are fixed here (STREAMSPLAT_SPEC §7.2-7.3, §9.2): the mask term is its own weighted term, an
empty mask contributes 0 instead of NaN, and masked-out pixels are excluded from the depth alignment statistics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.gaussians import INV_DEPTH_OFFSET, INV_DEPTH_SCALE, Gaussians


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the pixels where ``mask`` (broadcast over channels) is set; 0 for an empty mask."""
    weight = mask.expand_as(pred).to(pred.dtype)
    return (weight * (pred - target) ** 2).sum() / weight.sum().clamp_min(1.0)


def rendered_disparity(depth: Tensor, alpha: Tensor) -> Tensor:
    """Canonical inverse-depth slot ``ŷ`` of a render (inverts ``d = 1/(0.2 + 9.8 ŷ)`` on ``depth / alpha``)."""
    d = depth / alpha.clamp_min(1e-4)
    return (1.0 / d.clamp_min(1e-3) - INV_DEPTH_OFFSET) / INV_DEPTH_SCALE


def ssi_disparity_loss(pred: Tensor, target: Tensor, mask: Tensor, tau: float = 0.0) -> Tensor:
    """Scale/shift-invariant L1 between disparities after median / mean-absolute-deviation alignment.

    ``pred``, ``target``, ``mask`` are ``[B, ...]``; statistics pool everything after the batch axis and use only
    the masked pixels. With ``tau > 0`` large residuals are softly down-weighted as in the reference
    (``w = max(0.1, σ(-(δ² - τ)/(0.2 τ)))``, detached). Samples with fewer than 2 valid pixels contribute 0.
    """
    p, g, m = pred.flatten(1).float(), target.flatten(1).float(), mask.flatten(1).bool()
    nan = torch.full_like(p, float("nan"))

    ok = m.sum(1, keepdim=True) >= 2

    def align(x: Tensor) -> Tensor:
        xm = torch.where(m, x, nan)  # a sample without valid pixels: shift 0 and scale 1, not NaN (its gradient too)
        shift = torch.where(ok, torch.nanmedian(xm, dim=1, keepdim=True).values, 0.0)
        scale = torch.where(ok, torch.nanmean((xm - shift).abs(), dim=1, keepdim=True), 1.0) + 1e-6
        return (x - shift) / scale

    delta = torch.where(m & ok, align(p) - align(g), torch.zeros_like(p))
    if tau > 0:
        w = torch.sigmoid(-(delta.detach() ** 2 - tau) / (0.2 * tau)).clamp_min(0.1)
        delta = w * delta
    return delta.abs().sum() / (m & ok).sum().clamp_min(1)


def pixel_of(xyz: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel coordinates ``(u, v)`` of canonical positions ``[..., 3]`` (``u = W/2 x + (W-1)/2``)."""
    return (width / 2) * xyz[..., 0] + (width - 1) / 2, -(height / 2) * xyz[..., 2] + (height - 1) / 2


def sample_at(image: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Nearest-pixel values of ``image [B, C, H, W]`` at pixel coordinates ``u, v [B, N]`` -> ``[B, N, C]``."""
    h, w = image.shape[-2:]
    grid = torch.stack([(u + 0.5) / w * 2 - 1, (v + 0.5) / h * 2 - 1], dim=-1).unsqueeze(1)
    out = F.grid_sample(image, grid.to(image.dtype), mode="nearest", padding_mode="border", align_corners=False)
    return out.squeeze(2).transpose(1, 2)


def trajectory_targets(gaussians: Gaussians, tracks: Tensor, times: Tensor,
                       disp_range: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted and true canonical displacements of every Gaussian at every clip time, ``[B, N, V, 3]`` each.

    ``tracks [B, 2, V, 3, H, W]``: for key frames 0 and 1 (pair times 0 and 1), the (u, v, 1/z) of each pixel's
    surface point at every frame time ``times [V]``. ``disp_range [B, 2]``: ``hi - lo`` of each key frame's
    disparity normalisation (1/m per unit ŷ). The first half of the Gaussians belongs to key frame 0 (``t0 = 0``),
    the second half to key frame 1. Ground truth is read at the pixel of each Gaussian's static position.
    """
    b, n = gaussians.t0.shape
    h, w = tracks.shape[-2:]
    half = n // 2
    tau = times.view(1, 1, -1) - gaussians.t0.unsqueeze(-1)  # [B, N, V]
    pred = gaussians.velocity.unsqueeze(2) * tau.unsqueeze(-1)  # [B, N, V, 3]
    targets = []
    for k in (0, 1):
        xyz = gaussians.xyz[:, k * half:(k + 1) * half].detach()
        u, v = pixel_of(xyz, h, w)
        track = tracks[:, k].flatten(1, 2)  # [B, V*3, H, W]
        at = sample_at(track, u, v).unflatten(-1, (tracks.shape[2], 3))  # [B, half, V, 3]
        key = at[:, :, -1 if k else 0].unsqueeze(2)
        d = at - key
        targets.append(torch.stack([d[..., 0] / (w / 2), d[..., 2] / disp_range[:, k].view(b, 1, 1),
                                    -d[..., 1] / (h / 2)], dim=-1))  # canonical (x, ŷ, z)
    return pred, torch.cat(targets, dim=1)


def trajectory_loss(pred: Tensor, target: Tensor, depth_weight: Tensor, norm: str = "l1") -> Tensor:
    """L1 (or squared, ``norm="l2"``) error in canonical units between predicted and true displacements; the ŷ
    component is weighted per sample by ``depth_weight [B]`` (0 where the input had no depth, so the disparity scale
    is unknown). L1 pulls ambiguous Gaussians to the median motion (often zero), L2 to the mean."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown trajectory norm {norm!r}")
    err = (pred - target).abs() if norm == "l1" else (pred - target).square()
    planar = err[..., 0:3:2].sum(-1)
    depth = err[..., 1] * depth_weight.view(-1, 1, 1)
    return (planar + depth).mean()
