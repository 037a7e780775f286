"""Condition encoders for the decoder's cross-attention (one set of tokens per frame, cached with the frame).

* :class:`DinoV2Condition` — the reference's frozen DINOv2 ViT-B/14 with 4 registers, implemented here. Its
  weights come from a user-supplied file with the official ``dinov2_vitb14_reg4`` key names; they are frozen and
  kept out of the model's state dict (the reference strips them from its checkpoints too).
* :class:`EncoderTokenCondition` — the light option of our configs: the frame's own encoder tokens, average-pooled
  on the token grid. The decoder's learned ``condition_proj`` / PE / RMSNorm project them; nothing else runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nut_ros.core.config import DinoConfig, ModelConfig


class DinoAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class DinoMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class DinoBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT with register tokens; ``forward`` returns the final-norm patch tokens ``[B, h*w, D]``."""

    def __init__(self, cfg: DinoConfig):
        super().__init__()
        d, g = cfg.embed_dim, cfg.pretrain_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.num_registers = cfg.num_registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, d))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_registers, d))
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.blocks = nn.ModuleList(DinoBlock(d, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def _pos_embed(self, h: int, w: int) -> Tensor:
        """Patch position embeddings resized (bicubic, antialiased) to an ``h x w`` patch grid."""
        grid = self.pos_embed[:, 1:]
        m = math.isqrt(grid.shape[1])
        if (h, w) == (m, m):
            return grid
        grid = grid.float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        return grid.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(self.pos_embed.dtype)

    def forward(self, rgb: Tensor) -> Tensor:
        b, _, hh, ww = rgb.shape
        h, w = hh // self.patch_size, ww // self.patch_size
        x = self.patch_embed(rgb) + self._pos_embed(h, w)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, self.register_tokens.expand(b, -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_registers:]


class DinoV2Condition(nn.Module):
    """Frozen DINOv2 on RGB bilinearly resized to ``input_size``, without ImageNet normalisation (as the reference).

    The backbone is stored under ``model`` but excluded from :meth:`state_dict` and from strict loading of the
    surrounding model; its weights (``DinoConfig.weights``) are loaded by
    :func:`nut_ros.core.checkpoint.load_dinov2_weights` (``load_checkpoint`` calls it).
    """

    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.input_size = cfg.input_size
        self.model = DinoV2(cfg).requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_own_keys)
        self.register_load_state_dict_pre_hook(_keep_own_weights)

    def train(self, mode: bool = True) -> "DinoV2Condition":
        super().train(mode)
        self.model.eval()  # frozen backbone: always in eval mode
        return self

    def forward(self, rgb: Tensor) -> Tensor:
        x = F.interpolate(rgb, size=self.input_size, mode="bilinear", align_corners=False)
        return self.model(x)


def _drop_own_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _keep_own_weights(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Strict loads of the surrounding model keep the backbone's current weights unless the file has them."""
    for key, value in module.model.state_dict().items():
        state_dict.setdefault(f"{prefix}model.{key}", value)


class EncoderTokenCondition(nn.Module):
    """Encoder tokens ``[B, h*w, D]`` average-pooled by ``pool`` on the token grid: ``[B, h*w/pool², D]``."""

    def __init__(self, grid: tuple[int, int], pool: int):
        super().__init__()
        self.grid = grid
        self.pool = pool

    def forward(self, tokens: Tensor) -> Tensor:
        b, _, d = tokens.shape
        x = tokens.transpose(1, 2).reshape(b, d, *self.grid)
        return F.avg_pool2d(x, self.pool).flatten(2).transpose(1, 2)


def build_condition(cfg: ModelConfig) -> nn.Module:
    if cfg.condition == "dinov2":
        return DinoV2Condition(cfg.dino)
    return EncoderTokenCondition(cfg.token_grid, cfg.condition_pool)
