"""A bounded persistent map of static Gaussians in a fixed frame: one Gaussian per occupied voxel.

Each frame offers static Gaussians (already moved into the fixed frame). A Gaussian in an empty voxel is added: the
view revealed new space. One in an occupied voxel is merged into that voxel's Gaussian (an exponential moving
average of position and colour, the new view weighted ``merge_rate``, so repeated views refine rather than
duplicate); of a frame's Gaussians in one voxel the first offered counts. Voxel keys hold 2^20 voxels either way of
the fixed frame's origin per axis (:data:`~nut_ros.perception.clustering.KEY_BITS`; ±52 km at 5 cm voxels): farther
points share the edge voxels, so a fixed frame whose origin is far away (e.g. UTM) needs a local one (the node
ignores odometry farther than :attr:`LocalMap.reach`, with a warning). When the count
exceeds the budget, the Gaussians farthest from the camera are dropped until ``low_water · budget`` remain: the map
is local to the robot, and its memory is bounded by the budget however long it runs.

The map is torch tensors on the device of the Gaussians it is offered (CUDA when the pipeline runs there, else the
CPU), so a frame's Gaussians never leave that device, and an insertion waits for nothing: its count and sizes stay
on the device, every tensor it makes has a size the host knows (the frame's candidates, or an upper bound of the
map's), and rows and index entries are placed by counts (cumulative sums, binary searches) and scattered, never
selected by a boolean mask. The sizes the host needs to size that work (the Gaussians added, the index's entries)
it reads at once on the CPU (reading a CPU tensor waits for nothing); on a GPU it learns them from a small copy
queued after each insertion and read at the next one if it has arrived, else it goes on with upper bounds (what
was known plus the candidates offered since). A bound only makes an insertion do more work, never changes the map.
Reading :attr:`LocalMap.count`, :attr:`LocalMap.dropped`, :meth:`LocalMap.field` or :meth:`LocalMap.snapshot`
(the publisher's lower rate) waits for the device.

Storage: one float32 table of 15 columns, ``budget + candidates`` rows allocated at the first insertion plus a
scratch row that takes the writes of rows not stored; rows in the order they were added (a frame's new Gaussians are
appended at the count, in voxel-key order); and an index from voxel key to row. On the CPU (and on a GPU without
``cuda_graphs``) the index is a sorted main part and a small sorted tail that takes the new keys (on a GPU both
padded with :data:`EMPTY` keys up to the host's bound), the tail merged into the main part once it holds more than
``TAIL_FRACTION`` of it: a frame's occupancy test is two binary searches and its insertion touches the tail only, so
it costs the same in a full map as in an empty one; a tail merge or a prune costs a pass over the map (rare; on a
GPU a prune, one that keeps everything where the map is not over its budget, runs whenever the bound says the map
may be over it). On a GPU with ``cuda_graphs`` the index is one sorted part of ``capacity`` entries, EMPTY-padded,
into which every insertion merges its new keys (a pass over it that costs the GPU microseconds), so every tensor an
insertion makes has a fixed size and it updates the map's tensors in place: it is captured as a CUDA graph (one with
a prune, as above, and one without) and replayed per frame, one launch instead of a few dozen (the perception stage
there offers every candidate slot of each frame with a camera motion, masked on the device to the counted ones of a
trusted frame). Memory: 60 bytes of table per row and 12 of index per Gaussian (plus the padding on a GPU: with the
fixed index 12 bytes per row of the table, and its graphs' memory pool, which keeps the prune's working tensors, a
copy of the table among them: about 110 bytes per row).
"""
from __future__ import annotations

import numpy as np
import torch

from nut_ros.core.rotations import matrix_to_quaternion
from nut_ros.perception.clustering import key_reach, voxel_keys
from nut_ros.perception.params import MapParams
from nut_ros.perception.tensors import Uploader, download, one_thread
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.types import GaussianCloud

