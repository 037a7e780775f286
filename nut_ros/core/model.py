"""The StreamSplat-style model: per-frame ``encode`` (cached) and pairwise ``decode`` into dynamic Gaussians.

``encode`` runs once per frame and returns a :class:`FrameCache` of tensors only (so it can be an ONNX graph
output); ``decode(prev, cur)`` predicts velocities and temporal opacity for both frames' Gaussians.

Depth normalisation is the caller's job: ``disp`` is the normalised disparity in [0, 1] (1 = near), plus, for
two-channel configs, a validity mask (all zeros for RGB-only input).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from nut_ros.core.condition import build_condition
from nut_ros.core.config import ModelConfig, get_config
from nut_ros.core.decoder import Decoder, DynamicHead
from nut_ros.core.encoder import GaussianUpsampler, StaticPredictor
from nut_ros.core.gaussians import Gaussians
from nut_ros.core.motion_head import MotionHead

__all__ = ["FrameCache", "NutModel", "build_model", "static_gaussians"]


class FrameCache(NamedTuple):
    """Everything ``decode`` needs from one frame (batch first)."""

    tokens: Tensor  # [B, L, D]  encoder tokens
    features: Tensor  # [B, N, Cf] static upsampled features
    condition: Tensor  # [B, Nc, Cc] condition tokens of this frame
    xyz: Tensor  # [B, N, 3]
    rgb: Tensor  # [B, N, 3]
    opacity: Tensor  # [B, N, 1]
    scale: Tensor  # [B, N, 2]
    motion: Tensor  # [B, C, h, w] the learned motion head's per-frame features ([B, 1, 1, 1] zeros without one)


def static_gaussians(cache: FrameCache, t0: float = 0.0, velocity: Tensor | None = None,
                     gamma: Tensor | None = None) -> Gaussians:
    """Gaussians of one frame anchored at ``t0`` (zero motion and no fading unless given)."""
    b, n, _ = cache.xyz.shape
    velocity = torch.zeros_like(cache.xyz) if velocity is None else velocity
    gamma = cache.xyz.new_zeros(b, n, 2) if gamma is None else gamma
    t0_ = cache.xyz.new_full((b, n), t0)
    return Gaussians(cache.xyz, velocity, cache.rgb, cache.opacity, cache.scale, gamma, t0_)


class NutModel(nn.Module):
    """Static encoder (``gs_predictor``) + conditional decoder + dynamic upsampler + dynamic heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.gs_predictor = StaticPredictor(config)
        self.condition_encoder = build_condition(config)
        self.decoder = Decoder(config)
        self.gaussian_upsampler = GaussianUpsampler(config)
        self.gs_dynamic_predictor = DynamicHead(config.feature_dim)
        self.encoder_proj = nn.Linear(config.feature_dim, config.feature_dim, bias=False)
        self.motion_head = MotionHead(config) if config.motion_prior == "learned" else None
        self.learned_motion = self.motion_head is not None  # False: decode leaves the head out (classical prior)
        self._static_frozen = False

    # -- inference API ------------------------------------------------------------------------------------
    def encode(self, rgb: Tensor, disp: Tensor) -> FrameCache:
        """``rgb [B,3,H,W]`` in [0,1], ``disp [B,Cd,H,W]`` -> per-frame cache."""
        tokens, features, attrs = self.gs_predictor(rgb, disp)
        cond_input = rgb if self.config.condition == "dinov2" else tokens
        # the learned flow's per-frame features, when decode uses them (zeros of one element otherwise)
        motion = self.motion_head.features(rgb) if self.learned_motion else rgb.new_zeros(rgb.shape[0], 1, 1, 1)
        return FrameCache(tokens, features, self.condition_encoder(cond_input), *attrs, motion)

    def encode_static(self, rgb: Tensor, disp: Tensor) -> Gaussians:
        """Static Gaussians of a single frame (velocity 0, γ 0, t0 0): stage-1 training and a stream's first frame."""
        return static_gaussians(self.encode(rgb, disp))

    def decode(self, prev: FrameCache, cur: FrameCache) -> Gaussians:
        """``2N`` dynamic Gaussians of the pair: ``prev``'s first (t0 = 0), then ``cur``'s (t0 = 1)."""
        b = prev.tokens.shape[0]
        d0, d1 = self.decoder(prev.tokens, cur.tokens, prev.condition, cur.condition)
        dynamic = self.gaussian_upsampler(torch.cat([d0, d1], dim=0))
        static = self.encoder_proj(torch.cat([prev.features, cur.features], dim=0))
        velocity, gamma = self.gs_dynamic_predictor(torch.cat([static, dynamic], dim=-1))
        if self.learned_motion:  # the head's velocity is a residual around the learned flow
            velocity = velocity + torch.cat(self.motion_head(prev.motion, cur.motion, prev.xyz[..., 1],
                                                             cur.xyz[..., 1]).split(prev.xyz.shape[1], dim=1))
        return Gaussians.cat(
            static_gaussians(prev, 0.0, velocity[:b], gamma[:b]),
            static_gaussians(cur, 1.0, velocity[b:], gamma[b:]),
        )

    def forward(self, frames: Tensor, disps: Tensor) -> Gaussians:
        """``frames [B,2,3,H,W]``, ``disps [B,2,Cd,H,W]`` -> the pair's Gaussians (both frames encoded at once)."""
        b = frames.shape[0]
        cache = self.encode(frames.flatten(0, 1), disps.flatten(0, 1))
        pair = [FrameCache(*(t.unflatten(0, (b, 2))[:, i] for t in cache)) for i in (0, 1)]
        return self.decode(*pair)

    # -- training helpers ---------------------------------------------------------------------------------
    def freeze_static(self) -> "NutModel":
        """Stage 2: freeze the static encoder and keep it in eval mode (deterministic static positions)."""
        self._static_frozen = True
        self.gs_predictor.requires_grad_(False)
        self.gs_predictor.eval()
        return self

    def train(self, mode: bool = True) -> "NutModel":
        super().train(mode)
        if self._static_frozen:
            self.gs_predictor.eval()
        return self


def build_model(name: str, **overrides) -> NutModel:
    """Build a registered configuration (see :mod:`nut_ros.core.config`) with optional field overrides."""
    return NutModel(get_config(name, **overrides))
