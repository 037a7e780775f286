"""Static (per-frame) encoder: RGB-D ViT -> hierarchical PixelShuffle upsampler -> pixel-aligned Gaussian heads.

Module and attribute names mirror the reference (``GSPredictor``: ``encoder.transformer_encoder``,
``gaussian_upsampler``, ``predictor``) so its state dicts load strictly.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nut_ros.core.config import ModelConfig
from nut_ros.core.layers import PSUpsamplerBlock, RMSNorm, SinusoidalPositionalEncoding, Transformer, num_heads
from nut_ros.core.pixel_skip import PixelSkip, anchored_rgb
from nut_ros.core.truncnorm import truncnorm_mean, truncnorm_sample


class PatchViT(nn.Module):
    """Patch-embedded ViT: ``[B, C, H, W] -> [B, h*w, D]`` (raster token order, sinusoidal PE, RMSNorm in/out)."""

    def __init__(self, in_channels: int, dim: int, depth: int, patch: int, num_tokens: int, window: int | None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch, bias=False)
        self.positional_encoding = SinusoidalPositionalEncoding(num_tokens, dim)
        self.layernorm1 = RMSNorm(dim)
        self.transformer = Transformer(dim, depth, num_heads(dim), window)
        self.layernorm2 = RMSNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.positional_encoding(self.conv(x).flatten(2).transpose(1, 2))
        return self.layernorm2(self.transformer(self.layernorm1(x)))


class GSEncoder(nn.Module):
    """Holds the ViT under the reference's attribute name."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.transformer_encoder = PatchViT(3 + cfg.depth_channels, cfg.width, cfg.encoder_layers, cfg.patch_size,
                                            cfg.num_tokens, cfg.encoder_window)

    def forward(self, x: Tensor) -> Tensor:
        return self.transformer_encoder(x)


class GaussianUpsampler(nn.Module):
    """Token grid -> Gaussian grid: per stage a 2x PixelShuffle then windowed attention blocks; final RMSNorm.

    A stage without attention blocks whose width does not change starts by copying each token's features to its
    four children (so a model grown by such a stage starts as the model it was grown from).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.grid = cfg.token_grid
        self.stages = len(cfg.upsampler_dims)
        dims = (cfg.width, *cfg.upsampler_dims)
        for i, layers in enumerate(cfg.stage_layers):
            shuffle = PSUpsamplerBlock(dims[i], dims[i + 1])
            if layers == 0 and dims[i] == dims[i + 1]:
                shuffle.init_copy()
            self.add_module(f"upsampler_{i}", shuffle)
            self.add_module(f"attention_{i}", Transformer(dims[i + 1], layers, num_heads(dims[i + 1]), cfg.window))
        self.layernorm2 = RMSNorm(dims[-1])

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.grid
        for i in range(self.stages):
            x = getattr(self, f"upsampler_{i}")(x, h, w)
            h, w = 2 * h, 2 * w
            x = getattr(self, f"attention_{i}")(x)
        return self.layernorm2(x)


class StaticAttributes(NamedTuple):
    """Per-frame Gaussian attributes in canonical space, ``[B, N, k]`` each."""

    xyz: Tensor
    rgb: Tensor
    opacity: Tensor
    scale: Tensor


class GaussianHead(nn.Module):
    """Pixel-aligned linear heads (reference ``GSPMDecoder``).

    Position: ``(x_map + o0/Wg, 0.5 + 0.5 o1, z_map + o2/Hg)`` with the offset ``o`` from either the plain
    ``gs_layer.xyz_static`` head (``tanh``) or the truncated-normal heads ``mix_layer.xyz_static_{mean,scale}``
    (mean ``0.999 tanh`` in eval, a reparameterised sample in training).
    """

    def __init__(self, dim: int, grid: tuple[int, int], xyz_head: str):
        super().__init__()
        gh, gw = grid
        self.grid = grid
        self.sampled = xyz_head == "sampled"
        self.gs_layer = nn.ModuleDict({"rgb": nn.Linear(dim, 3), "opacity": nn.Linear(dim, 1),
                                       "scale": nn.Linear(dim, 2)})
        if self.sampled:
            self.mix_layer = nn.ModuleDict({"xyz_static_mean": nn.Linear(dim, 3),
                                            "xyz_static_scale": nn.Linear(dim, 3)})
            for layer in self.mix_layer.values():
                nn.init.xavier_normal_(layer.weight, gain=0.01)
        else:
            self.gs_layer["xyz_static"] = nn.Linear(dim, 3)
        xs = torch.linspace(-1, 1, gw + 1)
        zs = torch.linspace(1, -1, gh + 1)
        x_mid, z_mid = (xs[1:] + xs[:-1]) / 2, (zs[1:] + zs[:-1]) / 2
        self.register_buffer("x_map", x_mid.repeat(gh))
        self.register_buffer("z_map", z_mid.repeat_interleave(gw))

    def offsets(self, f: Tensor) -> Tensor:
        if not self.sampled:
            return torch.tanh(self.gs_layer["xyz_static"](f))
        raw = self.mix_layer["xyz_static_mean"](f)
        if self.training:
            return truncnorm_sample(raw, self.mix_layer["xyz_static_scale"](f))
        return truncnorm_mean(raw)

    def forward(self, f: Tensor, anchor_rgb: Tensor | None = None) -> StaticAttributes:
        """``f [B, N, dim]``; with ``anchor_rgb [B, N, 3]`` the colour is a residual around it (pixel skip)."""
        gh, gw = self.grid
        o = self.offsets(f)
        xyz = torch.stack([self.x_map + o[..., 0] / gw, 0.5 + 0.5 * o[..., 1], self.z_map + o[..., 2] / gh], dim=-1)
        rgb_raw = self.gs_layer["rgb"](f)
        rgb = torch.sigmoid(rgb_raw) if anchor_rgb is None else anchored_rgb(anchor_rgb, rgb_raw)
        opacity = 0.05 + 0.95 * torch.sigmoid(self.gs_layer["opacity"](f))
        scale = 0.1 * F.softplus(self.gs_layer["scale"](f))
        return StaticAttributes(xyz, rgb, opacity, scale)


class StaticPredictor(nn.Module):
    """Per-frame static model (reference ``GSPredictor``): returns encoder tokens, features and attributes."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = GSEncoder(cfg)
        self.gaussian_upsampler = GaussianUpsampler(cfg)
        self.predictor = GaussianHead(cfg.feature_dim, cfg.gaussian_grid, cfg.static_xyz_head)
        self.pixel_skip = None
        if cfg.pixel_skip:
            factor = cfg.image_size[0] // cfg.gaussian_grid[0]
            self.pixel_skip = PixelSkip(3 + cfg.depth_channels, factor, cfg.feature_dim)
            # start from the anchor colour and nearly opaque splats
            nn.init.normal_(self.predictor.gs_layer["rgb"].weight, std=1e-3)
            nn.init.zeros_(self.predictor.gs_layer["rgb"].bias)
            nn.init.constant_(self.predictor.gs_layer["opacity"].bias, 4.0)

    def forward(self, rgb: Tensor, disp: Tensor) -> tuple[Tensor, Tensor, StaticAttributes]:
        x = torch.cat([rgb, disp], dim=1)
        tokens = self.encoder(x)
        features = self.gaussian_upsampler(tokens)
        if self.pixel_skip is None:
            return tokens, features, self.predictor(features)
        skip, mean_rgb = self.pixel_skip(x)
        features = features + skip
        return tokens, features, self.predictor(features, mean_rgb)
