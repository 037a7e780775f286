"""Depth rate from geometry: how far each Gaussian's depth moved since the previous frame, along its pixel ray.

The Gaussians' own velocities carry the image-plane motion well (optical flow) but their depth rate poorly, so an
object moving straight towards or away from the camera barely shows in them. Here the previous frame's Gaussians,
kept in the fixed frame, are projected into the current camera (odometry pose, or the integrated camera motion)
and binned into a coarse grid (``cell_px`` pixels), as are the current Gaussians: mean, nearest and farthest depth
per cell. A cell's depth rate is its current mean depth minus its previous one, divided by the frame interval: the
depth rate of whatever surface is seen there, with the camera's motion removed by the projection (comparing means
of the same cell cancels the slope of a slanted surface). Every current Gaussian gets its cell's rate. It is
unknown (NaN) where the cell is empty in either frame or spans a depth edge in either (farthest/nearest above
``1 + edge_ratio``: parallax reveals or hides background there).
"""
from __future__ import annotations

import numpy as np

from nut_ros.core.geometry import Intrinsics


class DepthChange:
    """Remembers one frame of Gaussians in the fixed frame; :meth:`rate` compares the next frame against it."""

    def __init__(self, cell_px: int, edge_ratio: float):
        self.cell_px, self.edge_ratio = cell_px, edge_ratio
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def remember(self, points: np.ndarray, pose: np.ndarray) -> None:
        """Keep ``points`` (camera frame of ``pose``, 4x4 T_fixed<-camera) for the next frame."""
        self._prev = points @ pose[:3, :3].T.astype(points.dtype) + pose[:3, 3].astype(points.dtype)

    def _cells(self, points: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray, int]:
        gw, gh = -(-k.width // self.cell_px), -(-k.height // self.cell_px)
        z = points[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor((k.fx * points[:, 0] / z + k.cx + 0.5) / self.cell_px)
            v = np.floor((k.fy * points[:, 1] / z + k.cy + 0.5) / self.cell_px)
        inside = (z > 0) & (u >= 0) & (u < gw) & (v >= 0) & (v < gh)
        flat = np.where(inside, v * gw + u, 0).astype(np.int64)
        return flat, inside, gw * gh

    def _cell_depth(self, points: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell: mean depth (NaN where empty or a depth edge); per point: its cell and whether it is inside."""
        cells, inside, n = self._cells(points, k)
        c, z = cells[inside], points[inside, 2]
        count = np.bincount(c, minlength=n)
        near, far = np.full(n, np.inf, np.float32), np.full(n, -np.inf, np.float32)
        np.minimum.at(near, c, z)
        np.maximum.at(far, c, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(c, weights=z, minlength=n) / count
        return np.where((count > 0) & (far <= near * (1 + self.edge_ratio)), mean, np.nan), cells, inside

    def rate(self, points: np.ndarray, k: Intrinsics, pose: np.ndarray, dt: float) -> np.ndarray:
        """Depth rate ``[N]`` (per second) of the current ``points`` (camera frame, pose T_fixed<-camera)."""
        out = np.full(points.shape[0], np.nan, np.float32)
        if self._prev is None or not dt:
            return out
        rot, trans = pose[:3, :3].astype(np.float32), pose[:3, 3].astype(np.float32)
        before, _, _ = self._cell_depth((self._prev - trans) @ rot, k)
        now, cells, inside = self._cell_depth(points, k)
        out[inside] = ((now - before) / dt)[cells[inside]]
        return out
