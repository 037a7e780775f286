"""Semi-dense inverse depth -> dense: confidence-weighted push-pull fill, then an edge-aware guided filter.

The push-pull fill (Gortler et al. 1996) averages the known values over a pyramid and lets every level fill what the
finer one lacks, so holes take the values around them, smoothly and at any size. The guided filter (He et al. 2010,
grey image as the guide) then pulls the result's edges onto the image's: inside a window the output is an affine
function of the image, so depth steps line up with colour edges and flat image regions get flat depth.
"""
from __future__ import annotations

import cv2
import numpy as np


def push_pull(values: np.ndarray, weights: np.ndarray, min_size: int = 2) -> np.ndarray:
    """``values [h, w]`` filled where ``weights`` (≥ 0) are 0, from the weighted values around them."""
    wv = [np.where(weights > 0, values * weights, 0).astype(np.float32)]
    w = [weights.astype(np.float32)]
    while min(w[-1].shape) > min_size:
        h2, w2 = (w[-1].shape[0] + 1) // 2, (w[-1].shape[1] + 1) // 2
        wv.append(cv2.resize(wv[-1], (w2, h2), interpolation=cv2.INTER_AREA) * 4)
        w.append(cv2.resize(w[-1], (w2, h2), interpolation=cv2.INTER_AREA) * 4)
    filled = wv[-1].sum() / max(w[-1].sum(), 1e-12) * np.ones_like(w[-1])
    for level in range(len(w) - 1, -1, -1):
        size = w[level].shape[::-1]
        up = cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR) if filled.shape != w[level].shape else filled
        trust = np.clip(w[level], 0, 1)
        own = wv[level] / np.maximum(w[level], 1e-12)
        filled = trust * own + (1 - trust) * up
    return filled


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of ``src`` by the grey ``guide`` (both float32 ``[h, w]``, guide in [0, 1])."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def densify(inv_depth: np.ndarray, confidence: np.ndarray, grey: np.ndarray, radius: int = 4,
            eps: float = 1e-3) -> np.ndarray:
    """Dense inverse depth ``[h, w]`` float32 from a semi-dense one (``confidence`` 0 where unknown) and the grey
    image (uint8) it belongs to; values stay within the range of the known ones."""
    known = confidence > 0
    filled = push_pull(np.where(known, inv_depth, 0), confidence)
    out = guided_filter(grey.astype(np.float32) / 255.0, filled.astype(np.float32), radius, eps)
    lo, hi = float(inv_depth[known].min()), float(inv_depth[known].max())
    return np.clip(out, lo, hi).astype(np.float32)
