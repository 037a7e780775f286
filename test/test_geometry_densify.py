"""The dense fill of semi-dense inverse depth (:func:`nut_ros.geometry.densify.densify`) on synthetic scenes."""
import numpy as np
import pytest

from nut_ros.geometry import densify as densify_module
from nut_ros.geometry.densify import densify

H, W = 96, 128


def test_a_ramp_is_filled_between_sparse_columns():
    """Inverse depth of a plane is affine in the image: the membrane interpolates it across the holes. Near the image
    border, where the membrane has no neighbour to hold it, a ramp flattens a little towards the inside (0.02 of the
    ramp's range of 1 at the border here)."""
    values = np.tile(np.linspace(1, 2, W, dtype=np.float32), (H, 1))
    confidence = np.zeros_like(values)
    confidence[:, ::9] = 1  # columns 0, 9, ..., 126: every hole lies between known values
    filled = densify(np.where(confidence > 0, values, 0), confidence, np.full((H, W), 128, np.uint8))
    assert np.isfinite(filled).all() and filled.dtype == np.float32
    error = np.abs(filled - values)
    assert error[:, 40:88].max() < 0.01 and error.max() < 0.03


def test_two_planes_meet_at_the_image_edge():
    """Two planes with a depth step where the image has an edge, known on a fifth of their pixels with 5 % noise and
    not at all within 6 px of the edge (as motion gives no depth at an occlusion): the fill recovers both planes away
    from the edge (measured: median error 0.7 %, at most 5-8 % beyond 10 px) and puts a step on the edge in every row.
    The step is about half the true one (0.46-0.47 measured): the pyramid's coarse levels blend the two sides, and
    the few full-size sweeps restore only part of the step in the band without depth."""
    rng = np.random.default_rng(0)
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    edge = 70
    near = 1.0 + 0.004 * u + 0.002 * v  # a wall, inverse depth 1.0-1.7
    far = 0.4 + 0.001 * u - 0.001 * v  # the wall behind it, 0.37-0.53
    truth = np.where(u < edge, near, far).astype(np.float32)
    grey = np.where(u < edge, 60, 190).astype(np.uint8)
    confidence = (rng.random((H, W)) < 0.2).astype(np.float32)
    confidence[:, edge - 6:edge + 6] = 0
    noisy = truth * (1 + 0.05 * rng.standard_normal((H, W))).astype(np.float32)
    filled = densify(np.where(confidence > 0, noisy, 0), confidence, grey)
    rel = np.abs(filled - truth) / truth
    away = np.abs(u - edge) >= 10
    assert np.median(rel[away]) < 0.012 and np.percentile(rel[away], 90) < 0.03 and rel[away].max() < 0.12
    assert (np.argmax(np.abs(np.diff(filled, axis=1)), axis=1) == edge - 1).all()  # the largest jump of every row
    true_step = near[:, edge - 1] - far[:, edge]  # 0.92-0.97
    assert (filled[:, edge - 1] - filled[:, edge] > 0.4 * true_step).all()


def test_the_plane_prior_carries_a_slant_into_a_large_hole():
    """A floor slanted along the image rows, known only in the left third of the columns (the rest a textureless
    hole): the membrane alone flattens the hole towards the middle rows' values (measured: 13 % median error in the
    right third, 43 % at most), the plane prior (``ε = 0.003``) continues the slant there (0.04 % median; the top
    and bottom rows stay within the plane's and the output's clip, 9 % at most); where values are known both follow
    them."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    truth = (1.0 + 0.01 * v).astype(np.float32)  # inverse depth 1.0-1.95: affine in the image
    confidence = np.zeros((H, W), np.float32)
    confidence[:, : W // 3] = 1
    grey = np.full((H, W), 128, np.uint8)
    plain = densify(np.where(confidence > 0, truth, 0), confidence, grey)
    planar = densify(np.where(confidence > 0, truth, 0), confidence, grey, plane_weight=0.003)
    far = u >= 2 * W // 3
    rel_plain, rel_planar = (np.abs(x - truth)[far] / truth[far] for x in (plain, planar))
    assert np.median(rel_plain) > 0.1 and np.median(rel_planar) < 0.005 and rel_planar.max() < 0.1
    for x in (plain, planar):
        assert np.abs(x - truth)[10:-10, 5: W // 3 - 5].max() < 0.01


def test_values_stay_in_the_known_values_range_and_unknown_pixels_are_filled():
    """Clipped to the known values' 5th-95th percentile, so the fill never reaches an extreme (an outlier, as a
    rule) of the semi-dense map."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (H, W), dtype=np.uint8)
    inv = rng.uniform(0.2, 3.0, (H, W)).astype(np.float32)
    confidence = np.zeros((H, W), np.float32)
    confidence[40:50, 60:70] = rng.uniform(0.1, 1.0, (10, 10))  # a small known patch, everything else unknown
    filled = densify(np.where(confidence > 0, inv, 0), confidence, grey)
    lo, hi = np.quantile(inv[confidence > 0], [0.05, 0.95])
    assert np.isfinite(filled).all()
    assert filled.min() >= lo - 1e-6 and filled.max() <= hi + 1e-6
    assert filled.min() < lo + 0.1 and filled.max() > hi - 0.1  # the clip is not the whole story: values spread


def test_a_low_confidence_outlier_barely_moves_the_fill():
    inv = np.ones((H, W), np.float32)
    confidence = np.ones((H, W), np.float32)
    inv[48, 64], confidence[48, 64] = 3.0, 0.01  # one unsure value 3x off among sure ones
    filled = densify(inv, confidence, np.full((H, W), 100, np.uint8))
    assert abs(filled[48, 64] - 1.0) < 0.01


def test_no_known_value_is_an_error():
    with pytest.raises(ValueError, match="confidence"):
        densify(np.zeros((H, W), np.float32), np.zeros((H, W), np.float32), np.zeros((H, W), np.uint8))


def test_small_levels_sweep_as_a_matrix_like_the_rest():
    """A level of at most ``MATRIX_PIXELS`` sweeps as one dense matrix (cheaper there): the same sweeps as on the
    larger levels, up to float32 rounding."""
    rng = np.random.default_rng(2)
    h, w = 12, 16
    assert h * w <= densify_module.MATRIX_PIXELS
    x, data = rng.uniform(0, 2, (2, h, w)).astype(np.float32)
    weight = (rng.uniform(0, 1, (h, w)) * (rng.uniform(0, 1, (h, w)) < 0.3)).astype(np.float32)
    grey = rng.uniform(0, 255, (h, w)).astype(np.float32)
    as_matrix = densify_module._sweeps(x, data * weight, weight, grey, 2.0, 40.0, 40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(densify_module, "MATRIX_PIXELS", 0)
        as_slices = densify_module._sweeps(x, data * weight, weight, grey, 2.0, 40.0, 40)
    assert np.abs(as_slices - x).max() > 0.1  # the sweeps did move the values
    np.testing.assert_allclose(as_matrix, as_slices, rtol=1e-5, atol=1e-6)
