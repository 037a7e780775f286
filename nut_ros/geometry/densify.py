"""Semi-dense inverse depth -> dense: a confidence-weighted, image-guided smooth fill (a membrane), solved coarse to
fine.

The dense map ``x`` minimises ``Σ_p c_p (x_p - ρ_p)² + λ Σ_(p,q) a_pq (x_p - x_q)²`` over 4-neighbour pairs, where
``c`` is the confidence (0 where unknown) and ``a_pq = exp(-((I_p - I_q) / σ)⁴)`` lets the depth change where the
grey image ``I`` has an edge: about 1 across texture and noise (0.94 at σ/2), nearly 0 across a step of 1.5 σ or
more. Where values are known the fill follows them, smoothed over a few pixels (``λ`` against confidences of at
most 1); between them (the textureless walls, floors and tables where motion gives no depth) it interpolates, as a
stretched membrane does: linearly across a hole in one direction, which suits inverse depth (affine in the image on
a plane); across an image edge the coupling is nearly cut, so a depth step can sit there.

``λ = 2`` and ``σ = 40`` grey levels were chosen on TUM fr1_rpy's first 80 % and TartanAir (with
``test/bench/depth_from_motion_study.py``): from ``λ = 1`` to ``30`` the dense AbsRel there drops by at most 0.02
(a stronger ``λ`` averages more of the semi-dense noise), while on the generated room of
``test/test_geometry_depth_from_motion.py`` (exact geometry, RGB only) it rises from 0.04-0.05 (``λ = 1``) and
0.05-0.07 (``λ = 2``) to 0.15-0.20 (``λ = 30``, median-aligned): a strong ``λ`` blurs depth steps where the image
has texture but no edge. ``σ`` of 25 or less cuts texture into islands that keep their own outliers.

With a plane prior of weight ``ε`` (``plane_weight``) the energy gains ``ε Σ_p (x_p - P_p)²``, where ``P`` is the
plane of the known values (inverse depth affine in the image, a weighted least-squares fit, clipped to their
10th-90th percentile): where values are known ``ε`` (0.003 in depth from motion) is nothing against their
confidence, but in a large hole the membrane alone relaxes towards the average of the hole's rim (towards the image
border it flattens), and the prior makes it follow the scene's overall slant (a floor, a wall seen at an angle).
It is solved as the membrane fill of the residual to ``P`` with every pixel known at least with weight ``ε``.

The result is clipped to the 5th-95th percentile of the known values: the extremes of a semi-dense map are mostly
outliers, and a fill that reaches beyond them in a few pixels (one far pixel aligned to a negative disparity counts
as wrong by the largest ratio) cost TUM with odometry 0.09 of its mean scale+shift AbsRel (0.302 unclipped, 0.214
clipped; TartanAir unchanged, 0.307).

The solve is a pyramid: the confidence-weighted values and the grey image are shrunk by 2 down to a few pixels; the
coarsest level starts from the weighted mean, every level starts from the one below it (bilinear) and takes a few
Jacobi sweeps (many where the level is small, few at full size), so large holes get their values from far away at
the cost of a handful of full-size passes.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Jacobi sweeps per pyramid level, full size first; smaller levels than listed take the last count
SWEEPS = (3, 5, 10, 20, 40, 80)
#: levels of at most this many pixels sweep as a dense matrix: the coarsest, whose many sweeps cost more in numpy's
#: overhead per operation than in arithmetic (a fill of 256x192 pixels: 3.4 -> 2.6 ms with the couplings scaled once)
MATRIX_PIXELS = 192
#: the plane prior's plane is clipped to these quantiles of the known values (and 1 minus it): a plane extrapolated
#: to the image corners reaches beyond the values, and its extremes are what a per-frame disparity alignment turns
#: negative (with odometry, TartanAir's scale+shift AbsRel had 3 % of its frames above 1 with the plane clipped only
#: to the output's 5th-95th percentile, none with 10th-90th; ε = 0.003)
PLANE_RANGE_CUT = 0.1


def _pyramid(x: np.ndarray, levels: int, sums: bool) -> list[np.ndarray]:
    """``x`` and its halvings (area averages; times 4 for ``sums``: weights and weighted values add up)."""
    out = [x]
    for _ in range(levels - 1):
        h2, w2 = (out[-1].shape[0] + 1) // 2, (out[-1].shape[1] + 1) // 2
        out.append(cv2.resize(out[-1], (w2, h2), interpolation=cv2.INTER_AREA) * (4 if sums else 1))
    return out


def _sweeps(x: np.ndarray, data: np.ndarray, weight: np.ndarray, grey: np.ndarray, smoothness: float,
            edge_sigma: float, count: int) -> np.ndarray:
    """``count`` Jacobi sweeps of the membrane's normal equations on one level (``data`` = weight * value)."""
    ax = smoothness * np.exp(-np.square(np.square(np.diff(grey, axis=1) / edge_sigma)))  # pairs (p, p + 1 column)
    ay = smoothness * np.exp(-np.square(np.square(np.diff(grey, axis=0) / edge_sigma)))  # pairs (p, p + 1 row)
    diag = weight.copy()
    diag[:, :-1] += ax
    diag[:, 1:] += ax
    diag[:-1] += ay
    diag[1:] += ay
    inv_diag = 1.0 / np.maximum(diag, 1e-12)
    # x ← D⁻¹ (data + A x), with D⁻¹ folded into the couplings of each side
    base, right, left = data * inv_diag, ax * inv_diag[:, :-1], ax * inv_diag[:, 1:]
    down, up = ay * inv_diag[:-1], ay * inv_diag[1:]
    if x.size <= MATRIX_PIXELS:  # a small level: its sweeps as one matrix, two operations a sweep instead of nine
        h, w = x.shape
        i = np.arange(h * w).reshape(h, w)
        G = np.zeros((h * w, h * w), np.float32)
        G[i[:, :-1], i[:, 1:]], G[i[:, 1:], i[:, :-1]], G[i[:-1], i[1:]], G[i[1:], i[:-1]] = right, left, down, up
        xv, b = x.ravel(), base.ravel()
        for _ in range(count):
            xv = G @ xv + b
        return xv.reshape(h, w)
    for _ in range(count):
        new = base.copy()
        new[:, :-1] += right * x[:, 1:]
        new[:, 1:] += left * x[:, :-1]
        new[:-1] += down * x[1:]
        new[1:] += up * x[:-1]
        x = new
    return x


