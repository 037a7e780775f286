"""The camera's focal length from odometry: the one that puts the image's own motion on the odometry's epipolar lines.

A focal length that is wrong in the camera model (the CameraInfo of another sensor, the assumed field of view when
there is none) scales metric depth from motion by the ratio of the two (``ρ ∝ parallax / (f · baseline)``), and the
odometry's translation cannot reveal it. Its rotation can: a turning camera's tracks move by ``f`` times the angle,
so only the true focal length puts them on the epipolar lines of the odometry's relative pose.

:class:`FocalCalibration` sums, for every frame pair with odometry that turned by at least ``min_rotation_deg``,
the log of the mean squared Sampson distance (:func:`.two_view.sampson_px`, plus ``floor_px²``) of the pair's tracks
at each focal scale of a log-spaced grid (``fx`` and ``fy`` times the scale, principal point kept), over the best
``trim`` share of the tracks at that scale: a moving object's tracks are off every epipolar line (counted in, on
generated rooms with movers they pulled the scale to 1.2-1.7), and the log weighs every pair alike (summed
distances let a few blurred pairs decide). Once ``min_pairs`` pairs are in, the scale is the grid's minimum
(refined by a parabola through it and its neighbours) where the given focal length's cost exceeds the minimum's by
``min_log_gain`` per pair, else 1: the given intrinsics are trusted unless the tracks clearly disagree (on fast
rotations a focal length off by 3 % costs more metric depth error than it explains). The scale changes only by more
than ``tolerance``. Chosen on the training sequences (256 px wide, consecutive frames of the study's stride; the
log gain per pair of the minimum over the given focal length after 5, 10, 20 and 50 pairs): TUM fr1_rpy with its
calibrated intrinsics 0.100, 0.026, 0.066 and 0.098 (scale 1 throughout), with a focal length 13 % too long 0.47,
0.37, 0.34 and 0.63 (the true one found within 2-4 %, 0.1 % at the end); TartanAir 0 (scale 1); generated rooms
with moving objects (seeds 0-3): scale 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nut_ros.core.rotations import rotation_angle
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
                 min_pairs: int = 5, min_rotation_deg: float = 0.5, min_log_gain: float = 0.2,
                 tolerance: float = 0.002, floor_px: float = 0.01):
        self.grid = np.exp(np.linspace(math.log(min_scale), math.log(max_scale), steps))
        self.trim, self.min_pairs, self.min_log_gain, self.tolerance = trim, min_pairs, min_log_gain, tolerance
        self.floor = floor_px ** 2
        self._given = int(np.argmin(np.abs(np.log(self.grid))))  # the grid's scale 1
        self.min_rotation = math.radians(min_rotation_deg)
        self.reset()

    def reset(self) -> None:
        self._cost = np.zeros(len(self.grid))
        self._pairs = 0
        self._K: np.ndarray | None = None
        self.scale = 1.0

    def add(self, K: np.ndarray, rel: RelativePose, tracks: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        """A pair whose odometry is ``rel`` and whose tracks ``p_cur``, ``p_ref`` (pixels of intrinsics ``K`` as given)
        ``tracks()`` makes, called only for a pair that turned enough (a still camera needs none); returns whether
        :attr:`scale` changed. Other intrinsics than the last ones start over."""
        if self._K is None or not np.allclose(K, self._K):
            changed = self.scale != 1.0
            self.reset()
            self._K = K.copy()
        else:
            changed = False
        angle = rotation_angle(rel.R)
        if np.linalg.norm(rel.t) < 1e-9 or angle < self.min_rotation:
            return changed
        p_cur, p_ref = tracks()
        if len(p_cur) < 8:
            return changed
        squared = sampson_px(p_cur, p_ref, K, rel.R, rel.t, focal_scales=self.grid) ** 2
        kept = max(1, int(self.trim * squared.shape[1]))
        self._cost += np.log(np.partition(squared, kept - 1, axis=1)[:, :kept].mean(1) + self.floor)
        self._pairs += 1
        if self._pairs < self.min_pairs:
            return changed
        gain = (self._cost[self._given] - self._cost.min()) / self._pairs
        best = self._minimum() if gain >= self.min_log_gain else 1.0
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
