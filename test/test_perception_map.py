"""The local map: voxel occupancy, merging, budget over a 5,000-frame soak; the torch map against the numpy map it
replaced, sized as on a GPU, and without operations that wait for the device."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nut_ros.perception.clustering import voxel_keys
from nut_ros.perception import local_map
from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams
from perception_synth import yaw_pose


def offer(m, pts, cam=(0, 0, 0)):
    n = len(pts)
    return m.insert(pts.astype(np.float32), np.full((n, 3), 0.5, np.float32), np.full((n, 3), 0.01, np.float32),
                    np.ones(n, np.float32), np.eye(3), np.asarray(cam, float))


def test_new_space_is_added_and_seen_space_is_merged():
    rng = np.random.default_rng(0)
    m = LocalMap(MapParams(voxel=0.1, budget=10_000))
    pts = rng.uniform(0, 1, (4000, 3))
    added = offer(m, pts)
    assert added == m.count <= 1000 and np.unique(m.keys).size == m.count  # one Gaussian per voxel
    assert offer(m, pts + rng.normal(0, 0.001, pts.shape)) < 40  # the same space again: (almost) only merges
    assert offer(m, pts + [2.0, 0, 0]) > 900  # new space
    snap = m.snapshot()
    assert snap.count == m.count and np.all(snap.velocities == 0) and snap.metric


def test_budget_keeps_the_nearest_and_stays_bounded_over_a_5000_frame_soak():
    rng = np.random.default_rng(1)
    p = MapParams(voxel=0.05, budget=20_000, candidates=2048)
    m = LocalMap(p)
    peak, peak_bytes = 0, 0
    for j in range(5000):  # a camera driving along x for 5000 frames, seeing a strip of new floor each frame
        cam = np.array([0.02 * j, 0.0, 0.0])
        pts = cam + rng.uniform([-2, 1, 0.5], [2, 1.02, 5], (p.candidates, 3))
        offer(m, pts, cam)
        peak, peak_bytes = max(peak, m.count), max(peak_bytes, m.nbytes)
    assert peak <= p.budget and m.dropped > 0
    # a float32 table of 15 columns (capacity up to a frame's candidates over the budget) and an index entry of an
    # int64 key and an int32 row per Gaussian
    assert peak_bytes <= (p.budget + p.candidates) * 72
    far = np.linalg.norm(m.field("positions") - cam, axis=1).max()
    assert far < 20  # what is left is near the camera's last position (it travelled 100 m)


def test_params_are_validated():
    with pytest.raises(ValueError, match="budget"):
        MapParams(budget=0)
    with pytest.raises(ValueError, match="low_water"):
        MapParams(low_water=1.5)


@pytest.mark.parametrize("min_tail", [local_map.MIN_TAIL, 200])
def test_matches_a_dictionary_of_voxels_through_merges_and_prunes(min_tail, monkeypatch):
    """The map against the rules written out with a dict (voxel key -> Gaussian): add, merge, prune the farthest
    (with the index's tail merged into its main part only at prunes, and every few frames)."""
    monkeypatch.setattr(local_map, "MIN_TAIL", min_tail)
    rng = np.random.default_rng(4)
    p = MapParams(voxel=0.1, budget=3000, low_water=0.8, candidates=1500, merge_rate=0.25)
    m, ref = LocalMap(p), {}
    for j in range(40):
        cam = np.array([0.15 * j, 0.0, 0.0])
        pts = (cam + rng.uniform([-2, -1, 0.5], [2, 1, 3], (p.candidates, 3))).astype(np.float32)
        colors = rng.uniform(0, 1, (p.candidates, 3)).astype(np.float32)
        added = m.insert(pts, colors, np.full((p.candidates, 3), 0.01, np.float32), np.ones(p.candidates, np.float32),
                         np.eye(3), cam)
        fresh = 0
        for key, idx in zip(*np.unique(voxel_keys(pts, p.voxel), return_index=True)):
            if key in ref:
                pos, col, hits = ref[key]
                ref[key] = ((1 - p.merge_rate) * pos + p.merge_rate * pts[idx],
                            (1 - p.merge_rate) * col + p.merge_rate * colors[idx], hits + 1)
            else:
                ref[key], fresh = (pts[idx].astype(np.float64), colors[idx].astype(np.float64), 1), fresh + 1
        assert added == fresh
        if len(ref) > p.budget:
            by_dist = sorted(ref, key=lambda k: np.linalg.norm(ref[k][0].astype(np.float32) - cam.astype(np.float32)))
            ref = {k: ref[k] for k in by_dist[:int(p.low_water * p.budget)]}
        assert m.count == len(ref) <= p.budget
        order = np.argsort(m.keys)
        assert np.array_equal(m.keys[order], np.array(sorted(ref)))
        want = np.array([ref[k][0] for k in sorted(ref)])
        np.testing.assert_allclose(m.field("positions")[order], want, atol=1e-5)
        np.testing.assert_allclose(m.field("hits")[order, 0], [ref[k][2] for k in sorted(ref)])
    assert m.dropped > 0


# -- the torch map: the numpy map it replaced, the GPU path's padded index and bounds, no waiting -----------------
FIXTURE = Path(__file__).parent / "fixtures" / "local_map_expected.json"
STREAM_PARAMS = MapParams(voxel=0.1, budget=3000, low_water=0.8, candidates=1500, merge_rate=0.25)


def fixed_stream(frames: int = 30):
    """A camera yawing as it drives along x, offering float64 points (several per voxel) in front of it."""
    rng = np.random.default_rng(12)
    n = STREAM_PARAMS.candidates
    for j in range(frames):
        pose = yaw_pose(0.02 * j, (0.1 * j, 0.0, 0.0))
        pts = pose[:3, 3] + rng.uniform([-1.5, -0.5, 0.5], [1.5, 0.5, 2.5], (n, 3)) @ pose[:3, :3].T
        yield (pts, rng.uniform(0, 1, (n, 3)).astype(np.float32), rng.uniform(0.01, 0.05, (n, 3)).astype(np.float32),
               rng.uniform(0.5, 1, n).astype(np.float32), pose[:3, :3], pose[:3, 3])


def run_stream(m, frames: int = 30) -> dict:
    """Per frame: added, count, dropped; at the end the map's key sum and column sums."""
    per_frame = []
    for offer_args in fixed_stream(frames):
        per_frame.append([int(m.insert(*offer_args)), m.count, m.dropped])
    keys = np.sort(m.keys)
    return {"per_frame": per_frame, "key_sum": int(keys.astype(object).sum()),
            "key_xor": int(np.bitwise_xor.reduce(keys)),
            **{name: m.field(name).astype(np.float64).sum(0).tolist()
               for name in ("positions", "scales", "rotations", "opacities", "colors", "hits")}}


def test_reproduces_the_numpy_map_it_replaced():
    """The torch map on the CPU against the numpy LocalMap at commit f780f09 on :func:`fixed_stream` (recorded by
    ``run_stream`` with that class into test/fixtures/local_map_expected.json): the same Gaussians added, merged and
    pruned each frame, the same voxels, the same fields (float32 sums within rounding)."""
    want, got = json.loads(FIXTURE.read_text()), run_stream(LocalMap(STREAM_PARAMS))
    assert want["per_frame"][-1][2] > 0 and sum(f[0] for f in want["per_frame"]) > 5000  # pruned, merged, added
    assert got["per_frame"] == want["per_frame"]
    assert (got["key_sum"], got["key_xor"]) == (want["key_sum"], want["key_xor"])
    for name in ("positions", "scales", "rotations", "opacities", "colors", "hits"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)


class LateSizes:
    """A GPU's event for the sizes copy, on the CPU: arrived at the given insertions only."""

    def __init__(self, arrived: bool):
        self.arrived = arrived

    def query(self) -> bool:
        return self.arrived


def gpu_bounds(monkeypatch, arrivals):
    """Make the CPU map size its work as on a GPU: only upper bounds of its sizes, the exact ones arriving late
    (``arrivals``: whether each insertion's sizes have arrived by the next one)."""
    arrivals = iter(arrivals)

    def queue(self):
        self._sizes = torch.stack([self._count, (self._tail[0] != local_map.EMPTY).sum()])
        self._sizes_ready = LateSizes(next(arrivals))

    monkeypatch.setattr(LocalMap, "_known", staticmethod(lambda value, bound: bound))
    monkeypatch.setattr(LocalMap, "_queue_sizes", queue)


def fixed_index(monkeypatch):
    """Make the CPU map keep the GPU's fixed index (one part of ``capacity`` entries, updated in place)."""
    monkeypatch.setattr(LocalMap, "_fixed_for", lambda self, device: True)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("every", [1, 3, 10 ** 9])
def test_the_gpus_bounds_and_padded_index_give_the_same_map(every, fixed, monkeypatch):
    """Sized by upper bounds (EMPTY-padded index, prunes that may keep all), with the exact sizes arriving after
    every insertion, every third, or never: the same map as sized exactly, and the index padding stays bounded; with
    the fixed index (CUDA graphs) its one part keeps its size and no tail."""
    want = run_stream(LocalMap(STREAM_PARAMS))
    gpu_bounds(monkeypatch, (j % every == 0 for j in range(1000)))
    if fixed:
        fixed_index(monkeypatch)
    m = LocalMap(STREAM_PARAMS)
    got = run_stream(m)
    assert got["per_frame"] == want["per_frame"] and got["key_sum"] == want["key_sum"]
    for name in ("positions", "colors", "hits"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)
    assert m._main[0].shape[0] + m._tail[0].shape[0] <= m.capacity + STREAM_PARAMS.candidates
    if fixed:
        assert m._main[0].shape[0] == m.capacity and m._tail[0].shape[0] == 0


@pytest.mark.parametrize("fixed", [False, True])
def test_a_reset_map_is_a_new_map(fixed, monkeypatch):
    """After a reset mid-stream (with the fixed index: emptied in place, its storage kept) the map grows as a new
    one does, however full it was."""
    if fixed:
        fixed_index(monkeypatch)
    m = LocalMap(STREAM_PARAMS)
    table = None
    for offer_args in fixed_stream(12):
        m.insert(*offer_args)
        table = m._table
    assert m.dropped > 0
    m.reset()
    assert m.count == m.dropped == 0 and (m._table is table) == fixed
    assert run_stream(m) == run_stream(LocalMap(STREAM_PARAMS))


class Masked(LocalMap):
    """Offered each frame's rows with as many more not offered (copies of them, a NaN row, a row far away),
    masked out by ``offered``, in shuffled order (the offered ones keep theirs); every fifth frame none offered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(3)
        self.frame = 0

    def insert(self, positions, colors, scales, opacities, rotation, camera_position, offered=None):
        n = len(positions)
        self.frame += 1
        # the rows offered: the first half of the frame's (so at most candidates in all)
        half = 0 if self.frame % 5 == 0 else n // 2
        extra = self.rng.integers(0, n, n - half)
        positions = np.concatenate([positions[:half], positions[extra]])
        positions[half] = np.nan
        positions[half + 1] = 1e9
        fields = [np.concatenate([f[:half], f[extra]]) for f in (colors, scales, opacities)]
        mask = np.arange(n) < half
        order = np.sort(self.rng.choice(n, half, replace=False))  # where the offered rows go, in their order
        rest = np.setdiff1d(np.arange(n), order)
        perm = np.empty(n, np.int64)
        perm[order], perm[rest] = np.arange(half), np.arange(half, n)
        return super().insert(positions[perm], *(f[perm] for f in fields), rotation, camera_position,
                              torch.from_numpy(mask[perm]))


class Halves(LocalMap):
    """Offered the first half of each frame's rows only; every fifth frame none."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frame = 0

    def insert(self, positions, colors, scales, opacities, rotation, camera_position, offered=None):
        self.frame += 1
        half = 0 if self.frame % 5 == 0 else len(positions) // 2
        return super().insert(positions[:half], colors[:half], scales[:half], opacities[:half], rotation,
                              camera_position)


@pytest.mark.parametrize("bounds", [False, True, "fixed"])
def test_rows_not_offered_change_nothing(bounds, monkeypatch):
    """Rows left out by ``offered`` (copies of offered ones, NaN, far away, anywhere in the order; all of a frame's)
    give the map that offering only the others gives, also as sized on a GPU, and with its fixed index."""
    if bounds:
        gpu_bounds(monkeypatch, (j % 3 == 0 for j in range(1000)))
    if bounds == "fixed":
        fixed_index(monkeypatch)
    want, got = run_stream(Halves(STREAM_PARAMS)), run_stream(Masked(STREAM_PARAMS))
    assert sum(f[0] for f in want["per_frame"]) > 1000 and want["per_frame"][-1][2] > 0  # added, pruned
    assert got == want


class Recorder(TorchDispatchMode):
    """The aten operations run inside it."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((str(func.overloadpacket.__name__), args))
        return func(*args, **(kwargs or {}))


WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
               "unique_consecutive", "masked_scatter"}  # each makes a GPU wait for its data to reach the host


@pytest.mark.parametrize("fixed", [False, True])
def test_insertion_runs_no_operation_that_waits_for_the_device(fixed, monkeypatch):
    """As sized on a GPU (bounds only, sizes never arriving), every insertion (adds, merges, tail merges, prunes;
    also with the fixed index) runs none of the operations that read a tensor's data on the host: no
    ``.item()``/``int()``/``bool()``, no ``nonzero``/``unique``/masked selection, no indexing by a boolean mask."""
    gpu_bounds(monkeypatch, iter(lambda: False, True))
    if fixed:
        fixed_index(monkeypatch)
    monkeypatch.setattr(local_map, "MIN_TAIL", 200)
    m = LocalMap(STREAM_PARAMS)
    recorder = Recorder()
    with recorder:
        for offer_args in fixed_stream(30):
            m.insert(*offer_args)
    names = {name for name, _ in recorder.ops}
    assert {"topk", "searchsorted", "index_copy_"} <= names  # pruned, looked up, wrote (the recorder sees the ops)
    assert not names & WAITING_OPS
    for name, args in recorder.ops:
        if name in ("index", "index_put_", "index_put"):
            assert all(i is None or i.dtype != torch.bool for i in args[1]), name
    assert m.dropped > 0


def wide_stream(frames: int = 40):
    """:func:`fixed_stream` for the default settings: ``candidates`` points a frame, mostly in new voxels, so the
    default budget is exceeded after some 25 frames."""
    rng = np.random.default_rng(13)
    n = MapParams().candidates
    for j in range(frames):
        pose = yaw_pose(0.01 * j, (0.5 * j, 0.0, 0.0))
        pts = pose[:3, 3] + rng.uniform([-5, -1.5, 0.5], [5, 1.5, 6], (n, 3)) @ pose[:3, :3].T
        yield (pts, rng.uniform(0, 1, (n, 3)).astype(np.float32), rng.uniform(0.01, 0.05, (n, 3)).astype(np.float32),
               rng.uniform(0.5, 1, n).astype(np.float32), pose[:3, :3], pose[:3, 3])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("params, stream", [(STREAM_PARAMS, fixed_stream), (MapParams(), wide_stream)])
def test_cuda_map_matches_the_cpu_map_and_never_synchronises(params, stream, cuda_graphs):
    """A stream on the GPU (inputs there), its insertions launched one by one or replayed as CUDA graphs: the same
    map as on the CPU, and no insertion synchronises (torch's sync debug mode reports any synchronising call; with
    graphs, but in the insertions that capture one): small settings that prune every frame, and the defaults (a
    200,000-Gaussian budget, pruned after some 25 frames)."""
    cpu, m = LocalMap(params), LocalMap(params, cuda_graphs=cuda_graphs)
    # the process's first CUDA sort and page-locked copy initialise lazily (and wait): in a throwaway map
    first = next(stream())
    LocalMap(params, cuda_graphs=False).insert(*(torch.as_tensor(a, device="cuda") for a in first[:4]), *first[4:])
    want, got, replayed = [], [], 0
    for pts, colors, scales, opacities, rot, cam in stream():
        want.append([int(cpu.insert(pts, colors, scales, opacities, rot, cam)), cpu.count, cpu.dropped])
        tensors = [torch.as_tensor(a, device="cuda") for a in (pts, colors, scales, opacities)]
        torch.cuda.synchronize()
        before = 0 if m._graphed is None else m._graphed.captured
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                added = m.insert(*tensors, rot, cam)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        if (0 if m._graphed is None else m._graphed.captured) == before:  # no capture in this insertion
            syncs = [str(w.message) for w in caught if "synchronizing CUDA operation" in str(w.message)]
            assert not syncs, syncs
            replayed += m._graphed is not None
        got.append([int(added), m.count, m.dropped])
    assert got == want and want[-1][2] > 0
    assert (m._graphed is not None and m._graphed.captured == 2 and replayed >= len(want) - 3) == cuda_graphs
    assert_same_map(m, cpu)
    if cuda_graphs:  # emptied in place, the map's next stream replays the same graphs
        m.reset()
        again = next(stream())
        fresh = LocalMap(params)
        added = m.insert(*(torch.as_tensor(a, device="cuda") for a in again[:4]), *again[4:])
        assert [int(added), m.count, m._graphed.captured] == [int(fresh.insert(*again)), fresh.count, 2]
        assert_same_map(m, fresh)


def assert_same_map(m: LocalMap, want: LocalMap) -> None:
    assert np.array_equal(np.sort(m.keys), np.sort(want.keys))
    for name in ("positions", "colors", "hits"):
        np.testing.assert_allclose(m.field(name).astype(np.float64).sum(0), want.field(name).astype(np.float64).sum(0),
                                   rtol=1e-5, err_msg=name)
