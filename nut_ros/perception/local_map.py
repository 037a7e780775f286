"""A bounded persistent map of static Gaussians in a fixed frame: one Gaussian per occupied voxel.

Each frame offers static Gaussians (already moved into the fixed frame). A Gaussian in an empty voxel is added: the
view revealed new space. One in an occupied voxel is merged into that voxel's Gaussian (running mean of position
and colour, so repeated views refine rather than duplicate). When the count exceeds the budget, the Gaussians
farthest from the camera are dropped until ``low_water · budget`` remain: the map is local to the robot, and its
memory is bounded by the budget however long it runs (structure-of-arrays, about 80 bytes per Gaussian).
The arrays are kept sorted by voxel key, so the occupancy test is a binary search.
"""
from __future__ import annotations

import numpy as np

from nut_ros.perception.clustering import contains, voxel_keys
from nut_ros.perception.params import MapParams
from nut_ros.pipeline.types import GaussianCloud

_FIELDS = {"positions": (3, np.float32), "scales": (3, np.float32), "rotations": (4, np.float32),
           "opacities": (1, np.float32), "colors": (3, np.float32), "hits": (1, np.int32)}


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
        self.arrays = {name: np.zeros((0, width), dtype) for name, (width, dtype) in _FIELDS.items()}

    @property
    def count(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + sum(a.nbytes for a in self.arrays.values())

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
        old, new = first[found], first[~found]
        for name, values in (("positions", positions), ("colors", colors)):
            arr = self.arrays[name]
            arr[idx[found]] = (1 - a) * arr[idx[found]] + a * values[old]
        self.arrays["hits"][idx[found]] += 1

        quat = rotation_to_quaternion(rotation).astype(np.float32)
        added = {"positions": positions[new], "scales": scales[new], "rotations": np.tile(quat, (new.size, 1)),
                 "opacities": opacities[new, None], "colors": colors[new], "hits": np.ones((new.size, 1))}
        at = np.searchsorted(self.keys, uniq[~found])
        self.keys = np.insert(self.keys, at, uniq[~found])
        for name, values in added.items():
            self.arrays[name] = np.insert(self.arrays[name], at, values.astype(self.arrays[name].dtype), axis=0)
        if self.count > self.p.budget:
            self._prune(camera_position)
        return int(new.size)

    def _prune(self, camera_position: np.ndarray) -> None:
        """Keep the ``low_water · budget`` Gaussians nearest the camera (order by key is kept)."""
        target = int(self.p.low_water * self.p.budget)
        dist = np.linalg.norm(self.arrays["positions"] - camera_position.astype(np.float32), axis=1)
        keep = np.zeros(self.count, bool)
        keep[np.argpartition(dist, target - 1)[:target]] = True
        self.dropped += self.count - target
        self.keys = self.keys[keep]
        self.arrays = {name: arr[keep] for name, arr in self.arrays.items()}

    def snapshot(self) -> GaussianCloud:
        """The map as a static GaussianCloud in the fixed frame (copies: safe to publish from another thread)."""
        a = self.arrays
        return GaussianCloud(a["positions"].copy(), a["scales"].copy(), a["rotations"].copy(),
                             a["opacities"][:, 0].copy(), a["colors"].copy(), np.zeros_like(a["positions"]),
                             metric=self.metric)
