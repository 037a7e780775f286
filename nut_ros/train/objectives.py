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
from nut_ros.core.model import NutModel, static_gaussians
from nut_ros.core.motion_head import GAMMA
from nut_ros.core.motion_prior import batch_priors, with_prior
from nut_ros.render import RenderOutput, rasterize
from nut_ros.train.depth_input import DepthInput, mixed_depth_input, simulate_depth_input
from nut_ros.train.losses import (masked_mse, rendered_disparity, ssi_disparity_loss, trajectory_loss,
                                  trajectory_targets)
from nut_ros.train.rgbd_pairs import PairBatch, epe
from nut_ros.train.scenes import Clip


@dataclass(frozen=True)
class LossWeights:
    mask: float = 1.0  # moving-object MSE (reference: 3.0, with its aliasing bug)
    depth_ssi: float = 0.05  # scale/shift-invariant disparity (reference: 0.05 stage 1, 0.01 stage 2)
    depth: float = 0.5  # direct ŷ vs true normalised disparity (samples with depth input)
    trajectory: float = 1.0  # Gaussian displacement vs true point trajectories (stage 2)
    trajectory_norm: str = "l1"  # "l1" or "l2" (squared error)
    ssi_tau: float = 0.0  # soft outlier down-weighting of the SSI term (reference stage 2: 0.3)
    flow: float = 0.02  # stage 3: learned flow vs exact flow (sequence L1 in model pixels)
    # stage 3: |log depth - log true depth| where the input had depth, in the input's own scale (metres with a
    # metric input): a relative error like AbsRel, which the direct ŷ term counts little at far pixels
    depth_log: float = 0.0


@dataclass
class StepOutput:
    loss: Tensor
    terms: dict[str, float]
    renders: RenderOutput  # [B*V, ...] in (sample, time) order
    gaussians: Gaussians
    depth_input: list[DepthInput]  # per key frame
    target_disp: Tensor  # [B*V, 1, H, W] true normalised disparity (ŷ target)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled and device.type == "cuda" else nullcontext()


def render_at(gaussians: Gaussians, times: Tensor, height: int, width: int, background: Tensor,
              impl: str = "torch", *, lowpass: float) -> RenderOutput:
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
    with autocast(rgb.device, amp):
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
    with autocast(clip.rgb.device, amp):
        g = model(frames, disps)
    g = g.map(lambda x: x.float())
    if model.config.motion_prior == "flow":  # the head's velocities are a residual around the optical flow
        g = with_prior(g, batch_priors(frames[:, 0], frames[:, 1], model.config.gaussian_grid))
    out = render_at(g, clip.times, h, w, background, impl, lowpass=model.config.raster_lowpass)

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


# -- stage 3: geometry and learned motion ------------------------------------------------------------------------
def flow_sequence_loss(flows: list[Tensor], true: Tensor, valid: Tensor, gamma: float = GAMMA) -> Tensor:
    """RAFT's sequence loss: L1 of each refinement step's flow (model pixels), later steps weighted more."""
    n = len(flows)
    total = 0.0
    for i, flow in enumerate(flows):
        err = ((flow - true).abs().sum(1, keepdim=True) * valid).sum() / valid.sum().clamp_min(1)
        total = total + gamma ** (n - 1 - i) * err
    return total


def log_depth_error(dinput: DepthInput, pred: Tensor, depth: Tensor) -> Tensor:
    """``|log z_pred - log z|`` per pixel: the rendered ŷ ``pred`` in the depth input's scale against the true depth
    ``depth`` (both ``[B,1,H,W]``); the predicted disparity is kept above 1 % of the input's nearest (a render
    below ŷ's range would have none)."""
    disp = dinput.to_disparity(pred)
    floor = (0.01 * dinput.hi).view(-1, 1, 1, 1)
    return (torch.log(torch.maximum(disp, floor)) + torch.log(depth.clamp_min(1e-3))).abs()


