"""Learned correspondence motion (``ModelConfig.motion_prior = "learned"``): a RAFT-style flow head in the model.

Per frame (in ``encode``, cached): a small convolutional encoder turns the RGB image into matching features and
context features on the token grid (1/8 of the input). Per pair (in ``decode``): an all-pairs correlation volume
between the two frames' matching features, pooled into a pyramid, is read in a window around the current flow
estimate, and a convolutional GRU refines the flow over ``motion_iters`` steps (Teed & Deng, RAFT, ECCV 2020; our
own, much smaller implementation). Each step's flow is upsampled to the Gaussian grid by a learned convex
combination of its 3x3 coarse neighbours. Both directions run as one batch: frame 0's Gaussians take the forward
flow, frame 1's the backward one.

Velocities in canonical units over the unit pair time, as :mod:`nut_ros.core.motion_prior` defines them:
``(du / (W/2), dŷ, -dv / (H/2))`` for frame 0 and minus the backward flow's for frame 1. The depth component is
the change of the other frame's inverse-depth slot where the flow lands, ``ŷ_1(x + f) - ŷ_0(x)``, bounded like the
velocity head's. Every operation (convolutions, matmul, ``grid_sample``, padding and slicing) exports to ONNX
opset 17 and builds in TensorRT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nut_ros.core.config import ModelConfig

#: matching / context feature channels, GRU hidden channels, correlation radius (a (2r+1)² window per level)
MATCH_DIM, CONTEXT_DIM, HIDDEN_DIM, RADIUS = 96, 64, 96, 3
FEATURE_DIM = MATCH_DIM + HIDDEN_DIM + CONTEXT_DIM
#: largest per-step change of the inverse-depth slot from the flow (the velocity head's ŷ bound)
MAX_DEPTH_RATE = 0.1
#: the training loss weighs step i of n by GAMMA^(n-1-i) (RAFT's sequence loss)
GAMMA = 0.8


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GELU())


class MatchEncoder(nn.Module):
    """RGB ``[B,3,H,W]`` -> ``[B, FEATURE_DIM, H/8, W/8]`` (three stride-2 stages): matching features, the GRU's
    initial hidden state and the context, stacked on the channels."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(_conv(3, 32, 2), _conv(32, 32), _conv(32, 64, 2), _conv(64, 64),
                                    _conv(64, 96, 2), _conv(96, 96), nn.Conv2d(96, FEATURE_DIM, 1))

    def forward(self, rgb: Tensor) -> Tensor:
        return self.layers((rgb - 0.45) / 0.25)


def correlation_pyramid(f0: Tensor, f1: Tensor, levels: int) -> list[Tensor]:
    """All-pairs correlation of ``f0, f1 [B,C,h,w]`` as ``[B·h·w, 1, h_l, w_l]`` per level (average-pooled)."""
    b, c, h, w = f0.shape
    corr = torch.matmul(f0.flatten(2).transpose(1, 2), f1.flatten(2)) / c ** 0.5  # [B, hw, hw]
    corr = corr.reshape(b * h * w, 1, h, w)
    pyramid = [corr]
    for _ in range(levels - 1):
        corr = F.avg_pool2d(corr, 2, ceil_mode=True)
        pyramid.append(corr)
    return pyramid


