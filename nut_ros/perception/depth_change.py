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
front of what was seen there) are clipped to ``-max_speed``: they mark the mover's leading edge as moving, but are not
its own depth rate (the perception stage leaves them out of the velocity it measures for an object).

:meth:`DepthChange.shift_velocity` reads the image-plane motion from the same two frames (after :meth:`rate`):
the whole-cell shift of the older nearest-depth grid that best matches the current one around each cell (a mover's
depth silhouette moves with it, where optical flow of a small far object can read almost nothing).
:meth:`DepthChange.slope` gives the surface slope there (how much a registration error reads as a depth change).

Everything here is torch on the points' device (per-cell sums, minima and maxima by scatter, no compaction, no
wait for the device); a point outside the image falls in an extra last cell that is never read.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nut_ros.core.geometry import Intrinsics

SHIFT_DIFF_CAP = 0.3  # relative depth difference a cell contributes to a shift's cost at most (empty cells too)
OUTSIDE_BINS = 1024  # bins the points outside the image are spread over in a per-cell scatter (_scatter_index)


def pixel_coords(points: torch.Tensor, k: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point (camera frame) its image coordinates ``(u, v)`` plus half a pixel (a point's cell of a ``c``-pixel
    grid is ``floor(coordinate / c)``): computed once, shared by :func:`image_cells` of several grids."""
    z = points[:, 2]
    return k.fx * points[:, 0] / z + k.cx + 0.5, k.fy * points[:, 1] / z + k.cy + 0.5


def times3(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``points [N, 3] @ matrix [3, 3]`` as three broadcast products (on an H200 a GEMM with an inner size of 3
    took 25-40 µs for 65,536 points)."""
    return points[:, :1] * matrix[0] + points[:, 1:2] * matrix[1] + points[:, 2:3] * matrix[2]


def image_cells(points: torch.Tensor, k: Intrinsics, cell_px: int,
                pixels: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per point (camera frame): its cell of a ``cell_px`` grid over the image (flat index; the number of cells
    ``n`` for a point outside the image or not finite), whether it projects inside the image, and ``n``.
    ``pixels``: the points' :func:`pixel_coords` when known (of the same points, or of points that differ only
    where these have a NaN depth: those are outside either way)."""
    gw, gh = -(-k.width // cell_px), -(-k.height // cell_px)
    z = points[:, 2]
    u, v = pixel_coords(points, k) if pixels is None else pixels
    if cell_px != 1:  # (x / 1 is x)
        u, v = u / cell_px, v / cell_px
    u, v = torch.floor(u), torch.floor(v)
    inside = (z > 0) & (u >= 0) & (u < gw) & (v >= 0) & (v < gh)
    flat = torch.where(inside, v * gw + u, gw * gh).long()
    return flat, inside, gw * gh


def _scatter_index(cells: torch.Tensor, n: int) -> torch.Tensor:
    """Where each point goes in a per-cell scatter over ``n + OUTSIDE_BINS`` bins: its cell, or on a GPU for a point
    outside the image (cell ``n``: the rows not selected, the padding) one of the extra bins by its row. All in one
    bin, their atomic updates would queue on one address: on an H200 a scatter of 65,536 rows, most of them outside,
    took about 100 µs instead of a few. (The CPU adds in order: there the cell ``n`` stays.)"""
    if not cells.is_cuda:
        return cells
    spread = n + torch.arange(cells.shape[0], device=cells.device) % OUTSIDE_BINS
    return torch.where(cells < n, cells, spread)


def _cell_count_sum(index: torch.Tensor, n: int, values: torch.Tensor) -> torch.Tensor:
    """Per cell (``index``: :func:`_scatter_index`) its points' count and the float64 sums of ``values [N, C]``,
    one scatter: ``[n + 1, 1 + C]`` (the last row is no cell's: read for the points outside the image, unused)."""
    rows = torch.cat([torch.ones_like(values[:, :1]), values], 1).double()
    out = torch.zeros((n + OUTSIDE_BINS, rows.shape[1]), dtype=torch.float64, device=values.device)
    return out.index_add_(0, index, rows)[:n + 1]


def _cell_extreme(index: torch.Tensor, n: int, values: torch.Tensor, reduce: str) -> torch.Tensor:
    """Per cell (``index``: :func:`_scatter_index`) the minimum (``reduce`` "amin") or maximum ("amax") ``[n]`` of
    ``values [N]`` (±inf where empty)."""
    start = torch.inf if reduce == "amin" else -torch.inf
    out = torch.full((n + OUTSIDE_BINS,), start, dtype=values.dtype, device=values.device)
    return out.scatter_reduce_(0, index, values, reduce)[:n]


def cell_mean(points: torch.Tensor, values: torch.Tensor, k: Intrinsics, cell_px: int,
              pixels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``values [N, C]`` replaced by their mean over the points of the same image cell (``cell_px`` grid); points
    outside the image (or not finite: a NaN point leaves the average) keep theirs (``pixels``: see
    :func:`image_cells`)."""
    cells, inside, n = image_cells(points, k, cell_px, pixels)
    sums = _cell_count_sum(_scatter_index(cells, n), n, values)
    mean = (sums[:, 1:] / sums[:, :1].clamp_min(1)).to(values.dtype)
    return torch.where(inside[:, None], mean[cells], values)


@dataclass
class CellGrids:
    """The binned frames of one depth-rate comparison, for :meth:`DepthChange.shift_velocity` and
    :meth:`DepthChange.slope`: nearest depth per cell of the compared (older) frame and of the current one, each
    current point's cell and whether it is inside the image, and the time between the two frames."""

    before_near: torch.Tensor
    now_near: torch.Tensor
    cells: torch.Tensor
    inside: torch.Tensor
    interval: torch.Tensor | float


class DepthChange:
    """Remembers the last ``baseline`` frames of Gaussians in the fixed frame (:meth:`remember`,
    :meth:`compared`); :meth:`rate`, :meth:`shift_velocity` and :meth:`slope` are functions of the tensors they are
    given and the settings (no state: they can be captured in a CUDA graph)."""

    def __init__(self, cell_px: int, edge_ratio: float, baseline: int = 1, max_speed: float = np.inf):
        self.cell_px, self.edge_ratio, self.max_speed = cell_px, edge_ratio, max_speed
        self._frames: deque[tuple[torch.Tensor, float]] = deque(maxlen=baseline)  # (points, interval before it)

    def reset(self) -> None:
        self._frames.clear()

    def remember(self, world: torch.Tensor, dt: float = 0.0) -> None:
        """Keep a frame's points ``world`` (fixed frame), taken ``dt`` s after the last ones."""
        self._frames.append((world, float(dt or 0.0)))

    def compared(self, dt: float) -> tuple[torch.Tensor, float] | None:
        """The frame the next one (``dt`` s after the last remembered) is compared against, in the fixed frame, and
        the time between the two; None when nothing is remembered or ``dt`` is unknown."""
        if not self._frames or not dt:
            return None
        return self._frames[0][0], dt + sum(gap for _, gap in list(self._frames)[1:])

    def _cell_depth(self, points: torch.Tensor, k: Intrinsics, pixels=None):
        """Per cell: mean depth (NaN where empty or a depth edge) and nearest depth (NaN where empty); per point:
        its cell and whether it is inside."""
        cells, inside, n = image_cells(points, k, self.cell_px, pixels)
        z, index = points[:, 2], _scatter_index(cells, n)
        count, total = _cell_count_sum(index, n, z[:, None])[:n].unbind(1)
        near, far = _cell_extreme(index, n, z, "amin"), _cell_extreme(index, n, z, "amax")
        mean = total / count
        return (torch.where((count > 0) & (far <= near * (1 + self.edge_ratio)), mean, torch.nan),
                torch.where(count > 0, near, torch.nan), cells, inside)

    def rate(self, points: torch.Tensor, old: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor,
             interval, k: Intrinsics, pixels=None) -> tuple[torch.Tensor, CellGrids]:
        """Depth rate ``[N]`` (per second) of the current ``points`` (camera frame; the camera's pose in the fixed
        frame is ``rot`` [3, 3], ``trans`` [3]) against the compared frame's points ``old`` (fixed frame), taken
        ``interval`` s (a number or a 0-d tensor) earlier; and the binned frames (``pixels``: the current points'
        :func:`pixel_coords` when known)."""
        before, before_near, _, _ = self._cell_depth(times3(old - trans, rot), k)
        now, now_near, cells, inside = self._cell_depth(points, k, pixels)
        cell_rate = (now - before) / interval
        cell_rate = torch.where(cell_rate > self.max_speed, torch.nan, cell_rate.clamp_min(-self.max_speed))
        rate = F.pad(cell_rate, (0, 1), value=torch.nan).float()[cells]
        return rate, CellGrids(before_near, now_near, cells, inside, interval)

    def shift_velocity(self, points: torch.Tensor, grids: CellGrids, k: Intrinsics, max_shift: int,
                       min_gain: float) -> torch.Tensor:
        """Image-plane velocity ``[N, 2]`` (optical x, y, per second) of the ``points`` :meth:`rate` binned into
        ``grids``, from geometry: the shift (whole cells, up to ``max_shift`` in x and 1 in y) that best maps the
        compared frame's nearest-depth grid onto the current one over a 3x3-cell window, where it beats no shift by
        ``min_gain`` (mean relative depth difference); NaN elsewhere (no depth structure, or nothing moved)."""
        gw = -(-k.width // self.cell_px)
        before, now = grids.before_near.reshape(-1, gw), grids.now_near.reshape(-1, gw)
        gh = now.shape[0]
        padded = F.pad(before, (max_shift,) * 4, value=torch.nan)
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in range(-max_shift, max_shift + 1)]
        # the cell that was at (y - dy, x - dx) is at (y, x) now; relative depth difference capped
        moved = torch.stack([padded[max_shift - dy:max_shift - dy + gh, max_shift - dx:max_shift - dx + gw]
                             for dy, dx in shifts])
        diff = torch.clamp((now - moved).abs() / now, max=SHIFT_DIFF_CAP)
        box = F.pad(torch.where(diff.isfinite(), diff, SHIFT_DIFF_CAP), (1, 1, 1, 1), mode="replicate")
        costs = box[:, 0:gh, 0:gw]
        for i, j in [(i, j) for i in range(3) for j in range(3)][1:]:
            costs = costs + box[:, i:i + gh, j:j + gw]
        costs = costs / 9
        best = torch.argmin(costs, dim=0).reshape(-1)
        gain = costs[len(shifts) // 2].reshape(-1) - torch.gather(costs.reshape(len(shifts), -1), 0, best[None])[0]
        ok = (gain >= min_gain) & now.reshape(-1).isfinite()
        # the shift (dy, dx) in pixels of each cell's best index (dy outer, dx inner, as in ``shifts``)
        dy = (best.div(2 * max_shift + 1, rounding_mode="floor") - 1).double()
        dx = (best.remainder(2 * max_shift + 1) - max_shift).double()
        ok, dy, dx = F.pad(ok, (0, 1)), F.pad(dy, (0, 1)), F.pad(dx, (0, 1))  # the outside cell: not ok
        z = points[:, 2].double()
        vel = torch.stack([dx[grids.cells] * (self.cell_px / k.fx) * z,
                           dy[grids.cells] * (self.cell_px / k.fy) * z], 1) / grids.interval
        return torch.where((grids.inside & ok[grids.cells])[:, None], vel, torch.nan).float()

    def slope(self, points: torch.Tensor, grids: CellGrids, k: Intrinsics) -> torch.Tensor:
        """Surface slope ``[N]`` at the ``points`` :meth:`rate` binned into ``grids``: per image axis the smaller of
        the nearest-depth steps to the two neighbouring cells (a depth edge on one side does not count), per metre
        across the view; the larger of the two axes (0 where unknown). An older frame registered ``d`` metres off
        across the view reads as a depth change of about ``slope · d`` there."""
        near = grids.now_near.reshape(-1, -(-k.width // self.cell_px))
        grid = torch.zeros_like(near)
        for axis, focal, before, after in ((1, k.fx, (1, 0), (0, 1)), (0, k.fy, (0, 0, 1, 0), (0, 0, 0, 1))):
            step = torch.diff(near, dim=axis).abs() * (focal / self.cell_px)  # per cell width at unit depth
            smaller = torch.fmin(F.pad(step, before, value=torch.nan), F.pad(step, after, value=torch.nan))
            grid = torch.fmax(grid, torch.nan_to_num(smaller))
        per_m = F.pad(torch.nan_to_num(grid.reshape(-1) / near.reshape(-1)), (0, 1))  # the outside cell: 0
        return per_m[grids.cells]
