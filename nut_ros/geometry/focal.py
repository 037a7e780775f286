"""The camera's focal length from odometry: the one that puts the image's own motion on the odometry's epipolar lines.

A focal length that is wrong in the camera model (the CameraInfo of another sensor, the assumed field of view when
there is none) scales metric depth from motion by the ratio of the two (``ρ ∝ parallax / (f · baseline)``), and the
odometry's translation cannot reveal it. Its rotation can: a turning camera's tracks move by ``f`` times the angle,
so only the true focal length puts them on the epipolar lines of the odometry's relative pose.

:class:`FocalCalibration` sums, for every frame pair with odometry, the mean truncated squared Sampson distance
(:func:`.two_view.sampson_px`) of the pair's tracks at each focal scale of a log-spaced grid (``fx`` and ``fy``
times the scale, principal point kept). Once ``min_pairs`` pairs that turned by at least ``min_rotation_deg`` are
in, the scale is the grid's minimum (refined by a parabola through it and its neighbours) where the given focal
length's cost exceeds the minimum's by ``min_gain``, else 1 (the given intrinsics are trusted unless the tracks
clearly disagree: early pairs are noisy, and on fast rotations a focal length off by 3 % costs more metric depth
error than it explains); it changes only by more than ``tolerance``. On the training sequences (256 px wide,
consecutive frames of the study's stride; ratio of the given focal length's cost to the minimum's after 20 pairs
and at the end): TUM fr1_rpy with its calibrated intrinsics 1.004 and 1.000 (scale 1), with a focal length 13 %
too long 1.15 and 1.52 (the true one within 0.3 %); TartanAir 1.014 and 1.001, 13 % too long 1.40 and 1.12 (within
1.3 %).
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

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0, steps: int = 81, truncate_px: float = 2.0,
                 min_pairs: int = 10, min_rotation_deg: float = 0.5, min_gain: float = 0.05,
                 tolerance: float = 0.002):
        self.grid = np.exp(np.linspace(math.log(min_scale), math.log(max_scale), steps))
        self.truncate_px, self.min_pairs, self.min_gain, self.tolerance = truncate_px, min_pairs, min_gain, tolerance
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
        distance = sampson_px(p_cur, p_ref, K, rel.R, rel.t, focal_scales=self.grid)
        self._cost += np.minimum(distance ** 2, self.truncate_px ** 2).mean(1)
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