# a frame's Gaussians are offered as the first 4 fields (the map's quaternion and hits follow)
_WIDTHS = {"positions": 3, "colors": 3, "scales": 3, "opacities": 1, "rotations": 4, "hits": 1}
_EDGES = np.cumsum([0, *_WIDTHS.values()])
_COLUMNS = {name: slice(int(a), int(b)) for name, a, b in zip(_WIDTHS, _EDGES[:-1], _EDGES[1:])}  # of the table
_MERGED = slice(0, 6)  # the columns merged as a moving average: position and colour
_OFFERED = 10  # the columns of a frame's Gaussian
EMPTY = torch.iinfo(torch.int64).max  # the index's padding key (a voxel's key is clamped below it)
TAIL_FRACTION = 0.125  # the index's tail is merged into its main part when larger than this fraction of it ...
MIN_TAIL = 16384  # ... and than this


def camera_row(wxyz, position):
    """An insertion's camera row: the new rows' quaternion ``(w, x, y, z)`` (the camera's orientation in the fixed
    frame) and hit count 1, then the camera's position; numpy, or torch float32 on the tensors' device."""
    if isinstance(wxyz, torch.Tensor):
        return torch.cat([wxyz, wxyz.new_ones(1), position]).float()
    return np.concatenate([wxyz, [1.0], position])