def geometry_motion_step(model: NutModel, batch: PairBatch, weights: LossWeights, gen: torch.Generator,
                         background: Tensor, amp: bool = True, impl: str = "torch",
                         depth_modes: dict[str, float] | None = None, motion: bool = True) -> StepOutput:
    """Stage 3: both frames of each pair reconstructed by the static encoder with mixed depth input (``depth_modes``,
    see :func:`~nut_ros.train.depth_input.mixed_depth_input`; photometric and depth terms: scale/shift-invariant
    always, direct where the input had depth), and (``motion``) the learned flow head supervised by the exact flow
    between them."""
    h, w = batch.rgb.shape[-2:]
    rgb, depth = batch.rgb.flatten(0, 1), batch.depth.flatten(0, 1)
    fill, known = (None, None) if batch.fill is None else (batch.fill.flatten(0, 1), batch.fill_known.flatten(0, 1))
    dinput = mixed_depth_input(depth, rgb, gen, depth_modes, model.config.fill_validity, fill, known)
    with autocast(rgb.device, amp):
        cache = model.encode(rgb, dinput.channels)
    g = static_gaussians(cache).map(lambda x: x.float())
    out = rasterize(g.at(0.0), h, w, background=background, impl=impl, lowpass=model.config.raster_lowpass)
    mse = torch.mean((out.color - rgb) ** 2)
    target = dinput.normalise(1.0 / depth.clamp_min(1e-3)).clamp(0, 1)
    pred = rendered_disparity(out.depth, out.alpha)
    mask = (out.alpha.detach() > 0.5) & (depth > 0)
    ssi = ssi_disparity_loss(pred, target, mask, weights.ssi_tau)
    direct_mask = mask & dinput.present.view(-1, 1, 1, 1)
    direct = ((pred - target).abs() * direct_mask).sum() / direct_mask.sum().clamp_min(1)
    loss = mse + weights.depth_ssi * ssi + weights.depth * direct
    depth_terms = {}
    if weights.depth_log > 0:
        log_err = (log_depth_error(dinput, pred, depth) * direct_mask).sum() / direct_mask.sum().clamp_min(1)
        loss = loss + weights.depth_log * log_err
        depth_terms["depth_log"] = log_err.item()
    flow_terms = {}
    if motion:
        flow, flow_terms = _flow_terms(model, cache.motion, batch, amp)
        loss = loss + weights.flow * flow
    terms = {"mse": mse.item(), "depth_ssi": ssi.item(), "depth": direct.item(), **depth_terms, **flow_terms}
    return StepOutput(loss, terms, out, g, [dinput], target)


def motion_step(model: NutModel, batch: PairBatch, weights: LossWeights, amp: bool = True) -> StepOutput:
    """Stage 3 with the pair model frozen: only the learned flow head (its match encoder included), supervised by
    the exact flow between the pair's frames; no render (``renders``, ``gaussians`` and ``target_disp`` are None)."""
    rgb = batch.rgb.flatten(0, 1)
    with autocast(rgb.device, amp):
        features = model.motion_head.features(rgb)
    flow, terms = _flow_terms(model, features, batch, amp)
    return StepOutput(weights.flow * flow, terms, None, None, [], None)


def _flow_terms(model: NutModel, features: Tensor, batch: PairBatch, amp: bool) -> tuple[Tensor, dict[str, float]]:
    """Sequence loss of the head's flows both ways between each pair's frames (``features [B*2, C, h, w]`` in
    (pair, frame) order), and its terms for the log."""
    motion = features.float().unflatten(0, (batch.rgb.shape[0], 2))
    with autocast(features.device, amp):
        flows = model.motion_head.flows(torch.cat([motion[:, 0], motion[:, 1]]),
                                        torch.cat([motion[:, 1], motion[:, 0]]))
    true = torch.cat([batch.flow[:, 0], batch.flow[:, 1]])
    valid = torch.cat([batch.flow_valid[:, 0], batch.flow_valid[:, 1]])
    flow = flow_sequence_loss([f.float() for f in flows], true, valid)
    return flow, {"flow": flow.item(), "flow_epe": epe(flows[-1].float(), true, valid).mean().item()}
