"""Causal per-frame depth normalisation: metric depth -> the model's normalised-disparity input, and back.

The model's depth channel is inverse depth min-max normalised *per frame* to [0, 1] (1 = near), as in the
reference's training (STREAMSPLAT_SPEC §1.2; the reference inference normalises over the whole clip, which is not
causal). The affine map is kept per frame (as a ``nut_ros.core.geometry.DepthNormalization`` with
``disp_min = inv_far``, ``disp_max = inv_near``) so that a Gaussian's slot ``ŷ`` converts back to metres.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.geometry import DepthNormalization

#: a frame whose valid depth spans less than this fraction of its mean inverse depth is widened symmetrically
MIN_RELATIVE_SPAN = 0.1


def valid_depth(depth_m: Tensor, min_m: float = 0.05, max_m: float = 20.0) -> Tensor:
    """Boolean mask of usable depth: finite and within ``[min_m, max_m]`` metres (NaN, 0, inf, 65.535 m -> False)."""
    return torch.isfinite(depth_m) & (depth_m >= min_m) & (depth_m <= max_m)


def normalize_inverse_depth(depth_m: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame min-max normalised inverse depth of ``depth_m [B, 1, H, W]`` over its ``valid`` pixels.

    Returns ``(disp [B,1,H,W] in [0,1], 0 where invalid; inv_far [B]; inv_near [B])``, the range that maps ``disp``
    back. A frame without valid pixels gets ``inv_far = 0``, ``inv_near = 1e-12`` (a span, so the inverse map stays
    finite) and an all-zero ``disp``; a (nearly) constant-depth frame gets a range widened to ``MIN_RELATIVE_SPAN``
    of its inverse depth, so it maps to ŷ = 0.5 and back exactly.
    """
    inv = torch.where(valid, 1.0 / depth_m.clamp(min=1e-6), torch.zeros_like(depth_m))
    flat_inv, flat_valid = inv.flatten(1), valid.flatten(1)
    inv_near = torch.where(flat_valid, flat_inv, torch.zeros_like(flat_inv)).amax(1)
    inv_far = torch.where(flat_valid, flat_inv, torch.full_like(flat_inv, float("inf"))).amin(1)
    any_valid = flat_valid.any(1)
    inv_far = torch.where(any_valid, inv_far, torch.zeros_like(inv_far))
    mid, span = (inv_near + inv_far) / 2, inv_near - inv_far
    narrow = any_valid & (span < MIN_RELATIVE_SPAN * mid)
    half = MIN_RELATIVE_SPAN * mid / 2
    inv_far = torch.where(narrow, mid - half, inv_far)
    inv_near = torch.where(narrow, mid + half, inv_near)
    inv_near = torch.maximum(inv_near, inv_far + 1e-12)  # a frame without valid pixels: any nonzero span
    norm = DepthNormalization(inv_far.view(-1, 1, 1, 1), inv_near.view(-1, 1, 1, 1), metric=True)
    disp = norm.disparity_to_yhat(inv).clamp(0, 1)
    return torch.where(valid, disp, torch.zeros_like(disp)), inv_far, inv_near


def model_depth_input(disp: Tensor, valid: Tensor, channels: int) -> Tensor:
    """The model's depth input ``[B, channels, H, W]``: disparity (1 channel) or (disparity, validity mask) (2)."""
    if channels == 1:
        return disp
    if channels == 2:
        return torch.cat([disp, valid.to(disp.dtype)], dim=1)
    raise ValueError(f"depth_channels must be 1 or 2, got {channels}")


def resize_depth(depth_m: Tensor, height: int, width: int) -> Tensor:
    """Nearest-neighbour resize of ``depth_m [B, 1, H, W]`` (never blends across depth edges or invalid pixels)."""
    if depth_m.shape[-2:] == (height, width):
        return depth_m
    return F.interpolate(depth_m, size=(height, width), mode="nearest-exact")
