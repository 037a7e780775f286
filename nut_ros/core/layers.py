"""Transformer building blocks shared by the encoder, the decoder and the condition encoders.

Attribute names follow the reference implementation so that its state dicts load strictly.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def num_heads(dim: int) -> int:
    """Heads of a block of width ``dim``: one per 64 channels (at least one)."""
    return max(1, dim // 64)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight only, computed in float32 (``F.rms_norm``: one fused kernel on GPU)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        if torch.onnx.is_in_onnx_export():  # aten::rms_norm has no ONNX symbol below opset 23: spell it out
            x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        else:
            x32 = F.rms_norm(x32, self.weight.shape, self.weight.float(), self.eps)
        return x32.type_as(x)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with one packed q/k/v projection and SDPA.

    Self-attention projects the input once and splits the result; cross-attention projects the query from ``x``
    with the first row-chunk of the packed weight and the key/value from ``context`` with the other two at once.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, f"width {dim} not divisible by {heads} heads"
        self.heads = heads
        self.packed_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:  # [B, L, C] -> [B, h, L, C/h]
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if context is None:
            q, k, v = self.packed_proj(x).chunk(3, dim=-1)
        else:
            c = x.shape[-1]
            w, bias = self.packed_proj.weight, self.packed_proj.bias
            q = F.linear(x, w[:c], bias[:c])
            k, v = F.linear(context, w[c:], bias[c:]).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


def silu_fresh(x: Tensor) -> Tensor:
    """SiLU of a tensor the caller just made (a layer's output), in place when no gradient flows through it: at
    inference the 4x-wide hidden activations are the largest tensors of a frame, and on a CPU writing a second one
    costs more than the arithmetic (``tiny``'s encode + decode on the 2-core dev VM, medians of 5 runs alternated:
    113.5 ms in place against 124.2 out of place, bitwise equal; 2026-12-07)."""
    return F.silu(x, inplace=not x.requires_grad)


class FeedForward(nn.Module):
    """Bias-free ``Linear -> SiLU -> Linear`` with a 4x hidden width."""

    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(dim, ratio * dim, bias=False)
        self.c_proj = nn.Linear(ratio * dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(silu_fresh(self.c_fc(x)))


class ResAttBlock(nn.Module):
    """Pre-norm transformer block; optional attention over contiguous token windows.

    With ``window`` set, the token sequence is cut into consecutive runs of ``window`` tokens (raster order) that
    attend only among themselves; with ``shift`` the sequence is first rolled by ``window // 2`` (and rolled back
    after), a 1-D shifted window.
    """

    def __init__(self, dim: int, heads: int, window: int | None = None, shift: bool = False):
        super().__init__()
        self.window = window
        self.shift = (window // 2) if (window and shift) else 0
        self.attn = MultiHeadAttention(dim, heads)
        self.layernorm1 = RMSNorm(dim)
        self.mlp = FeedForward(dim)
        self.layernorm2 = RMSNorm(dim)

    def _attend(self, x: Tensor) -> Tensor:
        if not self.window or self.window >= x.shape[1]:
            return self.attn(x)
        b, n, c = x.shape
        assert n % self.window == 0, f"{n} tokens do not split into windows of {self.window}"
        if self.shift:
            x = torch.roll(x, self.shift, dims=1)
        y = self.attn(x.reshape(b * (n // self.window), self.window, c)).reshape(b, n, c)
        return torch.roll(y, -self.shift, dims=1) if self.shift else y

    def forward(self, x: Tensor) -> Tensor:
        x = x + self._attend(self.layernorm1(x))
        return x + self.mlp(self.layernorm2(x))


class Transformer(nn.Module):
    """A stack of :class:`ResAttBlock`; with a window, odd blocks use the shifted window."""

    def __init__(self, dim: int, depth: int, heads: int, window: int | None = None):
        super().__init__()
        self.resblocks = nn.ModuleList(ResAttBlock(dim, heads, window, shift=i % 2 == 1) for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ConditionalResAttBlock(nn.Module):
    """Joint self-attention over both frames, per-frame cross-attention to a condition, then an MLP.

    ``x`` is ``[B, F*L, C]`` (F frames of L tokens, frame-major); ``condition`` is ``[B*F, Lc, C]`` with row
    ``b*F + f`` the condition that frame ``f`` of sample ``b`` attends to.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads)
        self.self_attn_ln = RMSNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads)
        self.cross_attn_ln = RMSNorm(dim)
        self.mlp = FeedForward(dim)
        self.mlp_ln = RMSNorm(dim)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        b, n, c = x.shape
        x = x + self.self_attn(self.self_attn_ln(x))
        xf = x.reshape(condition.shape[0], -1, c)
        xf = xf + self.cross_attn(self.cross_attn_ln(xf), condition)
        x = xf.reshape(b, n, c)
        return x + self.mlp(self.mlp_ln(x))


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """``[length, dim]`` table: sin on even channels, cos on odd channels, base 10000."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def sinusoidal_table_2d(height: int, width: int, dim: int) -> Tensor:
    """``[height·width, dim]`` row-major table: half the channels encode the row, half the column (1-D tables)."""
    rows = sinusoidal_table(height, dim // 2).repeat_interleave(width, dim=0)
    cols = sinusoidal_table(width, dim - dim // 2).repeat(height, 1)
    return torch.cat([rows, cols], dim=1)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds a fixed 1-D sinusoidal encoding over the token index (persistent buffer ``pe``)."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(length, dim))

    def forward(self, x: Tensor) -> Tensor:
        # contiguous first: a transposed input (patch embeddings) would otherwise make the sum, and so the whole
        # residual stream after it, channel-major
        return x.contiguous() + self.pe[: x.shape[1]]


class HeadMLP(nn.Module):
    """``Linear -> SiLU -> Linear -> SiLU -> Linear`` (Linear layers at ``layers.{1,4,7}`` as in the reference)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(OrderedDict([
            ("1", nn.Linear(in_dim, hidden)), ("2", nn.SiLU()),
            ("4", nn.Linear(hidden, hidden)), ("5", nn.SiLU()),
            ("7", nn.Linear(hidden, out_dim)),
        ]))
        for m in self.layers:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = silu_fresh(x) if isinstance(layer, nn.SiLU) else layer(x)
        return x


class PSUpsamplerBlock(nn.Module):
    """``Linear(d_in -> 4 d_out)`` then a 2x PixelShuffle on the token grid: ``[B, h*w, d_in] -> [B, 4hw, d_out]``.

    The shuffle is done token-major (one permute, contiguous result): channel ``4c + 2i + j`` of token ``(y, x)``
    becomes channel ``c`` of token ``(2y + i, 2x + j)``, exactly ``F.pixel_shuffle`` on the ``[B, 4 d_out, h, w]`` map.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.residual_fc = nn.Linear(in_dim, 4 * out_dim)

    @torch.no_grad()
    def init_copy(self) -> None:
        """Every child token starts with its parent's features (needs ``in_dim == out_dim``)."""
        out_dim, in_dim = self.residual_fc.weight.shape[0] // 4, self.residual_fc.weight.shape[1]
        if in_dim != out_dim:
            raise ValueError(f"copy init needs equal widths, got {in_dim} -> {out_dim}")
        self.residual_fc.weight.copy_(torch.eye(in_dim).repeat_interleave(4, dim=0))
        self.residual_fc.bias.zero_()

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        b = x.shape[0]
        y = self.residual_fc(x).reshape(b, height, width, -1, 2, 2)
        return y.permute(0, 1, 4, 2, 5, 3).reshape(b, 4 * height * width, -1)
