"""Synthetic rasterizer inputs shared by the tests and the benchmark tools (reference world frame, after the depth
map). Tests import ``bench.scenes``; the tools in this folder, run as scripts, import ``scenes``."""
from __future__ import annotations

import math

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


def grid_scene(n: int, height: int = 288, width: int = 512, seed: int = 0, device="cuda",
               random_rotations: bool = False) -> RasterInputs:
    """``n`` Gaussians as jittered pixel-aligned layers (one per 2x2 pixels) in the reference world frame."""
    g = torch.Generator().manual_seed(seed)
    gh, gw = height // 2, width // 2
    per_layer = gh * gw
    layers = math.ceil(n / per_layer)
    j, i = torch.meshgrid(torch.arange(gw), torch.arange(gh), indexing="xy")
    x = ((2 * j + 0.5) - (width - 1) / 2) / (width / 2)
    z = -((2 * i + 0.5) - (height - 1) / 2) / (height / 2)
    xz = torch.stack([x.reshape(-1), z.reshape(-1)], -1).repeat(layers, 1)[:n]
    xz = xz + (torch.rand(n, 2, generator=g) - 0.5) * torch.tensor([2 / width, 2 / height])
    depth = 0.1 + 4.9 * torch.rand(n, generator=g)
    means = torch.stack([xz[:, 0], depth, xz[:, 1]], -1)
    sx = (0.5 + torch.rand(n, generator=g)) / gw
    sz = (0.5 + torch.rand(n, generator=g)) / gh
    scales = torch.stack([sx, (sx + sz) / 2, sz], -1)
    if random_rotations:
        rotations = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    else:
        rotations = torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone()
    opacities = 0.05 + 0.94 * torch.rand(n, 1, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return RasterInputs(*(t[None].contiguous().to(device) for t in (means, scales, rotations, opacities, colors)))


def realistic_scene(height: int, width: int, gaussians: int, device="cuda") -> RasterInputs:
    """``gaussians`` splats in pixel-aligned layers of one per 2x2 pixels with the reference oracle scenes' statistics
    (:func:`pixel_aligned_scene`); what a trained model renders, unlike a random-init one."""
    gw, gh = width // 2, height // 2
    layers = gaussians // (gw * gh)
    assert layers * gw * gh == gaussians, f"{gaussians} Gaussians are not whole {gw}x{gh} layers"
    return RasterInputs(*(t.to(device) for t in pixel_aligned_scene(gw, gh, layers=layers)))
