"""Image and depth quality metrics (numpy in, float out) and latency percentiles.

Images are ``[H, W, C]`` (or ``[H, W]``) arrays, uint8 in [0, 255] or float in [0, 1]. SSIM follows Wang et al.
2004 with an 11-tap Gaussian window (σ = 1.5), population covariances and ``K1, K2 = 0.01, 0.03``, evaluated on
the valid region (no padding) and averaged over channels — the same numbers as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_float01(img: np.ndarray) -> np.ndarray:
    """``img`` as float64 in [0, 1] (uint8 is divided by 255; floats are taken as they are)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_float01(a), to_float01(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    a, b = _check_pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean structural similarity of two images (channels averaged); both sides must be at least 11 pixels."""
    a, b = _check_pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    x = torch.from_numpy(np.ascontiguousarray(np.stack([a, b]).transpose(0, 3, 1, 2)))  # [2, C, H, W]
    c = x.shape[1]
    win = _gaussian_window(sigma, int(3.5 * sigma + 0.5))
    k = win.numel()
    if min(x.shape[-2:]) < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k} pixels, got {tuple(x.shape[-2:])}")

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable valid Gaussian filter per channel, t [M, C, H, W]
        t = F.conv2d(t, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        return F.conv2d(t, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)

    pa, pb = x[0:1], x[1:2]
    mu_a, mu_b, aa, bb, ab = blur(torch.cat([pa, pb, pa * pa, pb * pb, pa * pb])).split(1)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def resize_square(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Bilinear, antialiased resize to ``size`` x ``size`` (how StreamSplat reports its image metrics), float [0,1]."""
    x = torch.from_numpy(np.ascontiguousarray(to_float01(img)))
    x = x[..., None] if x.ndim == 2 else x
    y = F.interpolate(x.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    return y[0].permute(1, 2, 0).clamp(0, 1).numpy()


def median_scale(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Factor ``median(gt) / median(pred)`` over ``valid`` pixels (aligns relative depth to the ground truth)."""
    return float(np.median(gt[valid]) / np.median(pred[valid]))


def disparity_affine(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` with ``s / pred + t ≈ 1 / gt`` (MiDaS protocol for affine-invariant disparity)."""
    a = np.stack([1.0 / pred, np.ones_like(pred)], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, 1.0 / gt, rcond=None)
    return float(s), float(t)


def depth_errors(pred: np.ndarray, gt: np.ndarray, align_median: bool = False, valid: np.ndarray | None = None,
                 align_disparity: bool = False) -> dict[str, float]:
    """AbsRel and δ<1.25 of ``pred`` against ``gt`` over pixels where both are finite and positive.

    With ``align_median`` the prediction is first scaled by :func:`median_scale` (for relative depth); the factor
    is returned as ``scale`` (1.0 otherwise), along with the number of pixels compared. With ``align_disparity``
    its inverse is fitted to the ground truth's by scale and shift (:func:`disparity_affine`; for depth that is
    only known up to an affine map of disparity, as a scale/shift-invariant loss trains it), and the aligned
    disparity is clipped to the ground truth's range over the compared pixels, as MiDaS caps it: a pixel aligned
    beyond the farthest (a disparity near or below 0) counts as the farthest, one before the nearest as the nearest,
    so no single pixel's error exceeds what the ground truth allows.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"depth shapes differ: {pred.shape} vs {gt.shape}")
    ok = np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
    if valid is not None:
        ok &= valid
    if not ok.any():
        return {"abs_rel": float("nan"), "delta1": float("nan"), "scale": float("nan"), "pixels": 0}
    scale = median_scale(pred, gt, ok) if align_median else 1.0
    p, g = pred[ok] * scale, gt[ok]
    if align_disparity:
        s, t = disparity_affine(p, g)
        p = 1.0 / np.clip(s / p + t, 1.0 / g.max(), 1.0 / g.min())
    ratio = np.maximum(p / g, g / p)
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)), "delta1": float(np.mean(ratio < 1.25)),
            "scale": scale, "pixels": int(ok.sum())}


def constant_depth(shape: tuple[int, int]) -> np.ndarray:
    """The trivial depth baseline: the same depth (1) at every pixel."""
    return np.ones(shape, np.float64)


def ramp_depth(shape: tuple[int, int]) -> np.ndarray:
    """The floor-and-wall depth baseline: disparity rising linearly from 0.5 on the top row to 1.5 on the bottom row
    (near below, far above, as a camera looking along a floor sees it). Under disparity scale+shift alignment every
    such ramp scores the same; the 3:1 depth range matters only for median (scale-only) alignment."""
    h, w = shape
    disparity = 0.5 + np.linspace(0.0, 1.0, h)[:, None] * np.ones((1, w))
    return 1.0 / disparity


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": …, "p90": …, "p99": …, "mean": …, "max": …}`` of ``values`` (NaN when empty)."""
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        return {**{f"p{q:g}": float("nan") for q in qs}, "mean": float("nan"), "max": float("nan")}
    out = {f"p{q:g}": float(np.percentile(v, q)) for q in qs}
    return {**out, "mean": float(v.mean()), "max": float(v.max())}