class LocalMap:
    """Static Gaussians in the fixed frame; see the module docstring for the rules and the storage."""

    def __init__(self, params: MapParams = MapParams(), metric: bool = True, cuda_graphs: bool = True):
        self.p = params
        self.metric = metric
        self.cuda_graphs = cuda_graphs  # on a GPU: a fixed-size index, each insertion one CUDA graph replay
        self._upload_camera = Uploader()
        self._clear()

    @property
    def reach(self) -> float:
        """How far from the fixed frame's origin (per axis) a camera may be for every Gaussian it adds to get a voxel
        of its own: the keys' reach less ``max_range``."""
        return key_reach(self.p.voxel) - self.p.max_range

    def reset(self, metric: bool | None = None) -> None:
        """Empty the map: its storage is allocated again at the next insertion, on that insertion's device; the
        fixed index (:meth:`_fixed_for`) is emptied in place instead, so its graphs stay valid."""
        self.metric = self.metric if metric is None else metric
        if not (self._fixed and self._table is not None):
            self._clear()
            return
        self._count.zero_()
        self._dropped.zero_()
        self._main[0].fill_(EMPTY)
        self._bound = 0  # (sizes of an insertion before this that arrive later are still upper bounds)

    def _clear(self) -> None:
        """No storage, an empty index, no graphs."""
        self._table: torch.Tensor | None = None  # [capacity + 1, 15]: rows [0, count) in use, the last one scratch
        self._count, self._dropped = (torch.zeros((), dtype=torch.int64) for _ in range(2))  # on the table's device
        self._main = self._tail = _index(torch.device("cpu"))  # (sorted keys, their rows), EMPTY-padded
        # on a GPU: [count, tail entries] after the last insertion (pinned host copy), valid once the event has run
        self._sizes: torch.Tensor | None = None
        self._sizes_ready: torch.cuda.Event | None = None
        self._fixed = False  # the index is one part of `capacity` entries, updated in place (see _fixed_for)
        self._bound = 0  # with the fixed index: an upper bound of the count the host knows without waiting
        self._graphed: GraphedCall | None = None  # with the fixed index on a GPU: the insertion as CUDA graphs
        self._prune_now = False  # the flag the graphed insertion runs with (its graphs are keyed by it)

    @property
    def capacity(self) -> int:
        """Rows of the table: the budget and one frame's candidates."""
        return self.p.budget + self.p.candidates

    @property
    def count(self) -> int:
        """Gaussians in the map (waits for the device)."""
        return int(self._count)

    @property
    def dropped(self) -> int:
        """Gaussians pruned over the budget since the last reset (waits for the device)."""
        return int(self._dropped)

    def field(self, name: str) -> np.ndarray:
        """A host copy of one field (``positions``, ``scales``, ``rotations``, ``opacities``, ``colors``, ``hits``)."""
        return self._rows()[:, _COLUMNS[name]].copy()

    @property
    def keys(self) -> np.ndarray:
        """The voxel keys of the Gaussians, in table order (host)."""
        keys = np.empty(self.count, np.int64)
        for k, rows in (self._main, self._tail):
            k, rows = download(k), download(rows)
            stored = k != EMPTY
            keys[rows[stored]] = k[stored]
        return keys

    @property
    def nbytes(self) -> int:
        """Bytes of the table and the index."""
        tensors = [t for part in (self._main, self._tail) for t in part]
        tensors += [] if self._table is None else [self._table]
        return sum(t.numel() * t.element_size() for t in tensors)

    def insert(self, positions, colors, scales, opacities, rotation: np.ndarray | None,
               camera_position: np.ndarray | None, offered: torch.Tensor | None = None,
               camera: torch.Tensor | None = None) -> torch.Tensor:
        """Offer at most ``candidates`` Gaussians in the fixed frame (``positions``, ``colors``, ``scales`` ``[N, 3]``
        along the camera axes, ``opacities`` ``[N]``: tensors on one device, or numpy for the CPU; ``rotation`` = the
        camera's 3x3 orientation in the fixed frame, ``camera_position`` its position: host arrays); returns how
        many were added (a 0-dim tensor on the map's device: reading it waits for the device). ``offered`` ``[N]``
        bool (on their device): only those rows are offered, the others are left out as if not given (their values
        are never stored), so a caller can offer a fixed number of rows of which the device knows the valid ones.
        ``camera``: instead of ``rotation`` and ``camera_position`` (None), their :func:`camera_row` made on the map's
        device (a pose the host does not know yet)."""
        positions, colors, scales, opacities = (torch.as_tensor(a) for a in (positions, colors, scales, opacities))
        n = positions.shape[0]
        if n > self.p.candidates:
            raise ValueError(f"{n} Gaussians offered at once, more than candidates={self.p.candidates}")
        self._storage(positions.device)
        if n == 0:
            return torch.zeros((), dtype=torch.int64, device=positions.device)
        self._learn_sizes()
        if camera is None:
            camera = self._upload_camera(camera_row(np.roll(matrix_to_quaternion(rotation), 1), camera_position),
                                         self._table, torch.float32)
        with one_thread(positions.device):
            if not self._fixed:
                added = self._insert(positions, colors, scales, opacities, offered, camera)
            else:
                prune = self._bound + n > self.p.budget  # the map may be over its budget after it
                args = _padded(positions, colors, scales, opacities, offered, self.p.candidates)
                if self._graphed is not None and not self._graphed.captured:  # both graphs at once: a capture waits
                    for flag in (True, False):
                        self._prune_now = flag
                        self._graphed.prepare(*args, camera)
                self._prune_now = prune
                added = self._insert(*args, camera) if self._graphed is None else self._graphed(*args, camera)
                self._bound = min(self._bound + n, self.p.budget) if prune else self._bound + n
        self._queue_sizes()
        return added

    def _insert(self, positions, colors, scales, opacities, offered: torch.Tensor | None,
                camera: torch.Tensor) -> torch.Tensor:
        """One insertion (``camera``: the new rows' quaternion and hit count, then the camera's position); with the
        fixed index every tensor it makes has a fixed size and the map's tensors are updated in place (a CUDA graph
        replays it), the prune decided by the host's bound (``_prune_now``)."""
        n, pad = positions.shape[0], self.capacity  # pad: the scratch row
        keys = voxel_keys(positions, self.p.voxel).clamp_max(EMPTY - 1)
        if offered is not None:  # the rows not offered: after every offered one (the sort is stable), never first
            keys = torch.where(offered, keys, EMPTY)
        keys, order = torch.sort(keys, stable=True)
        first = torch.ones(n, dtype=torch.bool, device=keys.device)  # the first offered of its voxel
        first[1:] = keys[1:] != keys[:-1]
        if offered is not None:
            first &= offered.index_select(0, order)
        row, below = self._lookup(keys)
        found, new = first & (row < pad), first & (row == pad)
        added = new.sum()
        rank = torch.cumsum(new, 0) - 1
        rows_in = torch.cat([positions.float(), colors.float(), scales.float(), opacities.float()[:, None]],
                            1).index_select(0, order)
        merged = self._table.index_select(0, row)  # moving average of position and colour, one more hit
        merged[:, _MERGED].mul_(1 - self.p.merge_rate).add_(rows_in[:, _MERGED] * self.p.merge_rate)
        merged[:, _COLUMNS["hits"]] += 1
        self._table.index_copy_(0, torch.where(found, row, pad), merged)
        at = torch.where(new, self._count + rank, pad)
        self._table[:, :_OFFERED].index_copy_(0, at, rows_in)
        self._table[:, _OFFERED:].index_copy_(0, at, camera[:5].expand(n, 5))
        self._count.add_(added)

        if self._fixed:  # the new keys go straight into the one part (the padding past `capacity` is cut)
            self._set_main(*(t[:pad] for t in self._with_new(self._main, keys, at, new, rank, below, n)))
            if self._prune_now:
                self._prune(camera[5:])
            return added
        self._tail = self._with_new(self._tail, keys, at, new, rank, below, self._known(added, n))
        main_size, tail_size = self._main[0].shape[0], self._tail[0].shape[0]
        if tail_size > max(MIN_TAIL, TAIL_FRACTION * main_size):
            self._main, self._tail = _merged(self._main, self._tail, min(main_size + tail_size, pad)), self._empty()
        if main_size + tail_size > self.p.budget:  # the map may be over its budget
            self._prune(camera[5:])
        return added

    def _storage(self, device: torch.device) -> None:
        """Allocate the empty map on ``device`` (first insertion), or move the map there."""
        if self._table is None:
            # not cleared: rows are read only below the count (on the CPU a page is mapped when first written)
            self._table = torch.empty((self.capacity + 1, int(_EDGES[-1])), dtype=torch.float32, device=device)
            self._table[-1] = 0  # the scratch row: read (its values unused) by every insertion
            self._count, self._dropped = (torch.zeros((), dtype=torch.int64, device=device) for _ in range(2))
            self._main = self._tail = self._empty()
            self._use_index(device)
            return
        if self._table.device == device:
            return
        self._table = self._table.to(device)
        self._count, self._dropped = self._count.to(device), self._dropped.to(device)
        self._main, self._tail = (tuple(t.to(device) for t in part) for part in (self._main, self._tail))
        self._sizes, self._sizes_ready = None, None
        self._bound = self.count
        self._use_index(device)

    def _fixed_for(self, device: torch.device) -> bool:
        """Whether the index on ``device`` is the fixed one: on a GPU with ``cuda_graphs``, where an insertion's
        few dozen small operations cost more to launch one by one than to run."""
        return self.cuda_graphs and device.type == "cuda"

    def _use_index(self, device: torch.device) -> None:
        """Set up the index the map keeps on ``device``: the fixed one (its tail merged into one part of
        ``capacity`` entries, EMPTY-padded; the insertion graphed on a GPU), or the sorted main part and tail."""
        self._fixed, self._graphed = self._fixed_for(device), None
        if not self._fixed:
            return
        keys, rows = _merged(self._main, self._tail, self._main[0].shape[0] + self._tail[0].shape[0])
        self._main, self._tail = _compacted(keys, rows, keys != EMPTY, self.capacity), self._empty()
        if device.type == "cuda":
            self._graphed = GraphedCall(self._insert, key=lambda: (self._prune_now,),
                                        state=lambda: [self._table, self._count, self._dropped, *self._main])

    def _set_main(self, keys: torch.Tensor, rows: torch.Tensor) -> None:
        """The index's main part: with the fixed index written into its tensors (a graph reads and writes those),
        else replaced."""
        if self._fixed:
            self._main[0].copy_(keys)
            self._main[1].copy_(rows)
        else:
            self._main = keys, rows

    def _empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _index(self._table.device)

    @staticmethod
    def _known(value: torch.Tensor, bound: int) -> int:
        """``value`` where reading it waits for nothing (on the CPU), else its upper ``bound``."""
        return bound if value.is_cuda else int(value)

    def _queue_sizes(self) -> None:
        """On a GPU, start copying the count and the tail's entries (with the fixed index the count only) to the
        host (:meth:`_learn_sizes` reads them)."""
        if not self._table.is_cuda:
            return
        if self._sizes is None:
            self._sizes, self._sizes_ready = torch.empty(2, dtype=torch.int64, pin_memory=True), torch.cuda.Event()
        if self._fixed:
            self._sizes[:1].copy_(self._count[None], non_blocking=True)
        else:
            self._sizes.copy_(torch.stack([self._count, (self._tail[0] != EMPTY).sum()]), non_blocking=True)
        self._sizes_ready.record()

    def _learn_sizes(self) -> None:
        """Where the sizes of :meth:`_queue_sizes` have arrived (without waiting): cut the index's padding, or with
        the fixed index take the count as the host's bound."""
        if self._sizes_ready is None or not self._sizes_ready.query():
            return
        if self._fixed:  # (only the count was copied)
            self._bound = int(self._sizes[0])
            return
        count, tail = self._sizes.tolist()
        self._main = tuple(t[:count - tail] for t in self._main)
        self._tail = tuple(t[:tail] for t in self._tail)

    def _lookup(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The table rows of the voxels ``keys`` (the scratch row where empty), and how many of the tail's entries
        (with the fixed index: of its one part) are below each key."""
        row = torch.full_like(keys, self.capacity)
        for sorted_keys, rows in (self._main,) if self._fixed else (self._main, self._tail):
            below = torch.searchsorted(sorted_keys, keys)
            if sorted_keys.shape[0]:
                idx = below.clamp_max(sorted_keys.shape[0] - 1)
                row = torch.where(sorted_keys[idx] == keys, rows[idx], row)
        return row, below

    @staticmethod
    def _with_new(part: tuple[torch.Tensor, torch.Tensor], keys: torch.Tensor, rows: torch.Tensor, new: torch.Tensor,
                  rank: torch.Tensor, below: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The index ``part`` with the sorted ``keys`` where ``new`` (``size`` at least their number; ``rank``: their
        rank among them) and their ``rows``; ``below``: the part's entries below each key. A new key goes after the
        part's entries below it and the new keys before it; an entry of the part after the new keys not above it
        (EMPTY padding stays last)."""
        part_keys, part_rows = part
        t = part_keys.shape[0]
        at_new = torch.where(new, rank + below, t + size)  # the others: to one slot past the end
        passed = torch.zeros(t + 1, dtype=torch.int64, device=keys.device).index_add_(
            0, below, new.long()).cumsum(0)[:-1]
        at_part = torch.arange(t, device=keys.device) + passed
        out_keys = torch.full((t + size + 1,), EMPTY, dtype=torch.int64, device=keys.device)
        out_rows = torch.zeros(t + size + 1, dtype=torch.int32, device=keys.device)
        out_keys.index_copy_(0, at_part, part_keys).index_copy_(0, at_new, keys)
        out_rows.index_copy_(0, at_part, part_rows).index_copy_(0, at_new, rows.int())
        return out_keys[:t + size], out_rows[:t + size]

    def _prune(self, camera_position: torch.Tensor) -> None:
        """If over the budget, keep the ``low_water · budget`` Gaussians nearest the camera (their order in the table
        is kept); else keep all. Either way the index's tail is merged into its main part."""
        pad, target = self.capacity, int(self.p.low_water * self.p.budget)
        row = torch.arange(pad, device=self._table.device)
        alive = row < self._count
        d = self._table[:pad, _COLUMNS["positions"]] - camera_position
        d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]  # in this order on every device
        # the rows past the count (infinitely far) and the farthest Gaussians: all but the target nearest
        farthest = torch.topk(torch.where(alive, d2, torch.inf), pad - target, sorted=False).indices
        keep = torch.where(self._count > self.p.budget, alive.clone().index_fill_(0, farthest, False), alive)
        kept = keep.sum()
        self._dropped.add_(self._count - kept)
        moved = torch.where(keep, torch.cumsum(keep, 0) - 1, pad)  # old row -> new row (the scratch row: dropped)
        self._table.index_copy_(0, moved, self._table[:pad].clone())
        self._count.copy_(kept)
        keys, rows = _merged(self._main, self._tail, min(self._main[0].shape[0] + self._tail[0].shape[0], pad))
        rows = rows.long().clamp_max(pad - 1)  # (an EMPTY entry's row: not stored either way)
        size = pad if self._fixed else self._known(kept, keys.shape[0])
        self._set_main(*_compacted(keys, moved[rows], (keys != EMPTY) & keep[rows], size))
        self._tail = self._empty()

    def _rows(self) -> np.ndarray:
        """The table's rows in use, on the host (on the CPU a view of the table)."""
        if self._table is None:
            return np.zeros((0, int(_EDGES[-1])), np.float32)
        return download(self._table[:self.count])

    def snapshot(self) -> GaussianCloud:
        """The map as a static GaussianCloud in the fixed frame (host copies: safe to publish from another
        thread)."""
        t = self._rows().copy()
        f = {name: t[:, cols] for name, cols in _COLUMNS.items()}
        return GaussianCloud(f["positions"], f["scales"], f["rotations"], f["opacities"][:, 0], f["colors"],
                             np.zeros_like(f["positions"]), metric=self.metric)


