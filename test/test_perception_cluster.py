"""Voxel keys and connected-component clustering."""
import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from nut_ros.perception.clustering import (cluster_points, cluster_stats, contains, group_median, group_quantile,
                                          group_quantiles, voxel_keys)


def test_keys_are_unique_per_cell_and_searchable():
    pts = np.array([[0.01, 0.01, 0.01], [0.09, 0.02, 0.03], [-0.01, 0.0, 0.0], [0.0, -0.01, 5.0]])
    keys = voxel_keys(pts, 0.1)
    assert keys[0] == keys[1] and len(set(keys.tolist())) == 3
    found, idx = contains(np.sort(keys[1:]), keys)
    assert found.all()
    assert not contains(np.sort(keys[1:]), voxel_keys(np.array([[9.0, 9.0, 9.0]]), 0.1))[0][0]
    assert not contains(np.zeros(0, np.int64), keys)[0].any()


def test_two_blobs_and_sparse_noise():
    rng = np.random.default_rng(0)
    a = rng.uniform([0, 0, 2], [0.5, 0.4, 2.3], (200, 3))
    b = rng.uniform([2, 0, 4], [2.6, 0.5, 4.2], (150, 3))
    noise = rng.uniform([-5, -5, 1], [5, 5, 9], (10, 3))
    pts = np.concatenate([a, b, noise])
    labels, k = cluster_points(pts, 0.2, 20)
    assert k == 2
    assert len(set(labels[:200])) == 1 and len(set(labels[200:350])) == 1 and labels[0] != labels[200]
    assert np.all(labels[350:] == -1)
    vel = np.zeros_like(pts)
    vel[:200] = [1.0, 0, 0]
    c = cluster_stats(pts, vel, np.ones(len(pts)), labels, k, 0.2)
    ia = labels[0]
    np.testing.assert_allclose(c.velocity[ia], [1.0, 0, 0])
    assert c.count[ia] == 200
    # extents are padded by half a voxel; the visible part is 0.3 deep, so the box reaches back from the front by
    # min(width, height) = the height (0.4 + 0.1)
    assert abs(c.size[ia, 1] - 0.5) < 0.02 and c.size[ia, 2] == c.size[ia, 1]
    assert abs(c.center[ia, 2] - (2.0 + c.size[ia, 2] / 2)) < 0.02
    assert abs(c.center[ia, 0] - 0.25) < 0.05


