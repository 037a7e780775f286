"""Validation on a fixed set of generated clips: PSNR (key / middle frames), depth error, velocity error, images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nut_ros.core.geometry import DepthNormalization
from nut_ros.core.model import NutModel, static_gaussians
from nut_ros.render import rasterize
from nut_ros.train.depth_input import mixed_depth_input
from nut_ros.train.motion_fills import VALIDATION_SETS
from nut_ros.train.losses import pixel_of, rendered_disparity, sample_at, trajectory_targets
from nut_ros.train.objectives import LossWeights, StepOutput, autocast, stage1_step, stage2_step
from nut_ros.train.rgbd_pairs import RGBDPairs, epe
from nut_ros.train.scenes import Clip

#: seed of the simulated depth-from-motion fills of stage-3 validation (per batch: plus its index)
FILL_SEED = 7000

GREY = (0.5, 0.5, 0.5)


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB of ``[N, 3, H, W]`` images in [0, 1]."""
    mse = ((pred.clamp(0, 1) - target) ** 2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def metric_depth(out_depth: Tensor, alpha: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Metric depth from a render: ŷ -> disparity ``lo + ŷ (hi - lo)`` -> ``1 / disparity``."""
    y = rendered_disparity(out_depth, alpha)
    norm = DepthNormalization(lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1), metric=True)
    return 1.0 / norm.yhat_to_disparity(y).clamp_min(1e-4)


def _abs_rel(pred: Tensor, true: Tensor, mask: Tensor) -> float:
    return float(((pred - true).abs() / true)[mask].mean())


@torch.no_grad()
def evaluate(model: NutModel, clips: list[Clip], stage: int, amp: bool = True,
             impl: str = "torch") -> tuple[dict[str, float], list]:
    """Metrics averaged over ``clips`` with depth input present, plus key-frame PSNR without depth input.

    Returns the metrics and, per clip, the (clip, step output) of the depth-present pass for visualisation.
    """
    was_training = model.training
    model.eval()
    step = stage1_step if stage == 1 else stage2_step
    gen = torch.Generator(device=clips[0].rgb.device).manual_seed(0)
    bg = torch.tensor(GREY, device=clips[0].rgb.device)
    sums: dict[str, list[float]] = {}
    shown = []
    for clip in clips:
        b, v = clip.rgb.shape[:2]
        for present in (True, False):
            flags = torch.full((b,), present, dtype=torch.bool, device=clip.rgb.device)
            out = step(model, clip, LossWeights(), 0.0, gen, bg, amp, flags, impl)
            vals = _clip_metrics(clip, out, stage, b, v)
            suffix = "" if present else "_rgbonly"
            for name, value in vals.items():
                if present or name.startswith("psnr"):
                    sums.setdefault(name + suffix, []).append(value)
            if present:
                shown.append((clip, out))
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in sums.items()}, shown


def _clip_metrics(clip: Clip, out: StepOutput, stage: int, b: int, v: int) -> dict[str, float]:
    r = out.renders
    if stage == 1:
        covered = r.alpha > 0.5
        depth = metric_depth(r.depth, r.alpha, out.depth_input[0].lo, out.depth_input[0].hi)
        return {"psnr": float(psnr(r.color, clip.rgb[:, 0]).mean()),
                "abs_rel": _abs_rel(depth, clip.depth[:, 0], covered)}
    k0, k1 = clip.key_indices
    p = psnr(r.color, clip.rgb.flatten(0, 1)).view(b, v)
    d0, d1 = out.depth_input
    t = clip.times.view(1, v)
    lo = ((1 - t) * d0.lo.view(b, 1) + t * d1.lo.view(b, 1)).flatten()
    hi = ((1 - t) * d0.hi.view(b, 1) + t * d1.hi.view(b, 1)).flatten()
    depth = metric_depth(r.depth, r.alpha, lo, hi).view(b, v, 1, *r.depth.shape[-2:])
    covered = (r.alpha > 0.5).view_as(depth)
    keys = [k0, k1]
    metrics = {
        "psnr_key": float(p[:, keys].mean()),
        "psnr_mid": float(p[:, 1:-1].mean()) if v > 2 else float("nan"),
        "abs_rel_key": _abs_rel(depth[:, keys], clip.depth[:, keys], covered[:, keys]),
        "abs_rel_mid": _abs_rel(depth[:, 1:-1], clip.depth[:, 1:-1], covered[:, 1:-1]) if v > 2 else float("nan"),
    }
    # velocity error: displacement over the whole pair interval, in pixels at the model resolution
    g = out.gaussians
    h, w = clip.rgb.shape[-2:]
    disp_range = torch.stack([d.hi - d.lo for d in out.depth_input], dim=1)
    pred, true = trajectory_targets(g, clip.tracks, clip.times, disp_range)
    half = g.count // 2
    ends = torch.cat([pred[:, :half, -1] - true[:, :half, -1], pred[:, half:, 0] - true[:, half:, 0]], dim=1)
    epe = torch.hypot(ends[..., 0] * w / 2, ends[..., 2] * h / 2)  # [B, N]
    u, v_ = pixel_of(g.xyz, h, w)
    moving = torch.cat([sample_at(clip.moving[:, k0], u[:, :half], v_[:, :half]),
                        sample_at(clip.moving[:, k1], u[:, half:], v_[:, half:])], dim=1)[..., 0] > 0.5
    metrics["velocity_epe_px"] = float(epe.mean())
    metrics["velocity_epe_moving_px"] = float(epe[moving].mean()) if moving.any() else float("nan")
    gt_motion = torch.hypot(true[..., -1, 0] * w / 2, true[..., -1, 2] * h / 2)[:, :half]
    metrics["gt_motion_px"] = float(gt_motion.mean())
    return metrics


def save_images(shown: list, path: Path, stage: int, rows: int = 4) -> None:
    """JPEG grid, a row per sample: GT / render at key 0, middle, key 1; rendered and true disparity (ŷ)."""
    import cv2

    def img(x: Tensor) -> np.ndarray:
        return (x.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).astype(np.uint8)

    def disp_img(y: Tensor) -> np.ndarray:
        return img(y.clamp(0, 1).expand(3, -1, -1))

    lines = []
    for clip, out in shown:
        b, v = clip.rgb.shape[:2]
        r = out.renders
        pred_disp = rendered_disparity(r.depth, r.alpha)
        for i in range(min(b, rows - len(lines))):
            times = [0] if stage == 1 else [0, v // 2, v - 1]
            tiles = []
            for j in times:
                tiles += [img(clip.rgb[i, j]), img(r.color[i * (1 if stage == 1 else v) + j])]
            row0 = i * (1 if stage == 1 else v)
            tiles += [disp_img(pred_disp[row0]), disp_img(out.target_disp[row0])]
            lines.append(np.concatenate(tiles, axis=1))
        if len(lines) >= rows:
            break
    grid = np.concatenate(lines, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])


def _abs_rel_per_image(pred_depth: Tensor, true_depth: Tensor, mask: Tensor) -> Tensor:
    """AbsRel ``[B]`` of depth as it is (no alignment) over ``mask`` (NaN where it has fewer than 10 pixels)."""
    count = mask.flatten(1).sum(1)
    err = torch.where(mask, (pred_depth - true_depth).abs() / true_depth.clamp_min(1e-6), 0.0).flatten(1).sum(1)
    return torch.where(count >= 10, err / count.clamp_min(1), torch.nan).float().cpu()


def _aligned_abs_rel(pred_disp: Tensor, true_depth: Tensor, mask: Tensor) -> Tensor:
    """AbsRel ``[B]`` of depth after a least-squares scale and shift of the disparity per image (the protocol of
    relative depth: MiDaS); ``pred_disp`` any monotone inverse-depth slot."""
    out = []
    for p, z, m in zip(pred_disp, true_depth, mask):
        x, y = p[m].double(), 1.0 / z[m].double()
        if x.numel() < 10:
            out.append(torch.tensor(float("nan")))
            continue
        a = torch.stack([x, torch.ones_like(x)], 1)
        sol = torch.linalg.lstsq(a, y[:, None]).solution
        d = 1.0 / (a @ sol)[:, 0].clamp_min(1e-3)
        out.append(((d - z[m]).abs() / z[m]).mean().float().cpu())
    return torch.stack(out)


def real_pair_sets(pairs: RGBDPairs, batch: int) -> dict[str, list]:
    """The real pairs as :func:`evaluate_pairs` sets of ``batch`` pairs: with fills, "real" has those made with
    odometry and "real_motion" those from the images alone (:data:`~nut_ros.train.motion_fills.VALIDATION_SETS`)."""
    n = len(pairs)
    names = VALIDATION_SETS[:1 if pairs.fill is None else len(VALIDATION_SETS)]
    return {name: [pairs.batch(0, torch.arange(i, min(i + batch, n)), source) for i in range(0, n, batch)]
            for source, name in enumerate(names)}


def _render_static(model: NutModel, cache, h: int, w: int, impl: str):
    """The encoded frames' Gaussians rendered as they are (time 0, fp32) on a grey background."""
    g = static_gaussians(cache).map(lambda x: x.float())
    return rasterize(g.at(0.0), h, w, background=torch.full((3,), 0.5, device=g.xyz.device), impl=impl,
                     lowpass=model.config.raster_lowpass)


@torch.no_grad()
def evaluate_pairs(model: NutModel, sets: dict[str, list], amp: bool = True, impl: str = "torch",
                   simulated_fill: tuple[str, ...] = ("gen",),
                   fill_only: tuple[str, ...] = VALIDATION_SETS[1:]) -> dict[str, float]:
    """Stage 3 validation per set of :class:`~nut_ros.train.rgbd_pairs.PairBatch`: the learned flow's end-point
    error beside zero motion's; RGB-only depth (AbsRel after per-image disparity scale and shift) beside a constant
    disparity on the same pixels; depth (beside that fill itself) and key-frame PSNR with the dense fill of depth
    from motion in (the batch's own; a simulated one in the sets named in ``simulated_fill``), aligned and as it is
    (in the fill's scale: metres for a fill made with odometry), over the pixels with true depth that the fill-fed
    render covers (alpha > 0.5). The sets named in ``fill_only`` repeat another set's frames with another fill: only
    their fill-fed figures are scored (the rest would repeat that set's)."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    for name, batches in sets.items():
        sums: dict[str, list[Tensor]] = {}
        for index, batch in enumerate(batches):
            b = batch.rgb.shape[0]
            h, w = batch.rgb.shape[-2:]
            rgb, depth = batch.rgb.flatten(0, 1), batch.depth.flatten(0, 1)
            if name not in fill_only:
                with autocast(rgb.device, amp):
                    cache = model.encode(rgb, rgb.new_zeros(rgb.shape[0], model.config.depth_channels, h, w))
                    motion = cache.motion.unflatten(0, (b, 2))
                    flow = model.motion_head.flows(torch.cat([motion[:, 0], motion[:, 1]]),
                                                   torch.cat([motion[:, 1], motion[:, 0]]))[-1].float()
                true = torch.cat([batch.flow[:, 0], batch.flow[:, 1]])
                valid = torch.cat([batch.flow_valid[:, 0], batch.flow_valid[:, 1]])
                sums.setdefault("flow_epe", []).append(epe(flow, true, valid))
                sums.setdefault("flow_epe_zero", []).append(epe(torch.zeros_like(true), true, valid))
                out = _render_static(model, cache, h, w, impl)
                pred = rendered_disparity(out.depth, out.alpha)[:, 0]
                mask = (out.alpha[:, 0] > 0.5) & (depth[:, 0] > 0)
                sums.setdefault("abs_rel_rgbonly", []).append(_aligned_abs_rel(pred, depth[:, 0], mask))
                sums.setdefault("abs_rel_constant", []).append(
                    _aligned_abs_rel(torch.ones_like(pred), depth[:, 0], mask))
                sums.setdefault("psnr_rgbonly", []).append(psnr(out.color, rgb).cpu())
            # the dense fill of depth from motion in: the batch's own, else (generated sets) a simulated one, the same
            # draw every time
            if batch.fill is None and name not in simulated_fill:
                continue
            gen = torch.Generator(device=rgb.device).manual_seed(FILL_SEED + index)
            real = (None, None) if batch.fill is None else (batch.fill.flatten(0, 1), batch.fill_known.flatten(0, 1))
            fill = mixed_depth_input(depth, rgb, gen, {"fill": 1.0}, model.config.fill_validity, *real)
            with autocast(rgb.device, amp):
                cache = model.encode(rgb, fill.channels)
            out = _render_static(model, cache, h, w, impl)
            fill_mask = (out.alpha[:, 0] > 0.5) & (depth[:, 0] > 0) & fill.present.view(-1, 1, 1)
            pred = rendered_disparity(out.depth, out.alpha)[:, 0]
            sums.setdefault("abs_rel_fill", []).append(_aligned_abs_rel(pred, depth[:, 0], fill_mask))
            sums.setdefault("abs_rel_fill_input", []).append(
                _aligned_abs_rel(fill.channels[:, 0], depth[:, 0], fill_mask))
            # unaligned, in the fill's own scale: metric for odometry fills and the scaled ones of the other sets
            sums.setdefault("abs_rel_fill_unaligned", []).append(
                _abs_rel_per_image(fill.to_depth(pred), depth[:, 0], fill_mask))
            sums.setdefault("abs_rel_fill_input_unaligned", []).append(
                _abs_rel_per_image(fill.to_depth(fill.channels[:, 0]), depth[:, 0], fill_mask))
            sums.setdefault("psnr_fill", []).append(torch.where(fill.present, psnr(out.color, rgb), torch.nan).cpu())
        for key, values in sums.items():
            metrics[f"{name}_{key}"] = float(torch.cat([v.cpu() for v in values]).nanmean())
    model.train(was_training)
    return metrics
