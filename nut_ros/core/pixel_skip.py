"""Input-anchored skip for pixel-aligned Gaussians (our configs only; the reference has none).

Each Gaussian covers a ``p x p`` block of the input image (``p`` = 2 in every config). The skip hands that block to
the Gaussian's features (a linear projection added after the upsampler) and its mean colour to the colour head, which
predicts a residual around it in logit space. An untrained model therefore already renders a ``p``-box-filtered
copy of its input, and training spends its steps on what the ViT must add: sharpness, depth and motion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PixelSkip(nn.Module):
    """``x [B, C, H, W] -> (features [B, N, dim], block-mean RGB [B, N, 3])`` with ``N = (H/p)·(W/p)``, raster order."""

    def __init__(self, in_channels: int, factor: int, dim: int):
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(in_channels * factor * factor, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, p2 = x.shape[0], self.factor * self.factor
        blocks = F.pixel_unshuffle(x, self.factor)  # [B, C·p², H/p, W/p], channel-major: c·p² + i·p + j
        mean_rgb = blocks[:, : 3 * p2].reshape(b, 3, p2, -1).mean(dim=2).transpose(1, 2)
        return self.proj(blocks.flatten(2).transpose(1, 2)), mean_rgb


def anchored_rgb(anchor: Tensor, residual: Tensor, eps: float = 1e-3) -> Tensor:
    """``sigmoid(logit(anchor) + residual)``: equals the anchor colour when the residual is 0."""
    return torch.sigmoid(torch.logit(anchor.clamp(eps, 1 - eps)) + residual)
