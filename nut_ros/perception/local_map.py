"""A bounded persistent map of static Gaussians in a fixed frame: one Gaussian per occupied voxel.

Each frame offers static Gaussians (already moved into the fixed frame). A Gaussian in an empty voxel is added: the
view revealed new space. One in an occupied voxel is merged into that voxel's Gaussian (running mean of position
and colour, so repeated views refine rather than duplicate). When the count exceeds the budget, the Gaussians
farthest from the camera are dropped until ``low_water · budget`` remain: the map is local to the robot, and its
memory is bounded by the budget however long it runs (one float32 table of 15 columns plus an int64 key: 68 bytes
per Gaussian). The table is kept sorted by voxel key, so the occupancy test is a binary search and an insertion is
one ``np.insert``.
"""
from __future__ import annotations

import numpy as np

from nut_ros.perception.clustering import contains, voxel_keys
from nut_ros.perception.params import MapParams
from nut_ros.pipeline.types import GaussianCloud

_WIDTHS = {"positions": 3, "scales": 3, "rotations": 4, "opacities": 1, "colors": 3, "hits": 1}
_EDGES = np.cumsum([0, *_WIDTHS.values()])
_COLUMNS = {name: slice(int(a), int(b)) for name, a, b in zip(_WIDTHS, _EDGES[:-1], _EDGES[1:])}  # of the table


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a 3x3 rotation matrix (Shepperd's method, stable near every angle)."""
    m = r
    trace = np.trace(m)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = s / 4
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)


class LocalMap:
    """Static Gaussians in the fixed frame; see the module docstring for the rules."""

    def __init__(self, params: MapParams = MapParams(), metric: bool = True):
        self.p = params
        self.metric = metric
        self.dropped = 0  # Gaussians pruned over the budget since the last reset
        self.reset()

    def reset(self, metric: bool | None = None) -> None:
        self.metric = self.metric if metric is None else metric
        self.keys = np.zeros(0, np.int64)
        self.table = np.zeros((0, int(_EDGES[-1])), np.float32)

    def field(self, name: str) -> np.ndarray:
        """A view of one field (``positions``, ``scales``, ``rotations``, ``opacities``, ``colors``, ``hits``)."""
        return self.table[:, _COLUMNS[name]]

    @property
    def count(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.table.nbytes

    def insert(self, positions: np.ndarray, colors: np.ndarray, scales: np.ndarray, opacities: np.ndarray,
               rotation: np.ndarray, camera_position: np.ndarray) -> int:
        """Offer Gaussians in the fixed frame (``scales`` along the camera axes, ``rotation`` = the camera's 3x3
        orientation in the fixed frame); returns how many were added."""
        if positions.shape[0] == 0:
            return 0
        keys = voxel_keys(positions, self.p.voxel)
        uniq, first = np.unique(keys, return_index=True)
        found, idx = contains(self.keys, uniq)
        a = self.p.merge_rate
        old, new, at_old = first[found], first[~found], idx[found]
        for name, values in (("positions", positions), ("colors", colors)):
            cols = _COLUMNS[name]
            self.table[at_old, cols] = (1 - a) * self.table[at_old, cols] + a * values[old]
        self.table[at_old, _COLUMNS["hits"]] += 1

        rows = np.empty((new.size, self.table.shape[1]), np.float32)
        rows[:, _COLUMNS["positions"]], rows[:, _COLUMNS["scales"]] = positions[new], scales[new]
        rows[:, _COLUMNS["rotations"]] = rotation_to_quaternion(rotation)
        rows[:, _COLUMNS["opacities"]], rows[:, _COLUMNS["colors"]] = opacities[new, None], colors[new]
        rows[:, _COLUMNS["hits"]] = 1
        at = np.searchsorted(self.keys, uniq[~found])
        self.keys = np.insert(self.keys, at, uniq[~found])
        self.table = np.insert(self.table, at, rows, axis=0)
        if self.count > self.p.budget:
            self._prune(camera_position)
        return int(new.size)

    def _prune(self, camera_position: np.ndarray) -> None:
        """Keep the ``low_water · budget`` Gaussians nearest the camera (order by key is kept)."""
        target = int(self.p.low_water * self.p.budget)
        dist = np.linalg.norm(self.field("positions") - camera_position.astype(np.float32), axis=1)
        keep = np.zeros(self.count, bool)
        keep[np.argpartition(dist, target - 1)[:target]] = True
        self.dropped += self.count - target
        self.keys, self.table = self.keys[keep], self.table[keep]

    def snapshot(self) -> GaussianCloud:
        """The map as a static GaussianCloud in the fixed frame (copies: safe to publish from another thread)."""
        f = self.field
        return GaussianCloud(f("positions").copy(), f("scales").copy(), f("rotations").copy(),
                             f("opacities")[:, 0].copy(), f("colors").copy(), np.zeros_like(f("positions")),
                             metric=self.metric)
