"""The local map: voxel occupancy, merging, budget over a 5,000-frame soak."""
import numpy as np
import pytest

from nut_ros.perception.clustering import voxel_keys
from nut_ros.perception import local_map
from nut_ros.perception.local_map import LocalMap, rotation_to_quaternion
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


@pytest.mark.parametrize("yaw", [0.0, 0.5, 2.0, 3.1, -2.5])
def test_rotation_to_quaternion(yaw):
    r = yaw_pose(yaw, (0, 0, 0))[:3, :3]
    w, x, y, z = rotation_to_quaternion(r)
    back = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(back, r, atol=1e-9)


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
