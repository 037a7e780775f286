"""Depth rate from geometry: how far each Gaussian's depth moved over the last few frames, along its pixel ray.

The Gaussians' own velocities carry the image-plane motion (optical flow, attenuated on small movers) but their
depth rate poorly, so an object moving straight towards or away from the camera barely shows in them. Here the
Gaussians of the frame ``baseline`` frames back (or the oldest remembered, after a restart), kept in the fixed
frame, are projected into the current camera (odometry pose, or the integrated camera motion) and binned into a
coarse grid (``cell_px`` pixels), as are the current Gaussians: mean, nearest and farthest depth per cell. A cell's
depth rate is its current mean depth minus the old one, divided by the time between the two frames: the depth rate
of whatever surface is seen there, with the camera's motion removed by the projection (comparing means of the same
cell cancels the slope of a slanted surface). A longer baseline divides the depth noise by its length while a
mover's displacement grows with it. Every current Gaussian gets its cell's rate. It is unknown (NaN) where the
cell is empty in either frame, spans a depth edge in either (farthest/nearest above ``1 + edge_ratio``: parallax
reveals or hides background there), or moved away faster than ``max_speed`` (background revealed behind a mover:
the surface seen now is not the one seen before). Rates towards the camera beyond ``max_speed`` (a mover now in
front of what was seen there) are clipped to ``-max_speed``.

:meth:`DepthChange.shift_velocity` reads the image-plane motion from the same two frames (after :meth:`rate`):
the whole-cell shift of the older nearest-depth grid that best matches the current one around each cell (a mover's
depth silhouette moves with it, where optical flow of a small far object can read almost nothing).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from nut_ros.core.geometry import Intrinsics

SHIFT_DIFF_CAP = 0.3  # relative depth difference a cell contributes to a shift's cost at most (empty cells too)


def image_cells(points: np.ndarray, k: Intrinsics, cell_px: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per point (camera frame): its cell of a ``cell_px`` grid over the image (flat index), whether it projects
    inside the image, and the number of cells."""
    gw, gh = -(-k.width // cell_px), -(-k.height // cell_px)
    z = points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.floor((k.fx * points[:, 0] / z + k.cx + 0.5) / cell_px)
        v = np.floor((k.fy * points[:, 1] / z + k.cy + 0.5) / cell_px)
    inside = (z > 0) & (u >= 0) & (u < gw) & (v >= 0) & (v < gh)
    flat = np.where(inside, v * gw + u, 0).astype(np.int64)
    return flat, inside, gw * gh


def cell_mean(points: np.ndarray, values: np.ndarray, k: Intrinsics, cell_px: int) -> np.ndarray:
    """``values [N, C]`` replaced by their mean over the points of the same image cell (``cell_px`` grid); points
    outside the image keep theirs."""
    cells, inside, n = image_cells(points, k, cell_px)
    c = cells[inside]
    count = np.maximum(np.bincount(c, minlength=n), 1)
    out = values.copy()
    for i in range(values.shape[1]):
        out[inside, i] = (np.bincount(c, weights=values[inside, i], minlength=n) / count)[c]
    return out


class DepthChange:
    """Remembers the last ``baseline`` frames of Gaussians in the fixed frame; :meth:`rate` compares the next frame
    against the oldest of them."""

    def __init__(self, cell_px: int, edge_ratio: float, baseline: int = 1, max_speed: float = np.inf):
        self.cell_px, self.edge_ratio, self.max_speed = cell_px, edge_ratio, max_speed
        self._frames: deque[tuple[np.ndarray, float]] = deque(maxlen=baseline)  # (points, interval before it)
        self._last = None  # the last rate()'s grids (nearest depth before and now, cells, inside, interval)

    def reset(self) -> None:
        self._frames.clear()
        self._last = None

    def remember(self, points: np.ndarray, pose: np.ndarray, dt: float = 0.0) -> None:
        """Keep ``points`` (camera frame of ``pose``, 4x4 T_fixed<-camera), taken ``dt`` s after the last ones."""
        world = points @ pose[:3, :3].T.astype(points.dtype) + pose[:3, 3].astype(points.dtype)
        self._frames.append((world, float(dt or 0.0)))

    def _cell_depth(self, points: np.ndarray, k: Intrinsics):
        """Per cell: mean depth (NaN where empty or a depth edge) and nearest depth (NaN where empty); per point:
        its cell and whether it is inside."""
        cells, inside, n = image_cells(points, k, self.cell_px)
        c, z = cells[inside], points[inside, 2]
        count = np.bincount(c, minlength=n)
        near, far = np.full(n, np.inf, np.float32), np.full(n, -np.inf, np.float32)
        np.minimum.at(near, c, z)
        np.maximum.at(far, c, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(c, weights=z, minlength=n) / count
        return (np.where((count > 0) & (far <= near * (1 + self.edge_ratio)), mean, np.nan),
                np.where(count > 0, near, np.nan), cells, inside)

    def shift_velocity(self, points: np.ndarray, k: Intrinsics, max_shift: int, min_gain: float) -> np.ndarray:
        """Image-plane velocity ``[N, 2]`` (optical x, y, per second) of the ``points`` last given to :meth:`rate`,
        from geometry: the shift (whole cells, up to ``max_shift`` in x and 1 in y) that best maps the compared
        frame's nearest-depth grid onto the current one over a 3x3-cell window, where it beats no shift by
        ``min_gain`` (mean relative depth difference); NaN elsewhere (no depth structure, or nothing moved)."""
        out = np.full((points.shape[0], 2), np.nan, np.float32)
        if self._last is None or self._last[2].shape[0] != points.shape[0]:
            return out
        before, now, cells, inside, interval = self._last
        gw = -(-k.width // self.cell_px)
        before, now = before.reshape(-1, gw), now.reshape(-1, gw)
        gh = now.shape[0]
        padded = np.pad(before, max_shift, constant_values=np.nan)
        shifts = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in range(-max_shift, max_shift + 1)])
        # the cell that was at (y - dy, x - dx) is at (y, x) now; relative depth difference capped at 0.3
        moved = np.stack([padded[max_shift - dy:max_shift - dy + gh, max_shift - dx:max_shift - dx + gw]
                          for dy, dx in shifts])
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.minimum(np.abs(now - moved) / now, SHIFT_DIFF_CAP)
        box = np.pad(np.where(np.isfinite(diff), diff, SHIFT_DIFF_CAP), ((0, 0), (1, 1), (1, 1)), mode="edge")
        costs = sum(box[:, i:i + gh, j:j + gw] for i in range(3) for j in range(3)) / 9
        best = np.argmin(costs, axis=0)
        gain = costs[len(shifts) // 2] - np.take_along_axis(costs, best[None], 0)[0]  # middle: no shift
        ok = ((gain >= min_gain) & np.isfinite(now)).reshape(-1)
        c, z = cells[inside], points[inside, 2]
        step = shifts[best.reshape(-1)[c]] * self.cell_px  # (dy, dx) pixels
        vel = np.stack([step[:, 1] * z / k.fx, step[:, 0] * z / k.fy], 1) / interval
        out[inside] = np.where(ok[c, None], vel, np.nan)
        return out

    def rate(self, points: np.ndarray, k: Intrinsics, pose: np.ndarray, dt: float) -> np.ndarray:
        """Depth rate ``[N]`` (per second) of the current ``points`` (camera frame, pose T_fixed<-camera), taken
        ``dt`` s after the last remembered frame."""
        out = np.full(points.shape[0], np.nan, np.float32)
        self._last = None
        if not self._frames or not dt:
            return out
        interval = dt + sum(gap for _, gap in list(self._frames)[1:])
        rot, trans = pose[:3, :3].astype(np.float32), pose[:3, 3].astype(np.float32)
        before, before_near, _, _ = self._cell_depth((self._frames[0][0] - trans) @ rot, k)
        now, now_near, cells, inside = self._cell_depth(points, k)
        self._last = (before_near, now_near, cells, inside, interval)
        with np.errstate(invalid="ignore"):
            cell_rate = (now - before) / interval
            cell_rate = np.where(cell_rate > self.max_speed, np.nan, np.maximum(cell_rate, -self.max_speed))
        out[inside] = cell_rate[cells[inside]]
        return out
