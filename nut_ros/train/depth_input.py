"""Depth input of the model during training: simulated depth -> (normalised disparity, validity mask).

Each sample either drops depth entirely (RGB-only mode: both channels 0) or gets a simulated depth input, normalised
exactly as the streaming pipeline does (:func:`nut_ros.pipeline.depth.normalize_inverse_depth`: per-frame min-max
of ``1/z`` over the valid pixels): sensor-like (holes, a maximum range, multiplicative noise), semi-dense (what depth
from motion measures) or the dense fill the pipeline makes of such a semi-dense map
(:func:`nut_ros.geometry.densify.densify` itself, at depth from motion's working resolution).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.config import check_fill_validity
from nut_ros.core.geometry import DepthNormalization
from nut_ros.core.motion_prior import grey_u8
from nut_ros.geometry.densify import densify
from nut_ros.geometry.depth_from_motion import MotionDepthConfig
from nut_ros.pipeline.depth import model_depth_input, normalize_inverse_depth

#: stage-3 depth-input modes and their default probabilities: none (RGB only), semi-dense (as depth from motion
#: measures it), sensor-like (a depth camera); "fill" (the pipeline's dense fill of a semi-dense map) is the fourth
DEPTH_MODES = {"none": 0.35, "semi_dense": 0.35, "sensor": 0.30}
MODE_NAMES = ("none", "semi_dense", "sensor", "fill")
#: share of the textured pixels a filled map measured (depth from motion's maps cover 5 % of a frame or more; on
#: 7-Scenes and TUM about a third)
FILL_KEEP = (0.15, 0.6)
#: simulated errors of a semi-dense map beyond :func:`semi_dense_depth`'s before it is filled (per sample, uniform up
#: to): multiplicative noise,
FILL_NOISE = 0.1
#: and a smooth tilt of the inverse depth across the image (exp(a·x + b·y), x and y in [-0.5, 0.5]) as a wrong
#: relative pose bends a triangulated map,
FILL_TILT = 0.4
#: and errors that vary smoothly over the image (log-normal, up to this σ, on a grid of this many cells resized up):
#: depth from motion's errors come in regions (a wrong match spread by the fusion, a surface seen at a grazing angle)
FILL_FIELD = 0.6
FILL_FIELD_GRID = (3, 5)


@dataclass
class DepthInput:
    """Model depth channels and the normalisation that maps disparity to the canonical slot ŷ."""

    channels: Tensor  # [B, 2, H, W] (normalised disparity · valid, valid)
    lo: Tensor  # [B] disparity (1/m) at ŷ = 0
    hi: Tensor  # [B] disparity (1/m) at ŷ = 1
    present: Tensor  # [B] bool, False for RGB-only samples

    def normalise(self, disparity: Tensor) -> Tensor:
        """``(1/z - lo) / (hi - lo)`` for ``disparity [B, ...]``."""
        return self._normalization(disparity.dim()).disparity_to_yhat(disparity)

    def to_disparity(self, y_hat: Tensor) -> Tensor:
        """Disparity (1/depth, in the input's units) of ``y_hat [B, ...]``: ``lo + ŷ (hi - lo)``."""
        return self._normalization(y_hat.dim()).yhat_to_disparity(y_hat)

    def to_depth(self, y_hat: Tensor) -> Tensor:
        """Depth (the input's units: metres for sensor depth and metric fills) of ``y_hat [B, ...]``, the inverse of
        :meth:`normalise` on ``1/z``."""
        return self._normalization(y_hat.dim()).yhat_to_depth(y_hat)

    def _normalization(self, dims: int) -> DepthNormalization:
        shape = (-1,) + (1,) * (dims - 1)
        return DepthNormalization(self.lo.view(shape), self.hi.view(shape), metric=True)


def simulate_depth_input(depth: Tensor, drop_prob: float, generator: torch.Generator,
                         present: Tensor | None = None) -> DepthInput:
    """Sensor-like depth input for true depth ``[B, 1, H, W]`` (metres).

    ``present`` (``[B]`` bool) fixes which samples have depth; otherwise each is dropped with ``drop_prob``.
    Holes come from a thresholded low-resolution noise field (0-20 % of the frame); half of the samples also lose
    everything beyond a random maximum range of 4-12 m; the rest gets 1 % multiplicative noise.
    """
    b, _, h, w = depth.shape
    dev = depth.device

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=dev)

    if present is None:
        present = rand(b) >= drop_prob
    field = F.interpolate(rand(b, 1, max(h // 16, 1), max(w // 16, 1)), size=(h, w), mode="bilinear",
                          align_corners=False)
    valid = field >= (rand(b, 1, 1, 1) * 0.2)
    max_range = torch.where(rand(b, 1, 1, 1) < 0.5, 4.0 + 8.0 * rand(b, 1, 1, 1),
                            torch.full((b, 1, 1, 1), 1e9, device=dev))
    valid = valid & (depth < max_range)
    present = present & (valid.flatten(1).float().mean(1) >= 0.01)  # too few valid pixels: RGB-only
    valid = valid & present.view(b, 1, 1, 1)
    noisy = depth * (1 + 0.01 * torch.randn(depth.shape, generator=generator, device=dev))
    norm, lo, hi = normalize_inverse_depth(noisy, valid)
    # RGB-only samples: the target normalisation comes from the true depth (only scale-invariant terms use it)
    _, lo_true, hi_true = normalize_inverse_depth(depth, torch.ones_like(valid))
    lo, hi = torch.where(present, lo, lo_true), torch.where(present, hi, hi_true)
    return DepthInput(model_depth_input(norm, valid, 2), lo, hi, present)


def semi_dense_depth(depth: Tensor, rgb: Tensor, generator: torch.Generator,
                     keep: tuple[float, float] = (0.05, 0.40)) -> tuple[Tensor, Tensor]:
    """What depth from motion gives for true depth ``[B,1,H,W]`` (0 = unknown) of images ``rgb [B,3,H,W]``:
    pixels on image texture (gradient above a random threshold) thinned to a share in ``keep`` (per sample,
    uniform), 1-5 % multiplicative noise and 2 % outliers. Returns ``(noisy depth, valid)``."""
    b = depth.shape[0]
    dev = depth.device

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=dev)

    grey = rgb.mean(1, keepdim=True)
    dx = (grey[..., :, 1:] - grey[..., :, :-1]).abs()[..., :-1, :]
    grad = dx + (grey[..., 1:, :] - grey[..., :-1, :]).abs()[..., :, :-1]
    grad = F.pad(grad, (0, 1, 0, 1))
    textured = grad > rand(b, 1, 1, 1) * 0.08
    valid = textured & (rand(*depth.shape) < keep[0] + (keep[1] - keep[0]) * rand(b, 1, 1, 1)) & (depth > 0)
    noise = 1 + (0.01 + 0.04 * rand(b, 1, 1, 1)) * torch.randn(depth.shape, generator=generator, device=dev)
    outlier = rand(*depth.shape) < 0.02
    noisy = torch.where(outlier, depth * (0.5 + rand(*depth.shape)), depth * noise)
    return noisy, valid


def motion_fill(depth: Tensor, rgb: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The dense fill the pipeline feeds for true depth ``[B,1,H,W]`` of images ``rgb [B,3,H,W]``: a semi-dense
    map (:func:`semi_dense_depth` of :data:`FILL_KEEP`, with :data:`FILL_NOISE`, :data:`FILL_TILT` and
    :data:`FILL_FIELD` on top, confidences 0.2-1) made at depth from motion's working resolution, filled by
    :func:`~nut_ros.geometry.densify.densify` with the pipeline's plane prior (on the host) and brought to the
    model's size by :func:`fill_at`.

    Returns ``(inverse depth [B,1,H,W], known [B,1,H,W]`` (nearest-resized measured pixels: every pixel of the
    simulated map, where depth from motion's own are only its confirmed ones, a subset of those it fills from),
    ``ok [B])``; a sample whose map covers less than depth from motion's ``min_coverage`` has no fill (the pipeline
    then feeds none)."""
    b, _, h, w = depth.shape
    dev = depth.device
    cfg = MotionDepthConfig()
    ww, wh = cfg.working_size(w, h)
    small_rgb = F.interpolate(rgb, size=(wh, ww), mode="area")
    small_depth = F.interpolate(depth, size=(wh, ww), mode="nearest")
    noisy, valid = semi_dense_depth(small_depth, small_rgb, generator, FILL_KEEP)

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=dev)

    y, x = torch.meshgrid(torch.linspace(-0.5, 0.5, wh, device=dev), torch.linspace(-0.5, 0.5, ww, device=dev),
                          indexing="ij")
    tilt = torch.exp(FILL_TILT * ((2 * rand(b, 1, 1, 1) - 1) * x + (2 * rand(b, 1, 1, 1) - 1) * y))
    coarse = torch.randn((b, 1) + FILL_FIELD_GRID, generator=generator, device=dev)
    tilt = tilt * torch.exp(FILL_FIELD * rand(b, 1, 1, 1) * F.interpolate(coarse, size=(wh, ww), mode="bicubic",
                                                                          align_corners=False))
    noise = 1 + FILL_NOISE * rand(b, 1, 1, 1) * torch.randn(noisy.shape, generator=generator, device=dev)
    noise = noise.clamp_min(0.2)
    inv = tilt * noise / noisy.clamp_min(1e-3)
    confidence = valid * (0.2 + 0.8 * rand(*noisy.shape))
    ok = (valid.flatten(1).float().mean(1) >= cfg.min_coverage).tolist()
    inv_np, conf_np = inv[:, 0].float().cpu().numpy(), confidence[:, 0].float().cpu().numpy()

    def fill(i: int) -> np.ndarray:
        if not ok[i]:
            return np.ones((wh, ww), np.float32)
        return densify(inv_np[i], conf_np[i], grey_u8(small_rgb[i]), plane_weight=cfg.plane_prior)

    with ThreadPoolExecutor(max_workers=min(b, 8)) as pool:
        dense = torch.from_numpy(np.stack(list(pool.map(fill, range(b)))))[:, None].to(dev)
    dense, known = fill_at(dense, valid, (h, w))
    return dense, known, torch.tensor(ok, device=dev)


def fill_at(inv: Tensor, known: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """A fill ``inv [B,1,h,w]`` and its measured pixels ``known [B,1,h,w]`` (bool) at the model's ``size``
    ``(H, W)``, resized as the pipeline resizes them (:meth:`nut_ros.pipeline.stream.StreamingPipeline._preprocess`:
    the fill bilinear, its measured pixels nearest, pixel-centre exact as
    :func:`nut_ros.core.geometry.resize_nearest`)."""
    return (F.interpolate(inv, size=size, mode="bilinear", align_corners=False),
            F.interpolate(known.float(), size=size, mode="nearest-exact") > 0.5)


def check_modes(modes: dict[str, float]) -> dict[str, float]:
    """``modes`` (name -> probability) if its names are :data:`MODE_NAMES` and its weights non-negative with a
    positive sum; else ValueError."""
    unknown = set(modes) - set(MODE_NAMES)
    if unknown:
        raise ValueError(f"unknown depth-input modes {sorted(unknown)}; known: {', '.join(MODE_NAMES)}")
    if any(not p >= 0 for p in modes.values()) or sum(modes.values()) <= 0:
        raise ValueError(f"depth-input mode probabilities must be >= 0 with a positive sum, not {modes}")
    return modes


def mixed_depth_input(depth: Tensor, rgb: Tensor, generator: torch.Generator, modes: dict[str, float] | None = None,
                      fill_validity: str = "ones", fill: Tensor | None = None,
                      fill_known: Tensor | None = None) -> DepthInput:
    """Per sample one of ``modes`` (name -> probability, :data:`MODE_NAMES`; default :data:`DEPTH_MODES`): the
    model's depth channels and the normalisation of the ŷ target (from the input's own valid pixels, as the pipeline
    normalises; from the true depth for RGB-only samples). A fill is the sample's own where ``fill``
    (``[B,1,H,W]`` inverse depth) is finite, with its measured pixels ``fill_known`` (all 0: depth from motion gave
    none, so the sample goes without depth, as in the pipeline); NaN (or no ``fill``): simulated
    (:func:`motion_fill`). Its validity channel is ``fill_validity``
    (:class:`nut_ros.core.config.ModelConfig`): 1 everywhere ("ones") or its measured pixels ("known")."""
    modes = DEPTH_MODES if modes is None else check_modes(modes)
    check_fill_validity(fill_validity)
    b = depth.shape[0]
    dev = depth.device
    names = list(modes)
    pick = torch.multinomial(torch.tensor(list(modes.values()), device=dev), b, replacement=True, generator=generator)

    def chosen(name: str) -> Tensor:
        if name not in names:
            return torch.zeros(b, 1, 1, 1, dtype=torch.bool, device=dev)
        return (pick == names.index(name)).view(b, 1, 1, 1)

    sensor = simulate_depth_input(depth.clamp_min(1e-3), 0.0, generator)
    sparse, sparse_valid = semi_dense_depth(depth, rgb, generator)
    valid = torch.where(chosen("semi_dense"), sparse_valid, (sensor.channels[:, 1:2] > 0.5) & (depth > 0))
    observed = torch.where(chosen("semi_dense"), sparse, depth)
    channel_valid = valid
    if chosen("fill").any():
        # a sample's own fill (finite; all 0: depth from motion gave none), else a simulated one
        own = torch.zeros(b, dtype=torch.bool, device=dev) if fill is None else torch.isfinite(fill).flatten(1).all(1)
        fill_inv = torch.ones_like(depth) if fill is None else torch.where(own.view(b, 1, 1, 1), fill, 1.0)
        known = torch.zeros_like(depth, dtype=torch.bool) if fill is None else fill_known.clone()
        ok = own & (fill_inv > 0).flatten(1).all(1)
        simulate = chosen("fill").view(b) & ~own
        if simulate.any():
            fill_inv[simulate], known[simulate], ok[simulate] = motion_fill(depth[simulate], rgb[simulate], generator)
        use = chosen("fill") & ok.view(b, 1, 1, 1)
        observed = torch.where(use, 1.0 / fill_inv.clamp_min(1e-6), observed)
        valid = torch.where(use, True, valid & ~chosen("fill"))
        channel_valid = torch.where(use, known if fill_validity == "known" else True, valid)
    valid = valid & ~chosen("none")
    present = valid.flatten(1).float().mean(1) >= 0.002
    valid = valid & present.view(b, 1, 1, 1)
    norm, lo, hi = normalize_inverse_depth(observed.clamp_min(1e-3), valid)
    _, lo_true, hi_true = normalize_inverse_depth(depth.clamp_min(1e-3), depth > 0)
    lo, hi = torch.where(present, lo, lo_true), torch.where(present, hi, hi_true)
    return DepthInput(model_depth_input(norm, channel_valid & valid, 2), lo, hi, present)
