"""A bounded persistent map of static Gaussians in a fixed frame: one Gaussian per occupied voxel.

Each frame offers static Gaussians (already moved into the fixed frame). A Gaussian in an empty voxel is added: the
view revealed new space. One in an occupied voxel is merged into that voxel's Gaussian (running mean of position
and colour, so repeated views refine rather than duplicate). When the count exceeds the budget, the Gaussians
farthest from the camera are dropped until ``low_water · budget`` remain: the map is local to the robot, and its
memory is bounded by the budget however long it runs.

Storage: one float32 table of 15 columns, rows in the order they were added (a new Gaussian is appended; the
table's capacity doubles when full, up to the budget plus one frame's candidates), and an index from voxel key to
row: a sorted main part and a small sorted tail that takes the new keys, merged into the main part once it holds
more than ``TAIL_FRACTION`` of it. A frame's occupancy test is two binary searches and its insertion touches the
tail only, so it costs the same in a full map as in an empty one; a merge or a prune (rare) costs one pass over the
map. Memory: 60 bytes of table and 12 of index per Gaussian, plus the table's spare capacity.
"""
from __future__ import annotations

import numpy as np

from nut_ros.perception.clustering import contains, voxel_keys
from nut_ros.perception.params import MapParams
from nut_ros.pipeline.types import GaussianCloud

_WIDTHS = {"positions": 3, "scales": 3, "rotations": 4, "opacities": 1, "colors": 3, "hits": 1}
_EDGES = np.cumsum([0, *_WIDTHS.values()])
_COLUMNS = {name: slice(int(a), int(b)) for name, a, b in zip(_WIDTHS, _EDGES[:-1], _EDGES[1:])}  # of the table
TAIL_FRACTION = 0.125  # the index's tail is merged into its main part when larger than this fraction of it ...
MIN_TAIL = 16384  # ... and than this


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
        self._table = np.zeros((0, int(_EDGES[-1])), np.float32)  # rows [0, count) in use
        self._count = 0
        self._main, self._tail = _EMPTY, _EMPTY  # (sorted voxel keys, their rows)

    def field(self, name: str) -> np.ndarray:
        """A view of one field (``positions``, ``scales``, ``rotations``, ``opacities``, ``colors``, ``hits``)."""
        return self._table[:self._count, _COLUMNS[name]]

    @property
    def count(self) -> int:
        return self._count

    @property
    def keys(self) -> np.ndarray:
        """The voxel keys of the Gaussians, in table order."""
        keys = np.empty(self._count, np.int64)
        for k, rows in (self._main, self._tail):
            keys[rows] = k
        return keys

    @property
    def nbytes(self) -> int:
        return self._table.nbytes + sum(a.nbytes for part in (self._main, self._tail) for a in part)

    def insert(self, positions: np.ndarray, colors: np.ndarray, scales: np.ndarray, opacities: np.ndarray,
               rotation: np.ndarray, camera_position: np.ndarray) -> int:
        """Offer Gaussians in the fixed frame (``scales`` along the camera axes, ``rotation`` = the camera's 3x3
        orientation in the fixed frame); returns how many were added."""
        if positions.shape[0] == 0:
            return 0
        keys = voxel_keys(positions, self.p.voxel)
        uniq, first = np.unique(keys, return_index=True)
        row = self._rows_of(uniq)
        found = row >= 0
        a = self.p.merge_rate
        old, new, at_old = first[found], first[~found], row[found]
        for name, values in (("positions", positions), ("colors", colors)):
            cols = _COLUMNS[name]
            self._table[at_old, cols] = (1 - a) * self._table[at_old, cols] + a * values[old]
        self._table[at_old, _COLUMNS["hits"]] += 1

        rows = np.empty((new.size, self._table.shape[1]), np.float32)
        rows[:, _COLUMNS["positions"]], rows[:, _COLUMNS["scales"]] = positions[new], scales[new]
        rows[:, _COLUMNS["rotations"]] = rotation_to_quaternion(rotation)
        rows[:, _COLUMNS["opacities"]], rows[:, _COLUMNS["colors"]] = opacities[new, None], colors[new]
        rows[:, _COLUMNS["hits"]] = 1
        self._tail = _merged(self._tail, (uniq[~found], np.arange(self._count, self._count + new.size, dtype=np.int32)))
        self._append(rows)
        if self._tail[0].size > max(MIN_TAIL, TAIL_FRACTION * self._main[0].size):
            self._main, self._tail = _merged(self._main, self._tail), _EMPTY
        if self.count > self.p.budget:
            self._prune(camera_position)
        return int(new.size)

    def _rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The table rows of the voxels ``keys`` (-1 where empty)."""
        row = np.full(keys.size, -1, np.int32)
        for sorted_keys, rows in (self._main, self._tail):
            found, idx = contains(sorted_keys, keys)
            row[found] = rows[idx[found]]
        return row

    def _append(self, rows: np.ndarray) -> None:
        need = self._count + rows.shape[0]
        if need > self._table.shape[0]:  # grow by doubling (amortised: a row is copied a bounded number of times)
            grown = np.empty((max(need, min(2 * self._table.shape[0], self.p.budget + self.p.candidates)),
                              self._table.shape[1]), np.float32)
            grown[:self._count] = self._table[:self._count]
            self._table = grown
        self._table[self._count:need] = rows
        self._count = need

    def _prune(self, camera_position: np.ndarray) -> None:
        """Keep the ``low_water · budget`` Gaussians nearest the camera (their order in the table is kept)."""
        target = int(self.p.low_water * self.p.budget)
        dist = np.linalg.norm(self.field("positions") - camera_position.astype(np.float32), axis=1)
        keep = np.zeros(self.count, bool)
        keep[np.argpartition(dist, target - 1)[:target]] = True
        self.dropped += self.count - target
        keys, rows = _merged(self._main, self._tail)
        alive = keep[rows]
        self._main, self._tail = (keys[alive], (np.cumsum(keep, dtype=np.int32) - 1)[rows[alive]]), _EMPTY
        self._table[:target] = self._table[:self._count][keep]
        self._count = target

    def snapshot(self) -> GaussianCloud:
        """The map as a static GaussianCloud in the fixed frame (copies: safe to publish from another thread)."""
        f = self.field
        return GaussianCloud(f("positions").copy(), f("scales").copy(), f("rotations").copy(),
                             f("opacities")[:, 0].copy(), f("colors").copy(), np.zeros_like(f("positions")),
                             metric=self.metric)


_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int32))


def _merged(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted (int64 keys, int32 rows) indexes with no key in common, as one."""
    at = np.searchsorted(a[0], b[0])
    return np.insert(a[0], at, b[0]), np.insert(a[1], at, b[1])
