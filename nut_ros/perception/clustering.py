"""Points -> objects: connected components of occupied voxels, and per-object statistics, all vectorised.

Voxel keys pack three signed 21-bit cell indices into one int64 (:func:`voxel_keys`), so occupancy tests are
sorted-array searches. Two occupied voxels are connected when they touch (26-neighbourhood); the components come
from label propagation (:func:`components`) over the edges found by searching the 13 "forward" neighbour offsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

KEY_BITS = 21  # per axis: cells in [-2^20, 2^20): ±1.05 km at 1 mm voxels, ±52 km at the map's 5 cm
_HALF = 1 << (KEY_BITS - 1)
# 13 of the 26 neighbour offsets (each undirected edge found once), as differences of packed keys: a cell's
# neighbour's key is its key plus the offset's (exact inside the keys' reach; only a cell clipped to its edge could
# carry into the next field)
_OFFSET_KEYS = np.array([(dx << (2 * KEY_BITS)) + (dy << KEY_BITS) + dz for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                         for dz in (-1, 0, 1) if (dx, dy, dz) > (0, 0, 0)], dtype=np.int64)


def key_reach(voxel: float) -> float:
    """How far from the origin, per axis, the voxel keys of ``voxel``-sized cells reach (farther points share the
    edge cells)."""
    return _HALF * voxel


def voxel_cells(points, voxel: float):
    """Integer cells ``[N, 3]`` of ``points [N, 3]`` (numpy or torch), clipped to the packable range."""
    if isinstance(points, torch.Tensor):
        return torch.floor(points / voxel).clamp(-_HALF, _HALF - 1).long()
    return np.minimum(np.maximum(np.floor(points / voxel), -_HALF), _HALF - 1).astype(np.int64)  # (np.clip: slower)


def pack_cells(cells):
    """``[N, 3]`` cells -> ``[N]`` int64 keys (order-preserving per axis, x most significant)."""
    c = cells + _HALF
    return (c[:, 0] << (2 * KEY_BITS)) | (c[:, 1] << KEY_BITS) | c[:, 2]


def voxel_keys(points, voxel: float):
    """``[N]`` int64 voxel keys of ``points [N, 3]`` (numpy or torch, as given)."""
    return pack_cells(voxel_cells(points, voxel))


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(found [N] bool, index [N])`` of ``keys`` in the ascending ``sorted_keys`` (index valid where found)."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, bool), np.zeros(keys.shape, np.int64)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[idx] == keys, idx


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected component ``[n]`` of each node of the undirected graph with edges ``src[i] -- dst[i]``, numbered
    in the order of their smallest node (as ``scipy.sparse.csgraph.connected_components`` numbers them): over each
    edge the smaller of its ends' labels goes to both ends and to the nodes those labels name (their roots), then
    labels jump along labels to their roots, until no edge joins two labels (pointer jumping: the passes grow with
    the logarithm of a component's size, not with its length; no scipy graph construction and checks)."""
    label = np.arange(n)
    while src.size:
        at_src, at_dst = label[src], label[dst]
        if (at_src == at_dst).all():
            break
        low = np.minimum(at_src, at_dst)
        np.minimum.at(label, at_src, low)  # the roots too: a long chain merges in few passes
        np.minimum.at(label, at_dst, low)
        np.minimum.at(label, src, low)
        np.minimum.at(label, dst, low)
        while True:  # each label is a node of the component that holds a label not above it: follow it
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
    return (np.cumsum(label == np.arange(n)) - 1)[label]  # each label is now its component's smallest node: ranked


def cluster_points(points: np.ndarray, voxel: float, min_points: int) -> tuple[np.ndarray, int]:
    """Labels ``[N]`` (0..K-1, or -1 for points of components with fewer than ``min_points``) and K."""
    if points.shape[0] == 0:
        return np.zeros(0, np.int64), 0
    keys = voxel_keys(points, voxel)
    order = np.argsort(keys)  # the points by voxel
    keys = keys[order]
    first = np.empty(keys.size, bool)  # the first point of each occupied voxel
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    uniq = keys[first]
    found, idx = contains(uniq, (uniq[:, None] + _OFFSET_KEYS).reshape(-1))
    src = np.flatnonzero(found) // len(_OFFSET_KEYS)  # the voxel whose neighbour was found
    comp = components(uniq.size, src, idx[found])[np.cumsum(first) - 1]  # of each point, in key order
    big = np.bincount(comp) >= min_points
    ranked = np.cumsum(big)
    labels = np.empty_like(comp)
    labels[order] = np.where(big, ranked - 1, -1)[comp]
    return labels, int(ranked[-1])


@dataclass
class Clusters:
    """Per-object statistics, ``K`` rows each (optical frame of the frame they were measured in)."""

    center: np.ndarray  # [K, 3] box centre (visible extent, pushed back along z, see cluster_stats)
    velocity: np.ndarray  # [K, 3] weighted mean velocity of the members
    size: np.ndarray  # [K, 3] box extents
    weight: np.ndarray  # [K] summed opacity of the members
    count: np.ndarray  # [K] members
    span: np.ndarray  # [K, 3] the members' full extents (min to max, half a voxel of padding; size when untrimmed)

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    @staticmethod
    def empty() -> "Clusters":
        """No objects."""
        rows = np.zeros((0, 3))
        return Clusters(rows, rows, rows, np.zeros(0), np.zeros(0, np.int64), rows)

    def select(self, keep: np.ndarray) -> "Clusters":
        return Clusters(self.center[keep], self.velocity[keep], self.size[keep], self.weight[keep], self.count[keep],
                        self.span[keep])


