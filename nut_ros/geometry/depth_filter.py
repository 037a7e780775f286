"""Per-pixel Gaussian inverse depth over a stream (a depth filter in the manner of REMODE/SVO): the fused map of the
last frame is carried into the new one by the camera's motion, grows a little less certain, and absorbs the new
frame's measurement by inverse-variance weighting.

An :class:`InverseDepthMap` holds, per pixel of one frame, the mean inverse depth ``ρ`` and its variance ``σ²``
(``ρ`` NaN where nothing is known) and how many measurements it has absorbed.

- :func:`propagate`: every known pixel is lifted to 3D with its ``ρ``, moved by the relative pose and splatted to its
  nearest pixel of the new frame (z-buffer: the nearest surface wins); ``σ`` follows ``∂ρ_new/∂ρ``; a one-pixel crack
  that the splat leaves (the camera moved forward) takes the farthest of its known neighbours, so a hole that opens
  behind a foreground edge gets the background; then ``σ² += (process_noise · ρ)²``, for the error the pose and the
  splat add per frame.
- :func:`fuse`: where the prior and the measurement agree within ``max_sigmas`` of their joint spread they are
  averaged by inverse variance; where they disagree (something moved, or either is a wrong match: which one is not
  known) the pixel is forgotten and the next measurement there starts it anew; a pixel that only the measurement
  has is started from it; one that only the prior has grows less certain (it was not confirmed).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class InverseDepthMap:
    """Gaussian inverse depth per pixel of one frame (all ``[h, w]``)."""

    rho: np.ndarray  # float32 mean ρ = 1/Z, NaN where unknown
    var: np.ndarray  # float32 σ_ρ², NaN where unknown
    count: np.ndarray  # uint16 measurements absorbed

    @classmethod
    def measured(cls, rho: np.ndarray, sigma: np.ndarray) -> InverseDepthMap:
        """One measurement (``rho`` NaN where there is none) as a map."""
        known = np.isfinite(rho)
        return cls(np.where(known, rho, np.nan).astype(np.float32),
                   np.where(known, sigma * sigma, np.nan).astype(np.float32), known.astype(np.uint16))

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.rho)

    def rel_sigma(self) -> np.ndarray:
        """``σ_ρ / ρ`` (NaN where unknown)."""
        return np.sqrt(self.var) / self.rho

    def scaled(self, s: float) -> InverseDepthMap:
        """The same map with every inverse depth times ``s`` (a change of the length unit)."""
        return InverseDepthMap(self.rho * np.float32(s), self.var * np.float32(s * s), self.count)

    def pruned(self, max_rel_sigma: float) -> InverseDepthMap:
        """Pixels whose relative uncertainty grew past ``max_rel_sigma`` (or whose ``ρ`` is not positive) forgotten."""
        with np.errstate(invalid="ignore"):
            drop = ~(self.rel_sigma() <= max_rel_sigma) | ~(self.rho > 0)
        return InverseDepthMap(np.where(drop, np.nan, self.rho).astype(np.float32),
                               np.where(drop, np.nan, self.var).astype(np.float32),
                               np.where(drop, 0, self.count).astype(np.uint16))


def propagate(prior: InverseDepthMap, R: np.ndarray, t: np.ndarray, K: np.ndarray,
              process_noise: float) -> InverseDepthMap:
    """``prior`` moved into a camera with ``X_new = R X_old + t`` (same intrinsics ``K``, same size)."""
    h, w = prior.rho.shape
    flat = np.flatnonzero(prior.known)
    v, u = np.divmod(flat, w)
    rho = prior.rho.ravel()[flat].astype(np.float64)
    M = R @ np.linalg.inv(K)
    m0, m1, m2 = (M[r, 0] * u + M[r, 1] * v + M[r, 2] for r in range(3))  # R K⁻¹ x
    x0, x1, z = m0 / rho + t[0], m1 / rho + t[1], m2 / rho + t[2]  # the point in the new camera
    with np.errstate(divide="ignore", invalid="ignore"):  # behind the camera (z ≤ 0): dropped below
        un = np.rint((K[0, 0] * x0 + K[0, 1] * x1) / z + K[0, 2])
        vn = np.rint((K[1, 0] * x0 + K[1, 1] * x1) / z + K[1, 2])
    keep = np.flatnonzero((z > 1e-9) & (un >= 0) & (un < w) & (vn >= 0) & (vn < h))
    rho_new = 1.0 / z[keep]
    # ρ_new = 1 / (r₃·m / ρ + t_z): ∂ρ_new/∂ρ = r₃·m ρ_new² / ρ²
    gain = m2[keep] * (rho_new / rho[keep]) ** 2
    var_new = prior.var.ravel()[flat[keep]] * gain * gain
    count = prior.count.ravel()[flat[keep]]
    idx = vn[keep].astype(np.int64) * w + un[keep].astype(np.int64)
    nearest = np.full(h * w, -np.inf)
    np.maximum.at(nearest, idx, rho_new)
    win = rho_new >= nearest[idx]  # the nearest surface of each pixel (ties hold equal values)
    out_rho = np.full(h * w, np.nan, np.float32)
    out_var = np.full(h * w, np.nan, np.float32)
    out_count = np.zeros(h * w, np.uint16)
    out_rho[idx[win]], out_var[idx[win]], out_count[idx[win]] = rho_new[win], var_new[win], count[win]
    out = InverseDepthMap(out_rho.reshape(h, w), out_var.reshape(h, w), out_count.reshape(h, w))
    _fill_cracks(out)
    out.var += (np.float32(process_noise) * out.rho) ** 2
    return out


def _fill_cracks(m: InverseDepthMap, min_neighbours: int = 4) -> None:
    """Unknown pixels with at least ``min_neighbours`` known ones of 8 take the farthest (smallest ``ρ``) of them and
    the largest variance around them (in place)."""
    known = m.known
    kernel = np.ones((3, 3), np.uint8)
    n = cv2.filter2D(known.astype(np.float32), -1, kernel.astype(np.float32), borderType=cv2.BORDER_CONSTANT)
    crack = ~known & (n >= min_neighbours)
    if not crack.any():
        return
    far = cv2.erode(np.where(known, m.rho, np.inf).astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    loose = cv2.dilate(np.where(known, m.var, 0).astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    m.rho[crack], m.var[crack] = far[crack], loose[crack]
    m.count[crack] = 1


def fuse(prior: InverseDepthMap, measured: InverseDepthMap, max_sigmas: float,
         unconfirmed_noise: float) -> InverseDepthMap:
    """``prior`` and ``measured`` (one frame, one unit) fused: averaged by inverse variance where they agree within
    ``max_sigmas`` joint σ; forgotten where they disagree (the next measurement there starts the pixel anew); the
    measurement alone where the prior has nothing; the prior alone elsewhere, with ``σ² += (unconfirmed_noise · ρ)²``
    (a measurement that does not confirm a pixel makes it less certain: on the training sequences a pixel measured
    once and never again is the least accurate kind)."""
    both = prior.known & measured.known
    with np.errstate(invalid="ignore"):
        spread = max_sigmas * max_sigmas * (prior.var + measured.var)
        agree = both & ((measured.rho - prior.rho) ** 2 <= spread)
    drop = both & ~agree
    take = measured.known & ~prior.known
    alone = prior.known & ~measured.known
    rho, var, count = prior.rho.copy(), prior.var.copy(), prior.count.copy()
    wp, wm = 1.0 / prior.var[agree], 1.0 / measured.var[agree]
    rho[agree] = (prior.rho[agree] * wp + measured.rho[agree] * wm) / (wp + wm)
    var[agree] = 1.0 / (wp + wm)
    count[agree] = np.minimum(count[agree].astype(np.int64) + 1, np.iinfo(np.uint16).max)
    rho[take], var[take], count[take] = measured.rho[take], measured.var[take], 1
    rho[drop], var[drop], count[drop] = np.nan, np.nan, 0
    var[alone] += (np.float32(unconfirmed_noise) * rho[alone]) ** 2
    return InverseDepthMap(rho, var, count)


def median_scale(prior: InverseDepthMap, measured: InverseDepthMap, min_pixels: int) -> float | None:
    """The factor that brings ``measured`` to the unit of ``prior``: the median ratio of their inverse depths where
    both are known, or None when fewer than ``min_pixels`` are."""
    both = prior.known & measured.known
    if both.sum() < min_pixels:
        return None
    return float(np.median(prior.rho[both] / measured.rho[both]))
