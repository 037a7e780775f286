"""Dynamic Gaussian state in canonical orthographic (STAG) space and its evaluation at a time t.

Conventions (docs/CONVENTIONS.md): a Gaussian's static position is ``(x, ŷ, z)`` with ``x`` right in [-1, 1],
``ŷ`` the normalised inverse-depth slot in [0, 1] (1 = near) and ``z`` up in [-1, 1]. Motion is linear in the
pair-normalised time ``τ = t - t0`` and is applied *before* the inverse-depth mapping
``d = 1 / (0.2 + 9.8 ŷ + 1e-6)``; a Gaussian whose ``ŷ(t)`` leaves [0, 1] is culled by giving it a negative depth
(``ŷ(t) - 10``), exactly as the reference renderer does.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor

#: inverse-depth map ``1/d = INV_DEPTH_OFFSET + INV_DEPTH_SCALE·ŷ + INV_DEPTH_EPS``: d ~0.1 (ŷ = 1) to 5 (ŷ = 0)
INV_DEPTH_OFFSET = 0.2
INV_DEPTH_SCALE = 10.0 - 0.2
INV_DEPTH_EPS = 1e-6
CULL_SHIFT = 10.0


def disparity_to_depth(y_hat: Tensor) -> Tensor:
    """Canonical depth ``d = 1 / (0.2 + 9.8 ŷ + 1e-6)`` of a normalised inverse-depth slot ``ŷ``."""
    return 1.0 / ((y_hat * INV_DEPTH_SCALE + INV_DEPTH_OFFSET) + INV_DEPTH_EPS)


class RasterInputs(NamedTuple):
    """Arguments of the orthographic rasterizer, in the reference's world frame (after the depth map)."""

    means: Tensor  # [B, N, 3] (x, d, z); d <= 0 means culled
    scales: Tensor  # [B, N, 3] (s_x, (s_x + s_z)/2, s_z)
    rotations: Tensor  # [B, N, 4] (w, x, y, z), not normalised
    opacities: Tensor  # [B, N, 1] α(t)
    colors: Tensor  # [B, N, 3]

    def wants_grad(self, background) -> bool:
        """Whether autograd records a render of these inputs over ``background`` (a tensor or numbers): a
        gradient is enabled and any of them requires one (the compiled kernels render without it otherwise)."""
        return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in (*self, background))


@dataclass
class Gaussians:
    """A batch of dynamic Gaussians (structure of arrays, batch first)."""

    xyz: Tensor  # [B, N, 3] static (x, ŷ, z)
    velocity: Tensor  # [B, N, 3] d(x, ŷ, z)/dτ
    rgb: Tensor  # [B, N, 3]
    opacity: Tensor  # [B, N, 1]
    scale: Tensor  # [B, N, 2] (s_x, s_z)
    gamma: Tensor  # [B, N, 2] (γ0, γ1)
    t0: Tensor  # [B, N] anchor time

    @property
    def count(self) -> int:
        return self.xyz.shape[1]

    def map(self, fn) -> "Gaussians":
        """Apply ``fn`` to every tensor field (e.g. ``lambda x: x.to(device)``)."""
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    @staticmethod
    def cat(*sets: "Gaussians") -> "Gaussians":
        """Concatenate sets along the Gaussian axis, in order."""
        return Gaussians(**{f.name: torch.cat([getattr(s, f.name) for s in sets], dim=1) for f in fields(Gaussians)})

    def premap_position(self, t: float | Tensor) -> Tensor:
        """Canonical position ``(x, ŷ, z)`` at time ``t`` before the depth mapping: ``xyz + velocity·(t - t0)``."""
        tau = (t - self.t0).unsqueeze(-1)
        return self.xyz + self.velocity * tau

    def temporal_opacity(self, t: float | Tensor) -> Tensor:
        """``α(t) = α · σ(-γ0 (|τ| - γ1)) / σ(γ0 γ1)``."""
        tau = (t - self.t0).unsqueeze(-1)
        g0, g1 = self.gamma[..., 0:1], self.gamma[..., 1:2]
        return self.opacity * (torch.sigmoid(-g0 * (tau.abs() - g1)) / torch.sigmoid(g0 * g1))

    def at(self, t: float | Tensor) -> RasterInputs:
        """Rasterizer inputs at pair time ``t`` (reference renderer semantics, ``gaussian_renderer_dynamic``)."""
        p = self.premap_position(t)
        y_hat = p[..., 1]
        valid = (y_hat >= 0) & (y_hat <= 1)
        y = torch.where(valid, disparity_to_depth(y_hat), y_hat - CULL_SHIFT)
        means = torch.stack([p[..., 0], y, p[..., 2]], dim=-1)
        sx, sz = self.scale[..., 0:1], self.scale[..., 1:2]
        scales = torch.cat([sx, (sx + sz) / 2, sz], dim=-1)
        rotations = torch.zeros(*self.xyz.shape[:-1], 4, dtype=self.xyz.dtype, device=self.xyz.device)
        rotations[..., 0] = 1.0
        return RasterInputs(means, scales, rotations, self.temporal_opacity(t), self.rgb)

    # -- the reference's packed dict (``pred_gs``) ------------------------------------------------------------
    @staticmethod
    def from_reference(pred_gs: dict[str, Tensor], anchor_times: tuple[float, ...] = (0.0, 1.0)) -> "Gaussians":
        """Build from the reference's ``pred_gs`` dict; the N Gaussians are split evenly over ``anchor_times``."""
        xyz, op = pred_gs["xyz"], pred_gs["opacity"]
        b, n = xyz.shape[:2]
        per = n // len(anchor_times)
        t0 = torch.tensor(anchor_times, dtype=xyz.dtype, device=xyz.device).repeat_interleave(per).expand(b, n)
        gamma = op[..., 1:3] if op.shape[-1] == 3 else torch.zeros(b, n, 2, dtype=xyz.dtype, device=xyz.device)
        velocity = xyz[:, :, 1] if xyz.shape[2] > 1 else torch.zeros_like(xyz[:, :, 0])
        return Gaussians(xyz[:, :, 0], velocity, pred_gs["rgb"], op[..., 0:1], pred_gs["scale"], gamma, t0.clone())
