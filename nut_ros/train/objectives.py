"""One training/validation forward pass per stage: generated clip -> model -> renders -> loss terms.

Stage 1 reconstructs single frames with the static encoder. Stage 2 encodes the two key frames of a clip, decodes
the pair's dynamic Gaussians and renders them at every frame time of the clip (key and intermediate frames).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.model import NutModel
from nut_ros.core.motion_prior import batch_priors, with_prior
from nut_ros.render import RenderOutput, rasterize
from nut_ros.render.projection import LOWPASS
from nut_ros.train.depth_input import DepthInput, simulate_depth_input
from nut_ros.train.losses import (masked_mse, rendered_disparity, ssi_disparity_loss, trajectory_loss,
                                  trajectory_targets)
from nut_ros.train.scenes import Clip


@dataclass(frozen=True)
class LossWeights:
    mask: float = 1.0  # moving-object MSE (reference: 3.0, with its aliasing bug)
    depth_ssi: float = 0.05  # scale/shift-invariant disparity (reference: 0.05 stage 1, 0.01 stage 2)
    depth: float = 0.5  # direct ŷ vs true normalised disparity (samples with depth input)
    trajectory: float = 1.0  # Gaussian displacement vs true point trajectories (stage 2)
    trajectory_norm: str = "l1"  # "l1" or "l2" (squared error)
    ssi_tau: float = 0.0  # soft outlier down-weighting of the SSI term (reference stage 2: 0.3)


@dataclass
class StepOutput:
    loss: Tensor
    terms: dict[str, float]
    renders: RenderOutput  # [B*V, ...] in (sample, time) order
    gaussians: Gaussians
    depth_input: list[DepthInput]  # per key frame
    target_disp: Tensor  # [B*V, 1, H, W] true normalised disparity (ŷ target)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled and device.type == "cuda" else nullcontext()


def render_at(gaussians: Gaussians, times: Tensor, height: int, width: int, background: Tensor,
              impl: str = "torch", lowpass: float = LOWPASS) -> RenderOutput:
    """Render every sample at every time: ``[B*V, ...]`` in (sample, time) order (float32)."""
    v = times.numel()
    g = gaussians.map(lambda x: x.float().repeat_interleave(v, dim=0))
    t = times.float().repeat(gaussians.xyz.shape[0]).unsqueeze(-1)
    return rasterize(g.at(t), height, width, background=background, impl=impl, lowpass=lowpass)


def _depth_terms(out: RenderOutput, target: Tensor, present: Tensor, weights: LossWeights) -> tuple[Tensor, dict]:
    """SSI term on every frame and direct ŷ term on frames whose sample had depth input (rows of ``out``)."""
    pred = rendered_disparity(out.depth, out.alpha)
    covered = out.alpha.detach() > 0.5
    ssi = ssi_disparity_loss(pred, target, covered, weights.ssi_tau)
    direct_mask = covered & present.view(-1, 1, 1, 1)
    direct = ((pred - target).abs() * direct_mask).sum() / direct_mask.sum().clamp_min(1)
    return weights.depth_ssi * ssi + weights.depth * direct, {"depth_ssi": ssi.item(), "depth": direct.item()}


def stage1_step(model: NutModel, clip: Clip, weights: LossWeights, drop_prob: float, gen: torch.Generator,
                background: Tensor, amp: bool = True, present: Tensor | None = None, impl: str = "torch") -> StepOutput:
    """Static reconstruction of frame 0 of each clip."""
    rgb, depth = clip.rgb[:, 0], clip.depth[:, 0]
    h, w = rgb.shape[-2:]
    dinput = simulate_depth_input(depth, drop_prob, gen, present)
    with _autocast(rgb.device, amp):
        g = model.encode_static(rgb, dinput.channels)
    g = g.map(lambda x: x.float())
    out = rasterize(g.at(0.0), h, w, background=background, impl=impl, lowpass=model.config.raster_lowpass)
    target = dinput.normalise(1.0 / depth).clamp(0, 1)
    mse = torch.mean((out.color - rgb) ** 2)
    depth_loss, terms = _depth_terms(out, target, dinput.present, weights)
    loss = mse + depth_loss
    return StepOutput(loss, {"mse": mse.item(), **terms}, out, g, [dinput], target)


def stage2_step(model: NutModel, clip: Clip, weights: LossWeights, drop_prob: float, gen: torch.Generator,
                background: Tensor, amp: bool = True, present: Tensor | None = None, impl: str = "torch") -> StepOutput:
    """Pair decoding of the clip's key frames, rendered and supervised at all its frame times."""
    b, v = clip.rgb.shape[:2]
    h, w = clip.rgb.shape[-2:]
    k0, k1 = clip.key_indices
    if present is None:
        present = torch.rand(b, generator=gen, device=clip.rgb.device) >= drop_prob
    inputs = [simulate_depth_input(clip.depth[:, k], drop_prob, gen, present) for k in (k0, k1)]
    present = inputs[0].present & inputs[1].present
    frames = clip.rgb[:, [k0, k1]]
    disps = torch.stack([d.channels for d in inputs], dim=1)
    with _autocast(clip.rgb.device, amp):
        g = model(frames, disps)
    g = g.map(lambda x: x.float())
    if model.config.motion_prior == "dis":  # the head's velocities are a residual around the optical flow
        g = with_prior(g, batch_priors(frames[:, 0], frames[:, 1], model.config.gaussian_grid))
    out = render_at(g, clip.times, h, w, background, impl, model.config.raster_lowpass)

    rgb = clip.rgb.flatten(0, 1)
    mse = torch.mean((out.color - rgb) ** 2)
    mask = masked_mse(out.color, rgb, clip.moving.flatten(0, 1))
    # per-frame ŷ normalisation: linear in time between the key frames' normalisations
    t = clip.times.view(1, v)
    lo = (1 - t) * inputs[0].lo.view(b, 1) + t * inputs[1].lo.view(b, 1)
    hi = (1 - t) * inputs[0].hi.view(b, 1) + t * inputs[1].hi.view(b, 1)
    disp = 1.0 / clip.depth.flatten(0, 1)
    target = ((disp - lo.reshape(-1, 1, 1, 1)) / (hi - lo).reshape(-1, 1, 1, 1)).clamp(0, 1)
    depth_loss, terms = _depth_terms(out, target, present.repeat_interleave(v), weights)
    disp_range = torch.stack([d.hi - d.lo for d in inputs], dim=1)
    pred, true = trajectory_targets(g, clip.tracks, clip.times, disp_range)
    traj = trajectory_loss(pred, true, present.float(), weights.trajectory_norm)
    loss = mse + weights.mask * mask + depth_loss + weights.trajectory * traj
    terms = {"mse": mse.item(), "mask": mask.item(), **terms, "trajectory": traj.item()}
    return StepOutput(loss, terms, out, g, inputs, target)