def _plane(inv_depth: np.ndarray, weight: np.ndarray, known: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The plane of the known values: inverse depth affine in the image, fitted by weighted least squares (its normal
    equations), clipped to ``[lo, hi]``."""
    h, w = known.shape
    v, u = np.nonzero(known)
    y, sw = inv_depth[v, u].astype(np.float64), weight[v, u].astype(np.float64)
    A = np.stack([np.ones(len(u)), u / w - 0.5, v / h - 0.5], 1)
    Aw = A * sw[:, None]
    try:
        c = np.linalg.solve(Aw.T @ A, Aw.T @ y)
    except np.linalg.LinAlgError:  # the known values on one line: no plane
        c = np.linalg.lstsq(Aw.T @ A, Aw.T @ y, rcond=None)[0]
    gu, gv = np.arange(w) / w - 0.5, np.arange(h) / h - 0.5
    plane = c[0] + c[1] * gu[None, :] + c[2] * gv[:, None]
    return np.clip(plane, lo, hi).astype(np.float32)


def densify(inv_depth: np.ndarray, confidence: np.ndarray, grey: np.ndarray, smoothness: float = 2.0,
            edge_sigma: float = 40.0, range_cut: float = 0.05, plane_weight: float = 0.0) -> np.ndarray:
    """Dense inverse depth ``[h, w]`` float32 from a semi-dense one (``confidence`` ≥ 0, 0 where unknown) and the
    grey image (uint8) it belongs to: the membrane fill of the module docstring with ``λ = smoothness`` and
    ``σ = edge_sigma`` grey levels (and, with ``plane_weight`` > 0, the plane prior of ``ε = plane_weight``),
    clipped to the ``range_cut`` and ``1 - range_cut`` quantiles of the known values. No known value: ValueError."""
    known = confidence > 0
    if not known.any():
        raise ValueError("densify needs at least one pixel with confidence > 0")
    weight = np.where(known, confidence, 0).astype(np.float32)
    lo, plane_lo, plane_hi, hi = np.quantile(inv_depth[known], [range_cut, PLANE_RANGE_CUT, 1 - PLANE_RANGE_CUT,
                                                               1 - range_cut])
    plane = (_plane(inv_depth, weight, known, plane_lo, plane_hi) if plane_weight > 0 and known.sum() >= 3
             else np.float32(0))
    data = np.where(known, (inv_depth - plane) * weight, 0).astype(np.float32)
    weight = weight + np.float32(plane_weight)  # every pixel pulled (weakly) towards the plane: residual 0
    levels = 1
    while min(weight.shape) >> levels >= 4:
        levels += 1
    weights, datas = _pyramid(weight, levels, True), _pyramid(data, levels, True)
    greys = _pyramid(grey.astype(np.float32), levels, False)
    x = np.full(weights[-1].shape, datas[-1].sum() / weights[-1].sum(), np.float32)
    for level in range(levels - 1, -1, -1):
        if x.shape != weights[level].shape:
            x = cv2.resize(x, weights[level].shape[::-1], interpolation=cv2.INTER_LINEAR)
        x = _sweeps(x, datas[level], weights[level], greys[level], smoothness, edge_sigma,
                    SWEEPS[min(level, len(SWEEPS) - 1)])
    return np.clip(x + plane, lo, hi).astype(np.float32)