def _padded(positions, colors, scales, opacities, offered, rows: int) -> tuple[torch.Tensor, ...]:
    """A frame's offer as ``rows`` rows (one signature for the fixed index's graphs): those past the given ones are
    zeros and not offered (``offered`` None: all the given ones are)."""
    n, device = positions.shape[0], positions.device
    offered = torch.ones(n, dtype=torch.bool, device=device) if offered is None else offered
    if n == rows:
        return positions, colors, scales, opacities, offered
    return tuple(torch.cat([t, t.new_zeros((rows - n, *t.shape[1:]))])
                 for t in (positions, colors, scales, opacities, offered))


def _index(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty index part: (int64 keys, int32 rows)."""
    return torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, dtype=torch.int32, device=device)


def _merged(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
            size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sorted (keys, rows) index parts with no stored key in common, as one of its first ``size`` entries
    (``size`` at least the stored keys of both: the rest is EMPTY padding). ``b`` is searched in ``a`` (make it the
    smaller): an entry of ``b`` goes before the entries of ``a`` not below it, one of ``a`` after the entries of
    ``b`` not above it."""
    (ka, ra), (kb, rb) = a, b
    before = torch.searchsorted(ka, kb)  # entries of a below each of b
    at_b = torch.arange(kb.shape[0], device=kb.device) + before
    passed = torch.zeros(ka.shape[0] + 1, dtype=torch.int64, device=ka.device).index_add_(
        0, before, torch.ones_like(before)).cumsum(0)[:-1]  # entries of b not above each of a
    at_a = torch.arange(ka.shape[0], device=ka.device) + passed
    keys = torch.empty(ka.shape[0] + kb.shape[0], dtype=torch.int64, device=ka.device)
    rows = torch.empty(keys.shape[0], dtype=torch.int32, device=ka.device)
    keys.index_copy_(0, at_a, ka).index_copy_(0, at_b, kb)
    rows.index_copy_(0, at_a, ra.int()).index_copy_(0, at_b, rb.int())
    return keys[:size], rows[:size]


def _compacted(keys: torch.Tensor, rows: torch.Tensor, stored: torch.Tensor, size: int) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """The entries of a sorted index part where ``stored``, in order, as one of ``size`` entries (at least as many
    as are stored; the rest EMPTY padding)."""
    at = torch.where(stored, torch.cumsum(stored, 0) - 1, size)  # the unstored ones to one slot past the end
    out_keys = torch.full((size + 1,), EMPTY, dtype=torch.int64, device=keys.device).index_copy_(0, at, keys)
    out_rows = torch.zeros(size + 1, dtype=torch.int32, device=keys.device).index_copy_(0, at, rows.int())
    return out_keys[:size], out_rows[:size]
