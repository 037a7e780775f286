"""Multi-object tracking: constant-velocity Kalman filters (batched) with gated optimal assignment.

Tracks live in a fixed frame (odometry, or the key frame when there is none). Each detection measures a track's
position and velocity. Association minimises the summed distance between predicted and detected centres
(``scipy.optimize.linear_sum_assignment``) among pairs closer than the gate. A track is confirmed once it has
``confirm_hits`` detections AND its detected centre travelled at least ``min_travel`` over its last
``travel_window`` detections (in the fixed frame) in a direction within ``min_agreement`` (cosine) of the mean of
its detections' measured velocities: noise in the Gaussians' velocities makes clusters on static structure (depth
edges, grazing walls) look moving, but they stay where they are or wander in directions their velocity does not
point to. Where the travel agrees more closely (``early_agreement``), ``early_hits`` detections suffice, and a
detection marked decisive (``Detection.decisive``: evidence strong enough alone) starts a confirmed track. A track is
dropped once more than ``max_misses`` frames pass without a detection. An unmatched detection starts a track unless
it is marked as not founding (``Detection.founding``: a cluster too small to be trusted alone). Ids are random
128-bit UUIDs (version 4), fixed for a track's life.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from nut_ros.perception.params import ObstacleParams

UNMATCHED = 1e9  # cost of a pair outside the gate
# the constant-velocity model over dt: F = I + dt · _DRIFT; its white-acceleration noise Q = accel_std² · (dt⁴/4 ·
# _POS + dt³/2 · _CROSS + dt² · _VEL) (position, velocity blocks)
_DRIFT, _POS, _CROSS, _VEL = (np.kron(block, np.eye(3)) for block in
                              ([[0, 1], [0, 0]], [[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]))


@dataclass
class Detection:
    """Objects measured in one frame, in the fixed frame (their box extents along the camera's axes)."""

    center: np.ndarray  # [K, 3]
    velocity: np.ndarray  # [K, 3]
    size: np.ndarray  # [K, 3] extents along the camera optical frame's axes (the boxes are axis-aligned there)
    weight: np.ndarray  # [K] summed opacity
    velocity_cov: np.ndarray  # [3, 3] or [K, 3, 3] measurement covariance of the velocities (fixed-frame axes)
    founding: np.ndarray | None = None  # [K] bool: may start a track when unmatched (None: all may)
    decisive: np.ndarray | None = None  # [K] bool: a track it starts is confirmed at once (None: none)


@dataclass
class TrackState:
    """The tracks after an update (fixed frame), one row each."""

    ids: list[uuid.UUID]
    mean: np.ndarray  # [T, 6] position, velocity
    cov: np.ndarray  # [T, 6, 6]
    size: np.ndarray  # [T, 3] along the camera optical frame's axes (smoothed over the frames that detected it)
    hits: np.ndarray  # [T]
    misses: np.ndarray  # [T] frames since the last detection (0 = detected this frame)
    age: np.ndarray  # [T] frames since the track was created, coasted ones included (1 = created this frame)
    confirmed: np.ndarray  # [T] bool
    history: np.ndarray  # [T, travel_window, 3] last detected centres, oldest first
    filled: np.ndarray  # [T] detections in history (capped at travel_window)
    measured: np.ndarray  # [T, 3] sum of the detections' measured velocities


class MultiObjectTracker:
    """Call :meth:`update` once per frame with that frame's detections and the time since the last call."""

    def __init__(self, params: ObstacleParams, seed: int | None = None):
        self.p = params
        self._rng = random.Random(seed)
        self._motion: tuple[float, np.ndarray, np.ndarray] | None = None  # (dt, F, Q) of the last predict
        self.reset()

    def reset(self) -> None:
        w = self.p.travel_window
        self.state = TrackState([], np.zeros((0, 6)), np.zeros((0, 6, 6)), np.zeros((0, 3)), np.zeros(0, np.int64),
                                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros((0, w, 3)),
                                np.zeros(0, np.int64), np.zeros((0, 3)))
        self.coasted = 0  # frames predicted without detections (predict alone) since the last update

    def _new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def coast(self, dt: float) -> None:
        """Advance every track by ``dt`` seconds on a frame that could not detect (no trusted camera motion): no
        track counts a miss yet, but :attr:`coasted` counts the frame (a track is reported only while its misses plus
        the coasted frames stay within ``report_misses``); the next :meth:`update` counts the coasted frames as
        misses of the tracks it does not match."""
        self.predict(dt)
        self.coasted += 1

    def predict(self, dt: float) -> None:
        """Advance every track by ``dt`` seconds (constant velocity, white-acceleration process noise); each track
        ages by a frame."""
        s = self.state
        s.age += 1
        if self._motion is None or self._motion[0] != dt:  # (the same interval frame after frame: built once)
            f = np.eye(6) + dt * _DRIFT
            q = self.p.accel_std ** 2 * (dt ** 4 / 4 * _POS + dt ** 3 / 2 * _CROSS + dt ** 2 * _VEL)
            self._motion = (dt, f, q)
        _, f, q = self._motion
        s.mean = s.mean @ f.T
        s.cov = f @ s.cov @ f.T + q

    def update(self, det: Detection, dt: float) -> TrackState:
        """Predict by ``dt``, associate, correct, create and retire tracks; returns the new state."""
        self.predict(dt)
        coasted, self.coasted = self.coasted, 0
        s, p = self.state, self.p
        n_t, n_d = s.mean.shape[0], det.center.shape[0]
        rows = cols = np.zeros(0, int)
        if n_t and n_d:
            cost = np.linalg.norm(s.mean[:, None, :3] - det.center[None], axis=-1)
            cost = np.where(cost <= p.gate, cost, UNMATCHED)
            rows, cols = linear_sum_assignment(cost)
            ok = cost[rows, cols] < UNMATCHED
            rows, cols = rows[ok], cols[ok]

        # Kalman correction of the matched tracks with z = (position, velocity), H = I
        r = np.zeros((n_d, 6, 6))
        r[:, :3, :3] = np.eye(3) * p.position_std ** 2
        r[:, 3:, 3:] = det.velocity_cov
        if rows.size:
            mean, cov = s.mean[rows], s.cov[rows]
            z = np.concatenate([det.center[cols], det.velocity[cols]], 1)
            gain = cov @ np.linalg.inv(cov + r[cols])
            s.mean[rows] = mean + np.einsum("nij,nj->ni", gain, z - mean)
            s.cov[rows] = cov - gain @ cov
            s.size[rows] = 0.7 * s.size[rows] + 0.3 * det.size[cols]
            s.hits[rows] += 1
            s.history[rows] = np.concatenate([s.history[rows, 1:], det.center[cols, None]], 1)
            s.filled[rows] = np.minimum(s.filled[rows] + 1, p.travel_window)
            s.measured[rows] += det.velocity[cols]
        s.misses += 1 + coasted  # (the frames coasted since the last update had no detection either)
        s.misses[rows] = 0
        if n_t:
            oldest = s.history[np.arange(n_t), p.travel_window - np.maximum(s.filled, 1)]
            step = s.history[:, -1] - oldest
            travel = np.linalg.norm(step, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):  # cosine of travel and measured velocity (-1: none)
                agreement = (step * s.measured).sum(1) / (travel * np.linalg.norm(s.measured, axis=1))
            agreement[np.isnan(agreement)] = -1.0
            s.confirmed |= (travel >= p.min_travel) & (((s.hits >= p.confirm_hits) & (agreement >= p.min_agreement))
                                                       | ((s.hits >= p.early_hits) & (agreement >= p.early_agreement)))

        keep = s.misses <= p.max_misses
        fresh = np.ones(n_d, bool)  # the unmatched detections that may start a track
        fresh[cols] = False
        if det.founding is not None:
            fresh &= det.founding
        fresh = np.flatnonzero(fresh)
        if not fresh.size and keep.all():  # the same tracks
            return s
        history = np.zeros((fresh.size, p.travel_window, 3))
        history[:, -1] = det.center[fresh]
        confirmed_at_birth = np.full(fresh.size, p.confirm_hits <= 1 and p.min_travel <= 0 and p.min_agreement <= -1)
        if det.decisive is not None:
            confirmed_at_birth |= det.decisive[fresh]
        self.state = TrackState(
            [i for i, k in zip(s.ids, keep) if k] + [self._new_id() for _ in fresh],
            np.concatenate([s.mean[keep], np.concatenate([det.center[fresh], det.velocity[fresh]], 1)]),
            np.concatenate([s.cov[keep], r[fresh]]),
            np.concatenate([s.size[keep], det.size[fresh]]),
            np.concatenate([s.hits[keep], np.ones(fresh.size, np.int64)]),
            np.concatenate([s.misses[keep], np.zeros(fresh.size, np.int64)]),
            np.concatenate([s.age[keep], np.ones(fresh.size, np.int64)]),
            np.concatenate([s.confirmed[keep], confirmed_at_birth]),
            np.concatenate([s.history[keep], history]), np.concatenate([s.filled[keep], np.ones(fresh.size, np.int64)]),
            np.concatenate([s.measured[keep], det.velocity[fresh]]))
        return self.state
