"""The local map: voxel occupancy, merging, budget over a 5,000-frame soak."""
import numpy as np
import pytest

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
    assert added == m.count <= 1000 and np.all(np.diff(m.keys) > 0)
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
    assert peak_bytes <= p.budget * 68  # a float32 table of 15 columns and an int64 key per Gaussian
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