def lookup(pyramid: list[Tensor], coords: Tensor) -> Tensor:
    """Correlation around ``coords [B,2,h,w]`` (target positions in level-0 cells) -> ``[B, L·(2r+1)², h, w]``."""
    b, _, h, w = coords.shape
    d = torch.arange(-RADIUS, RADIUS + 1, device=coords.device, dtype=coords.dtype)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    window = torch.stack([dx, dy], dim=-1).reshape(1, -1, 2)  # [1, K, 2] (x, y)
    centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 2)
    out = []
    for level, corr in enumerate(pyramid):
        hl, wl = corr.shape[-2:]
        pos = centre / 2 ** level + window  # [bhw, K, 2] in level-l cells
        grid = torch.stack([2 * pos[..., 0] / max(wl - 1, 1) - 1, 2 * pos[..., 1] / max(hl - 1, 1) - 1], dim=-1)
        sampled = F.grid_sample(corr, grid.unsqueeze(1).to(corr.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=True)  # [bhw, 1, 1, K]
        out.append(sampled.reshape(b, h, w, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2)


class ConvGRU(nn.Module):
    def __init__(self, hidden: int, inputs: int):
        super().__init__()
        self.zr = nn.Conv2d(hidden + inputs, 2 * hidden, 3, padding=1)
        self.q = nn.Conv2d(hidden + inputs, hidden, 3, padding=1)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        z, r = torch.sigmoid(self.zr(torch.cat([h, x], dim=1))).chunk(2, dim=1)
        q = torch.tanh(self.q(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class UpdateBlock(nn.Module):
    """One refinement step: (hidden, context, correlation, flow) -> (hidden, flow delta, upsampling mask)."""

    def __init__(self, corr_dim: int, up: tuple[int, int]):
        super().__init__()
        self.motion = nn.Sequential(_conv(corr_dim + 2, 128), _conv(128, 96))
        self.gru = ConvGRU(HIDDEN_DIM, 96 + 2 + CONTEXT_DIM)
        self.delta = nn.Sequential(_conv(HIDDEN_DIM, 128), nn.Conv2d(128, 2, 3, padding=1))
        self.mask = nn.Sequential(_conv(HIDDEN_DIM, 128), nn.Conv2d(128, 9 * up[0] * up[1], 1))

    def forward(self, h: Tensor, ctx: Tensor, corr: Tensor, flow: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.motion(torch.cat([corr, flow], dim=1))
        h = self.gru(h, torch.cat([m, flow, ctx], dim=1))
        return h, self.delta(h), 0.25 * self.mask(h)


def convex_upsample(flow: Tensor, mask: Tensor, up: tuple[int, int]) -> Tensor:
    """``flow [B,2,h,w]`` -> ``[B,2,h·uy,w·ux]``: each fine cell a softmax-weighted mix of its 3x3 coarse
    neighbours (``mask [B, 9·uy·ux, h, w]``); the values keep their units."""
    b, _, h, w = flow.shape
    uy, ux = up
    weights = torch.softmax(mask.reshape(b, 1, 9, uy, ux, h, w), dim=2)
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    neighbours = torch.stack([padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], dim=2)
    fine = (weights * neighbours.reshape(b, 2, 9, 1, 1, h, w)).sum(2)  # [B, 2, uy, ux, h, w]
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, h * uy, w * ux)


class MotionHead(nn.Module):
    """Matching features per frame (:meth:`features`) and the pair's flow and velocities (:meth:`forward`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.token_grid, self.gaussian_grid, self.image_size = cfg.token_grid, cfg.gaussian_grid, cfg.image_size
        self.iters = cfg.motion_iters
        self.levels = max(1, min(3, (min(self.token_grid) // 4).bit_length()))  # coarsest level >= ~4 cells
        self.up = (self.gaussian_grid[0] // self.token_grid[0], self.gaussian_grid[1] // self.token_grid[1])
        self.encoder = MatchEncoder()
        self.update = UpdateBlock(self.levels * (2 * RADIUS + 1) ** 2, self.up)

    def features(self, rgb: Tensor) -> Tensor:
        """Per-frame features ``[B, FEATURE_DIM, h, w]`` on the token grid."""
        return self.encoder(rgb)

    def flows(self, feat0: Tensor, feat1: Tensor, iters: int | None = None) -> list[Tensor]:
        """Flow of ``feat0``'s cells to ``feat1`` after each refinement step, ``[B, 2, gh, gw]`` in model pixels
        (du, dv) on the Gaussian grid."""
        f0, f1 = feat0[:, :MATCH_DIM].float(), feat1[:, :MATCH_DIM].float()
        hidden = torch.tanh(feat0[:, MATCH_DIM:MATCH_DIM + HIDDEN_DIM].float())
        ctx = F.relu(feat0[:, MATCH_DIM + HIDDEN_DIM:].float())
        pyramid = correlation_pyramid(f0, f1, self.levels)
        b, _, h, w = f0.shape
        ys, xs = torch.meshgrid(torch.arange(h, device=f0.device, dtype=f0.dtype),
                                torch.arange(w, device=f0.device, dtype=f0.dtype), indexing="ij")
        base = torch.stack([xs, ys])[None].expand(b, 2, h, w)
        flow = torch.zeros_like(base)  # in token cells
        cell = self.image_size[1] / w, self.image_size[0] / h  # model pixels per token cell (x, y)
        # built on the device (no host-to-device copy: the head can be captured in a CUDA graph)
        scale = torch.stack([f0.new_full((), cell[0]), f0.new_full((), cell[1])]).view(1, 2, 1, 1)
        out = []
        dtype = self.update.delta[-1].weight.dtype  # the update block runs in its weights' dtype (bf16 models)
        hidden, ctx = hidden.to(dtype), ctx.to(dtype)
        for _ in range(self.iters if iters is None else iters):
            corr = lookup(pyramid, base + flow)
            hidden, delta, mask = self.update(hidden, ctx, corr.to(dtype), flow.to(dtype))
            flow = flow + delta.float()
            out.append(convex_upsample(flow, mask.float(), self.up) * scale)
        return out

    def velocities(self, flow: Tensor, y_own: Tensor, y_other: Tensor) -> Tensor:
        """``flow [B,2,gh,gw]`` (model px) of Gaussians with slots ``y_own`` to the frame with ``y_other`` (both
        ``[B, N]``) -> canonical displacement ``[B, N, 3]`` over the unit pair time."""
        b = flow.shape[0]
        gh, gw = self.gaussian_grid
        h, w = self.image_size
        other = y_other.reshape(b, 1, gh, gw)
        # grid_sample coordinates of where each Gaussian-grid cell lands (cell centres, align_corners=False)
        ys, xs = torch.meshgrid(torch.arange(gh, device=flow.device, dtype=flow.dtype),
                                torch.arange(gw, device=flow.device, dtype=flow.dtype), indexing="ij")
        gx = (xs + 0.5 + flow[:, 0] * gw / w) / gw * 2 - 1
        gy = (ys + 0.5 + flow[:, 1] * gh / h) / gh * 2 - 1
        landed = F.grid_sample(other.to(flow.dtype), torch.stack([gx, gy], dim=-1), mode="bilinear",
                               padding_mode="border", align_corners=False).reshape(b, -1)
        dy = (landed - y_own.to(flow.dtype)).clamp(-MAX_DEPTH_RATE, MAX_DEPTH_RATE)
        f = flow.flatten(2)
        return torch.stack([f[:, 0] / (w / 2), dy, -f[:, 1] / (h / 2)], dim=-1)

    def forward(self, feat0: Tensor, feat1: Tensor, y0: Tensor, y1: Tensor) -> Tensor:
        """The pair's learned velocities ``[B, 2N, 3]``: frame 0's (forward flow), then frame 1's (minus the
        backward flow). ``y0, y1 [B, N]``: the frames' inverse-depth slots."""
        b = feat0.shape[0]
        flow = self.flows(torch.cat([feat0, feat1]), torch.cat([feat1, feat0]))[-1]
        forward = self.velocities(flow[:b], y0, y1)
        backward = self.velocities(flow[b:], y1, y0)
        return torch.cat([forward, -backward], dim=1)