def group_quantile(values: np.ndarray, labels: np.ndarray, k: int, q: float) -> np.ndarray:
    """The ``q`` quantile ``[k]`` of ``values [N]`` per label ``0..k-1`` (labels all >= 0; the member at rank
    ``floor(q · count)``, the last for q = 1; NaN where empty)."""
    return group_quantiles(values, labels, k, (q,))[0]


def group_quantiles(values: np.ndarray, labels: np.ndarray, k: int, qs: tuple[float, ...]) -> np.ndarray:
    """:func:`group_quantile` at each of ``qs``: ``[len(qs), k]``, or ``[len(qs), k, C]`` for ``values [N, C]``
    (each column on its own)."""
    count = np.bincount(labels, minlength=k)
    ordered = _by_label_then_value(values, labels)
    rank = np.minimum(np.floor(np.multiply.outer(qs, count)).astype(np.int64), count - 1)  # -1 where empty
    picked = ordered[np.cumsum(count) - count + rank]  # (an empty label's rank -1 picks another's member: NaN)
    return np.where(count[:, None] > 0, picked.T, np.nan).T  # (transposed: the labels next to the last axis)


def _by_label_then_value(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``values`` ``[N]`` or ``[N, C]`` ordered by label, then by value (each column on its own). float32 values
    (the stage's downloads) are sorted as one int64 key per element, the label above the value's bits made
    monotone (negative floats' magnitude bits flipped), all columns in one sort, and read back from the key
    exactly (NaN, of either sign, last as in a float sort; -0 before +0); other dtypes by lexsort, one per column."""
    if values.dtype != np.float32:
        if values.ndim == 1:
            return values[np.lexsort((values, labels))]
        return np.stack([column[np.lexsort((column, labels))] for column in values.T], 1)
    values = np.where(np.isnan(values), np.float32(np.nan), values)  # (a NaN with its sign bit set would go first)
    bits = values.view(np.int32).astype(np.int64)
    flip = (bits >> 31) & 0x7FFFFFFF  # all magnitude bits of a negative float: larger magnitude, smaller key
    label = labels.astype(np.int64, copy=False).reshape(-1, *(1,) * (values.ndim - 1))
    keys = np.sort((label << 32) + (bits ^ flip), axis=0)
    bits = ((keys + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)  # the low 32 bits, signed
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).astype(np.int32).view(np.float32)


def group_median(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Median ``[k]`` of ``values [N]`` per label ``0..k-1`` (labels all >= 0; the upper median; NaN where empty)."""
    return group_quantile(values, labels, k, 0.5)


def cluster_stats(points: np.ndarray, velocities: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int,
                  voxel: float, trim: float = 0.0, cut: np.ndarray | None = None) -> Clusters:
    """Boxes of the labelled points. A camera sees an object's front only, so its depth extent is taken as at
    least the smaller of its width and height, and the box reaches back from the visible front by that much.
    With ``trim`` > 0 each axis spans the members' ``trim`` to ``1 - trim`` quantiles, widened by ``1 / (1 - 2 ·
    trim)`` (the full extent of evenly spread members), so a few stray members do not stretch the box. ``cut``
    ``[K, 2]`` (-1, 0 or +1 per image axis x, y): the image's low or high edge cuts the object there, so only part
    of it is seen; its box reaches out past that edge until it is at least as long along that axis as across it
    (the other image axis, when that one is not cut). A velocity component that is NaN (not measured) leaves that
    member out of that component's mean (NaN where none has it)."""
    order = np.argsort(labels, kind="stable")[np.count_nonzero(labels < 0):]  # the members by label
    lab, pts, vel, w = labels[order], points[order], velocities[order], weights[order]
    count = np.bincount(lab, minlength=k)
    starts = np.cumsum(count) - count
    wsum = np.bincount(lab, weights=w, minlength=k)
    finite = np.isfinite(vel)
    slot = (3 * lab[:, None] + np.arange(3)).reshape(-1)  # (member, axis) -> label, axis
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where no member has that component
        mean_vel = (np.bincount(slot, weights=np.where(finite, w[:, None] * vel, 0.0).reshape(-1), minlength=3 * k)
                    / np.bincount(slot, weights=(w[:, None] * finite).reshape(-1), minlength=3 * k)).reshape(k, 3)
    if k:
        lo, hi = np.minimum.reduceat(pts, starts, axis=0), np.maximum.reduceat(pts, starts, axis=0)
    else:
        lo = hi = np.zeros((0, 3))
    span = hi - lo + voxel / 2
    if k and trim > 0:
        lo, hi = group_quantiles(pts, lab, k, (trim, 1 - trim))
        widen = (hi - lo) * trim / (1 - 2 * trim)
        lo, hi = lo - widen, hi + widen
    if k and cut is not None:
        extent = hi[:, :2] - lo[:, :2]
        longer = np.maximum(extent, np.where(cut[:, ::-1] == 0, extent[:, ::-1], 0.0)) - extent
        lo[:, :2] -= np.where(cut < 0, longer, 0.0)
        hi[:, :2] += np.where(cut > 0, longer, 0.0)
    size = hi - lo + voxel / 2
    size[:, 2] = np.maximum(size[:, 2], np.minimum(size[:, 0], size[:, 1]))
    center = (lo + hi) / 2
    center[:, 2] = lo[:, 2] + size[:, 2] / 2
    return Clusters(center, mean_vel, size, wsum, count, span)