def test_clusters_are_the_components_of_touching_voxels_on_either_side_of_zero():
    """Against a brute-force 26-neighbourhood: sparse points around the origin, so cells of every sign pair up
    (the neighbours are found by adding packed offsets to packed keys)."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1.0, 1.0, (120, 3))
    labels, k = cluster_points(pts, 0.2, 1)
    cells = np.floor(pts / 0.2).astype(int)
    want_k, want = connected_components(np.abs(cells[:, None] - cells[None]).max(-1) <= 1, directed=False)
    assert k == want_k and 1 < k < len(pts)
    assert ((labels[:, None] == labels[None]) == (want[:, None] == want[None])).all()


def test_empty_input():
    labels, k = cluster_points(np.zeros((0, 3)), 0.2, 5)
    assert k == 0 and labels.size == 0
    c = cluster_stats(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), labels, 0, 0.2)
    assert len(c) == 0


def test_group_median_per_label():
    values = np.array([5.0, 1.0, 3.0, 10.0, 20.0, 7.0])
    labels = np.array([0, 0, 0, 2, 2, 2])
    med = group_median(values, labels, 3)
    assert med[0] == 3.0 and med[2] == 10.0 and np.isnan(med[1])
    assert group_median(np.zeros(0), np.zeros(0, np.int64), 0).shape == (0,)


def test_group_quantile_per_label():
    values = np.array([4.0, 0.0, 2.0, 1.0, 3.0, 9.0])
    labels = np.array([0, 0, 0, 0, 0, 2])
    assert group_quantile(values, labels, 3, 0.0)[0] == 0.0 and group_quantile(values, labels, 3, 1.0)[0] == 4.0
    assert group_quantile(values, labels, 3, 0.2)[0] == 1.0  # rank floor(0.2 * 5) = 1
    low = group_quantile(values, labels, 3, 0.1)
    assert low[2] == 9.0 and np.isnan(low[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_quantiles_pick_each_labels_ranked_member_per_column(dtype):
    """Against sorting each label's members column by column: float32 (sorted as integer keys) and float64, with
    negatives, zeros of both signs, ties, magnitudes from 1e-30 to 1e30, unsorted labels and an empty label."""
    rng = np.random.default_rng(5)
    values = (rng.normal(size=(400, 3)) * 10.0 ** rng.integers(-30, 31, (400, 3))).astype(dtype)
    values[::7] = 0.0
    values[1::11] = -0.0
    values[2::13] = values[3::13]  # ties
    labels = rng.choice([0, 1, 3, 4], 400)  # label 2 empty
    qs = (0.0, 0.1, 0.5, 0.9, 1.0)
    got = group_quantiles(values, labels, 5, qs)
    assert got.shape == (5, 5, 3) and got.dtype == dtype
    for label in range(5):
        members = np.sort(values[labels == label], axis=0)
        for i, q in enumerate(qs):
            want = members[min(int(q * len(members)), len(members) - 1)] if len(members) else np.full(3, np.nan)
            np.testing.assert_array_equal(got[i, label], want)
    np.testing.assert_array_equal(group_quantiles(values[:, 1], labels, 5, qs), got[..., 1])
    np.testing.assert_array_equal(group_quantiles(values, labels.astype(np.int32), 5, qs), got)  # (any int labels)


def test_group_quantiles_put_nan_of_either_sign_last():
    """A NaN made on the CPU (0/0) has its sign bit set: it still sorts after every number, as in a float sort."""
    with np.errstate(invalid="ignore"):
        values = np.array([1.0, np.float32(0) / np.float32(0), 2.0, -3.0, np.nan], np.float32)
    assert np.signbit(values[1]) and not np.signbit(values[4])
    qs = (0.0, 0.2, 0.4, 0.6, 1.0)  # ranks 0, 1, 2, 3, 4 of -3, 1, 2, NaN, NaN
    got = group_quantiles(values, np.zeros(5, np.int64), 1, qs)[:, 0]
    np.testing.assert_array_equal(got, [-3.0, 1.0, 2.0, np.nan, np.nan])
    np.testing.assert_array_equal(got, group_quantiles(values.astype(np.float64), np.zeros(5, np.int64), 1, qs)[:, 0])


def test_trimmed_box_ignores_a_few_stray_members():
    rng = np.random.default_rng(1)
    body = rng.uniform([0, 0, 2], [0.5, 0.4, 2.3], (300, 3))
    stray = np.array([[0.7, 0.3, 2.1], [0.78, 0.35, 2.2], [0.75, 0.3, 2.15]])  # flow bled onto the floor beside it
    pts = np.concatenate([body, stray])
    labels, k = cluster_points(pts, 0.2, 20)
    assert k == 1
    vel = np.zeros_like(pts)
    full = cluster_stats(pts, vel, np.ones(len(pts)), labels, k, 0.2)
    trimmed = cluster_stats(pts, vel, np.ones(len(pts)), labels, k, 0.2, trim=0.1)
    assert abs(full.size[0, 0] - (0.78 + 0.1)) < 0.02  # min-max reaches the strays
    assert abs(trimmed.size[0, 0] - (0.5 + 0.1)) < 0.05 and abs(trimmed.center[0, 0] - 0.25) < 0.03
    assert abs(trimmed.size[0, 1] - (0.4 + 0.1)) < 0.05  # evenly spread members: the full extent back
    np.testing.assert_allclose(trimmed.span, full.span)  # the full span is kept for the size filters
    np.testing.assert_allclose(full.span[:, :2], full.size[:, :2])  # untrimmed: the box across the view is the span


def test_a_velocity_component_not_measured_leaves_the_mean():
    pts = np.random.default_rng(2).uniform([0, 0, 2], [0.4, 0.4, 2.1], (40, 3))
    vel = np.tile([0.5, 0.0, 0.2], (40, 1))
    vel[:10, 2] = np.nan  # e.g. depth rates clipped at a leading edge
    c = cluster_stats(pts, vel, np.ones(40), np.zeros(40, np.int64), 1, 0.2)
    np.testing.assert_allclose(c.velocity[0], [0.5, 0.0, 0.2])
    vel[:, 2] = np.nan
    c = cluster_stats(pts, vel, np.ones(40), np.zeros(40, np.int64), 1, 0.2)
    assert np.isfinite(c.velocity[0, :2]).all() and np.isnan(c.velocity[0, 2])


def test_a_box_cut_by_the_image_edge_reaches_out_past_it():
    pts = np.random.default_rng(3).uniform([0, 0, 2], [0.2, 0.5, 2.05], (200, 3))  # the visible part: 0.2 x 0.5 m
    labels = np.zeros(200, np.int64)
    whole = cluster_stats(pts, np.zeros_like(pts), np.ones(200), labels, 1, 0.1)
    left = cluster_stats(pts, np.zeros_like(pts), np.ones(200), labels, 1, 0.1, cut=np.array([[-1, 0]]))
    right = cluster_stats(pts, np.zeros_like(pts), np.ones(200), labels, 1, 0.1, cut=np.array([[1, 0]]))
    both = cluster_stats(pts, np.zeros_like(pts), np.ones(200), labels, 1, 0.1, cut=np.array([[-1, 1]]))
    assert abs(left.size[0, 0] - whole.size[0, 1]) < 1e-9  # as long across x as along y
    assert abs((left.center[0, 0] + left.size[0, 0] / 2) - (whole.center[0, 0] + whole.size[0, 0] / 2)) < 1e-9
    assert abs((right.center[0, 0] - right.size[0, 0] / 2) - (whole.center[0, 0] - whole.size[0, 0] / 2)) < 1e-9
    assert left.size[0, 2] > whole.size[0, 2]  # the depth extent follows the wider box
    np.testing.assert_allclose(both.size, whole.size)  # cut along both axes: nothing to go by
    np.testing.assert_allclose(left.span, whole.span)  # the members' own span is kept for the size filters


def test_components_are_scipys_connected_components():
    """Label propagation gives scipy's components, numbered as scipy numbers them (by their smallest node), on
    random graphs and long chains."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from nut_ros.perception.clustering import components

    rng = np.random.default_rng(0)
    for t in range(300):
        n = int(rng.integers(1, 300))
        if t % 3:
            src, dst = rng.integers(0, n, 2 * n), rng.integers(0, n, 2 * n)
        else:
            perm = rng.permutation(n)
            src, dst = perm[:-1], perm[1:]
        want = connected_components(coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n)), directed=False)[1]
        assert np.array_equal(components(n, src, dst), want), t
    # a chain of 20,000 nodes in random order (a long thin cluster) is one component
    perm = rng.permutation(20_000)
    assert not components(20_000, perm[:-1], perm[1:]).any()


def test_a_clusters_velocity_is_its_members_opacity_weighted_mean():
    pts = np.array([[0.0, 0, 2], [0.05, 0, 2]])
    vel = np.array([[1.0, 0, 0], [0.0, 0, np.nan]])  # the second's depth rate not measured
    c = cluster_stats(pts, vel, np.array([3.0, 1.0]), np.zeros(2, np.int64), 1, 0.2)
    np.testing.assert_allclose(c.velocity[0], [0.75, 0.0, 0.0])  # z: the first member's alone
    assert c.weight[0] == 4.0 and c.count[0] == 2
