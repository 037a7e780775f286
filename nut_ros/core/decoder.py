"""Pairwise deformation decoder: joint transformer over both frames' tokens with cross-attention to the other
frame's condition tokens, and the dynamic heads (velocity, temporal opacity).

Attribute names mirror the reference (``decoder.transformer_decoder``, ``gs_dynamic_predictor``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nut_ros.core.config import ModelConfig
from nut_ros.core.layers import (ConditionalResAttBlock, HeadMLP, RMSNorm, SinusoidalPositionalEncoding, num_heads,
                                 sinusoidal_table_2d)
from nut_ros.core.truncnorm import truncnorm_mean, truncnorm_sample

#: velocity bound per unit pair time on (x, ŷ, z)
VELOCITY_SCALE = (0.5, 0.1, 0.5)


class ConditionalTransformer(nn.Module):
    """A stack of ``ConditionalResAttBlock``: self-attention over ``x``, cross-attention to ``condition``."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ConditionalResAttBlock(dim, heads) for _ in range(depth))

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, condition)
        return x


class TransformerConditionalDecoder(nn.Module):
    """``(E0, E1, C0, C1) -> (D0, D1)``: frame-0 tokens cross-attend to ``C1`` and frame-1 tokens to ``C0``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.width
        # learned, initialised to a 2-D sine table of the token grid (the same for both frames): where a token sits
        # is readable from the first step, which is what matching content across the two frames needs
        self.positional_embedding = nn.Parameter(sinusoidal_table_2d(*cfg.token_grid, dim).repeat(2, 1)[None])
        self.cls_embedding = nn.Parameter(torch.empty(1, 2, dim))
        nn.init.trunc_normal_(self.cls_embedding, std=0.02)
        self.condition_proj = nn.Linear(cfg.condition_dim, dim, bias=False)
        self.positional_encoding = SinusoidalPositionalEncoding(cfg.condition_tokens, dim)
        self.condition_ln = RMSNorm(dim)
        self.layernorm1 = RMSNorm(dim)
        self.transformer = ConditionalTransformer(dim, cfg.decoder_layers, num_heads(dim))
        self.layernorm2 = RMSNorm(dim)

    def forward(self, e0: Tensor, e1: Tensor, c0: Tensor, c1: Tensor) -> tuple[Tensor, Tensor]:
        """``e0, e1 [B, L, D]`` tokens, ``c0, c1 [B, Nc, Cc]`` conditions -> ``(D0, D1)`` each ``[B, L, D]``."""
        n = e0.shape[1]
        frame = self.cls_embedding.repeat_interleave(n, dim=1)
        x = torch.cat([e0, e1], dim=1) + self.positional_embedding + frame
        # Rows (b, f): frame f attends to the other frame's condition (reference order: C1 first).
        cond = torch.stack([c1, c0], dim=1).flatten(0, 1)  # [2B, Nc, Cc]
        cond = self.condition_ln(self.positional_encoding(self.condition_proj(cond)))
        x = self.layernorm2(self.transformer(self.layernorm1(x), cond))
        return x[:, :n], x[:, n:]


class Decoder(nn.Module):
    """Holds the conditional transformer under the reference's attribute name."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.transformer_decoder = TransformerConditionalDecoder(cfg)

    def forward(self, e0: Tensor, e1: Tensor, c0: Tensor, c1: Tensor) -> tuple[Tensor, Tensor]:
        return self.transformer_decoder(e0, e1, c0, c1)


class DynamicHead(nn.Module):
    """Velocity ``0.999 tanh(MLP(F)) * (0.5, 0.1, 0.5)`` (truncated-normal sample in training) and temporal opacity
    ``(γ0, γ1) = (ReLU, sigmoid)(MLP(F))`` from fused features ``F = [encoder_proj(Us), Ud]`` (reference
    ``GSDynamicDecoder``)."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.register_buffer("dynamic_scalar", torch.tensor(VELOCITY_SCALE))
        self.gs_layer = nn.ModuleDict({
            "xyz_dynamic": HeadMLP(2 * feature_dim, feature_dim, 3),
            "xyz_dynamic_scale": nn.Linear(2 * feature_dim, 3, bias=False),
            "opacity_dynamic": HeadMLP(2 * feature_dim, feature_dim, 2),
        })
        nn.init.xavier_normal_(self.gs_layer["xyz_dynamic_scale"].weight, gain=0.01)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """``f [..., 2·Cf]`` -> ``(velocity [..., 3], gamma [..., 2])``."""
        raw = self.gs_layer["xyz_dynamic"](f)
        if self.training:
            o = truncnorm_sample(raw, self.gs_layer["xyz_dynamic_scale"](f))
        else:
            o = truncnorm_mean(raw)
        h = self.gs_layer["opacity_dynamic"](f)
        gamma = torch.stack([F.relu(h[..., 0]), torch.sigmoid(h[..., 1])], dim=-1)
        return o * self.dynamic_scalar, gamma
