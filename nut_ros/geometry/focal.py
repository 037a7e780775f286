"""The camera's focal length from odometry: the one that puts the image's own motion on the odometry's epipolar lines.

A focal length that is wrong in the camera model (the CameraInfo of another sensor, the assumed field of view when
there is none) scales metric depth from motion by the ratio of the two (``ρ ∝ parallax / (f · baseline)``), and the
odometry's translation cannot reveal it. Its rotation can: a turning camera's tracks move by ``f`` times the angle,
so only the true focal length puts them on the epipolar lines of the odometry's relative pose.

:class:`FocalCalibration` sums, for every frame pair with odometry, the mean squared Sampson distance
(:func:`.two_view.sampson_px`) of the pair's tracks at each focal scale of a log-spaced grid (``fx`` and ``fy``
times the scale, principal point kept), over the best ``trim`` share of the tracks at that scale (a moving object's
tracks are off every epipolar line: counted in, on generated rooms with movers they pulled the scale to 1.2-1.7).
Once ``min_pairs`` pairs that turned by at least ``min_rotation_deg`` are in, the scale is the grid's minimum
(refined by a parabola through it and its neighbours) where the given focal length's cost exceeds the minimum's by
``min_gain``, else 1: the given intrinsics are trusted unless the tracks clearly disagree (early pairs are noisy,
and on fast rotations a focal length off by 3 % costs more metric depth error than it explains). The scale changes
only by more than ``tolerance``. Chosen on the training sequences (256 px wide, consecutive frames of the study's
stride; ratio of the given focal length's cost to the minimum's after 20 pairs, its largest after that, and at the
end): TUM fr1_rpy with its calibrated intrinsics 1.009, 1.028 and 1.000 (scale 1 throughout), with a focal length
13 % too long 1.27, 2.5 and 2.1 (the true one found within 0.3 % at the end); TartanAir 1.000, 1.003 and 1.003
(scale 1), 13 % too long 5.4, 5.4 and 2.2 (within 1 %); generated rooms with moving objects (seeds 0-3) scale 1.
"""
from __future__ import annotations

import math

import numpy as np

from nut_ros.geometry.two_view import RelativePose, sampson_px


def with_focal_scale(K: np.ndarray, s: float) -> np.ndarray:
    """``K`` with ``fx`` and ``fy`` times ``s`` (principal point kept)."""
    out = np.array(K, np.float64)
    out[0, 0] *= s
    out[1, 1] *= s
    return out


class FocalCalibration:
    """Feed :meth:`add` with the tracks of consecutive frames and their odometry; :attr:`scale` is the focal scale
    to apply to the given intrinsics (1 until the evidence suffices)."""

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0, steps: int = 81, trim: float = 0.8,
                 min_pairs: int = 20, min_rotation_deg: float = 0.5, min_gain: float = 0.1,
                 tolerance: float = 0.002):
        self.grid = np.exp(np.linspace(math.log(min_scale), math.log(max_scale), steps))
        self.trim, self.min_pairs, self.min_gain, self.tolerance = trim, min_pairs, min_gain, tolerance
        self._given = int(np.argmin(np.abs(np.log(self.grid))))  # the grid's scale 1
        self.min_rotation = math.radians(min_rotation_deg)
        self.reset()

    def reset(self) -> None:
        self._cost = np.zeros(len(self.grid))
        self._pairs = 0
        self._K: np.ndarray | None = None
        self.scale = 1.0

    def add(self, p_cur: np.ndarray, p_ref: np.ndarray, K: np.ndarray, rel: RelativePose) -> bool:
        """Tracks ``p_cur``, ``p_ref`` (pixels of intrinsics ``K`` as given) of a pair whose odometry is ``rel``;
        returns whether :attr:`scale` changed. Other intrinsics than the last ones start over."""
        if self._K is None or not np.allclose(K, self._K):
            changed = self.scale != 1.0
            self.reset()
            self._K = K.copy()
        else:
            changed = False
        if len(p_cur) < 8 or np.linalg.norm(rel.t) < 1e-9:
            return changed
        squared = sampson_px(p_cur, p_ref, K, rel.R, rel.t, focal_scales=self.grid) ** 2
        kept = max(1, int(self.trim * squared.shape[1]))
        self._cost += np.partition(squared, kept - 1, axis=1)[:, :kept].mean(1)
        angle = math.acos(float(np.clip((np.trace(rel.R) - 1) / 2, -1, 1)))
        self._pairs += angle >= self.min_rotation
        if self._pairs < self.min_pairs:
            return changed
        best = self._minimum() if self._cost[self._given] >= (1 + self.min_gain) * self._cost.min() else 1.0
        if abs(math.log(best / self.scale)) > math.log1p(self.tolerance):
            self.scale = best
            return True
        return changed

    def _minimum(self) -> float:
        c, i = self._cost, int(np.argmin(self._cost))
        if i in (0, len(c) - 1):
            return float(self.grid[i])
        curvature = c[i - 1] - 2 * c[i] + c[i + 1]
        offset = 0.5 * (c[i - 1] - c[i + 1]) / curvature if curvature > 0 else 0.0
        step = math.log(self.grid[1] / self.grid[0])
        return float(math.exp(math.log(self.grid[i]) + offset * step))
