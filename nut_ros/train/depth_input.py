"""Depth input of the model during training: simulated sensor depth -> (normalised disparity, validity mask).

Each sample either drops depth entirely (RGB-only mode: both channels 0) or gets a sensor-like depth map (holes,
a maximum range, multiplicative noise), normalised exactly as the streaming pipeline does
(:func:`nut_ros.pipeline.depth.normalize_inverse_depth`: per-frame min-max of ``1/z`` over the valid pixels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.geometry import DepthNormalization
from nut_ros.pipeline.depth import model_depth_input, normalize_inverse_depth


@dataclass
class DepthInput:
    """Model depth channels and the normalisation that maps disparity to the canonical slot ŷ."""

    channels: Tensor  # [B, 2, H, W] (normalised disparity · valid, valid)
    lo: Tensor  # [B] disparity (1/m) at ŷ = 0
    hi: Tensor  # [B] disparity (1/m) at ŷ = 1
    present: Tensor  # [B] bool, False for RGB-only samples

    def normalise(self, disparity: Tensor) -> Tensor:
        """``(1/z - lo) / (hi - lo)`` for ``disparity [B, ...]``."""
        shape = (-1,) + (1,) * (disparity.dim() - 1)
        return DepthNormalization(self.lo.view(shape), self.hi.view(shape), metric=True).disparity_to_yhat(disparity)


def simulate_depth_input(depth: Tensor, drop_prob: float, generator: torch.Generator,
                         present: Tensor | None = None) -> DepthInput:
    """Sensor-like depth input for true depth ``[B, 1, H, W]`` (metres).

    ``present`` (``[B]`` bool) fixes which samples have depth; otherwise each is dropped with ``drop_prob``.
    Holes come from a thresholded low-resolution noise field (0-20 % of the frame); half of the samples also lose
    everything beyond a random maximum range of 4-12 m; the rest gets 1 % multiplicative noise.
    """
    b, _, h, w = depth.shape
    dev = depth.device

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=dev)

    if present is None:
        present = rand(b) >= drop_prob
    field = F.interpolate(rand(b, 1, max(h // 16, 1), max(w // 16, 1)), size=(h, w), mode="bilinear",
                          align_corners=False)
    valid = field >= (rand(b, 1, 1, 1) * 0.2)
    max_range = torch.where(rand(b, 1, 1, 1) < 0.5, 4.0 + 8.0 * rand(b, 1, 1, 1), torch.full((b, 1, 1, 1), 1e9, device=dev))
    valid = valid & (depth < max_range)
    present = present & (valid.flatten(1).float().mean(1) >= 0.01)  # too few valid pixels: RGB-only
    valid = valid & present.view(b, 1, 1, 1)
    noisy = depth * (1 + 0.01 * torch.randn(depth.shape, generator=generator, device=dev))
    norm, lo, hi = normalize_inverse_depth(noisy, valid)
    # RGB-only samples: the target normalisation comes from the true depth (only scale-invariant terms use it)
    _, lo_true, hi_true = normalize_inverse_depth(depth, torch.ones_like(valid))
    lo, hi = torch.where(present, lo, lo_true), torch.where(present, hi, hi_true)
    return DepthInput(model_depth_input(norm, valid, 2), lo, hi, present)
