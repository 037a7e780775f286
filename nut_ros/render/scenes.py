"""Synthetic rasterizer inputs for tests and benchmarks (reference world frame, after the depth map)."""
from __future__ import annotations

import torch

from nut_ros.core.gaussians import RasterInputs


def pixel_aligned_scene(grid_w: int, grid_h: int, layers: int = 2, batch: int = 1, seed: int = 0,
                        random_rotations: bool = False) -> RasterInputs:
    """``layers`` jittered grids of ``grid_w`` x ``grid_h`` Gaussians, one per grid cell, like a model's output.

    Scales are log-normal around 0.8 grid spacings (90th percentile ~2.5 spacings), opacities uniform in
    (0.05, 1), depths uniform in [0.2, 5] and colours uniform; the statistics of the reference's pixel-aligned
    oracle scenes.
    """
    g = torch.Generator().manual_seed(seed)
    n = layers * grid_w * grid_h
    shape = (batch, n)
    jx, jz = (torch.arange(grid_w) + 0.5) / grid_w * 2 - 1, 1 - (torch.arange(grid_h) + 0.5) / grid_h * 2
    zz, xx = torch.meshgrid(jz, jx, indexing="ij")
    x = xx.reshape(-1).repeat(layers) + (torch.rand(shape, generator=g) - 0.5) / grid_w
    z = zz.reshape(-1).repeat(layers) + (torch.rand(shape, generator=g) - 0.5) / grid_h
    y = 0.2 + 4.8 * torch.rand(shape, generator=g)
    spacing = 2.0 / grid_w
    s = spacing * 0.8 * torch.exp(0.87 * torch.randn(batch, n, 2, generator=g))
    scales = torch.stack([s[..., 0], s.mean(-1), s[..., 1]], dim=-1)
    if random_rotations:
        rotations = torch.nn.functional.normalize(torch.randn(batch, n, 4, generator=g), dim=-1)
    else:
        rotations = torch.zeros(batch, n, 4)
        rotations[..., 0] = 1.0
    opacities = 0.05 + 0.95 * torch.rand(batch, n, 1, generator=g)
    colors = torch.rand(batch, n, 3, generator=g)
    return RasterInputs(torch.stack([x, y, z], dim=-1), scales, rotations, opacities, colors)
