"""Image, depth and latency metrics against closed forms and scikit-image."""
import numpy as np
import pytest

from nut_ros.pipeline.metrics import constant_depth, depth_errors, percentiles, psnr, ramp_depth, resize_square, ssim


@pytest.fixture
def images():
    rng = np.random.default_rng(3)
    base = np.clip(rng.normal(0.5, 0.2, (40, 52, 3)), 0, 1)
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3  # some spatial structure
    noisy = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    return base, noisy


def test_psnr_closed_form():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        psnr(a, b[:4])


def test_ssim_matches_scikit_image(images):
    metrics = pytest.importorskip("skimage.metrics")
    a, b = images
    ref = metrics.structural_similarity(a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)
    ref_gray = metrics.structural_similarity(a[..., 0], b[..., 0], data_range=1.0, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False)
    assert ssim(a[..., 0], b[..., 0]) == pytest.approx(ref_gray, abs=1e-9)


def test_ssim_properties(images):
    a, b = images
    assert ssim(a, a) == pytest.approx(1.0)
    worse = np.clip(b + np.random.default_rng(1).normal(0, 0.1, b.shape), 0, 1)
    assert 0 < ssim(a, worse) < ssim(a, b) < 1
    assert ssim((a * 255).round().astype(np.uint8), (a * 255).round().astype(np.uint8)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least"):
        ssim(a[:8, :8], b[:8, :8])


def test_resize_square_keeps_mean_and_range(images):
    a, _ = images
    r = resize_square(a, 16)
    assert r.shape == (16, 16, 3) and r.min() >= 0 and r.max() <= 1
    assert r.mean() == pytest.approx(a.mean(), abs=0.01)


def test_resize_square_samples_the_image_at_the_output_pixel_centres():
    """A linear image stays linear under a symmetric resampling filter: away from the borders each output pixel
    is the input's value at its centre, ``(j + 0.5)·scale - 0.5`` in input pixels, per axis (a flip, a blur to the
    mean or a transposition fails)."""
    h, w, size = 48, 80, 16
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([u / (w - 1), v / (h - 1), np.full((h, w), 0.25)], axis=-1)
    r = resize_square(img, size)
    centres = np.arange(size) + 0.5
    inner = slice(2, size - 2)
    expect_u = (centres * w / size - 0.5) / (w - 1)
    expect_v = (centres * h / size - 0.5) / (h - 1)
    np.testing.assert_allclose(r[inner, inner, 0], np.broadcast_to(expect_u[inner], (size - 4, size - 4)), atol=1e-5)
    np.testing.assert_allclose(r[inner, inner, 1], np.broadcast_to(expect_v[inner, None], (size - 4, size - 4)),
                               atol=1e-5)
    np.testing.assert_allclose(r[..., 2], 0.25, atol=1e-6)


def test_depth_errors_known_values_and_alignment():
    gt = np.array([[1.0, 2.0], [4.0, np.nan]])
    pred = np.array([[1.1, 1.8], [4.0, 3.0]])
    e = depth_errors(pred, gt)
    assert e["pixels"] == 3 and e["scale"] == 1.0
    assert e["abs_rel"] == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert e["delta1"] == pytest.approx(1.0)
    far = depth_errors(np.array([2.0, 1.0]), np.array([1.0, 1.0]))
    assert far["delta1"] == pytest.approx(0.5) and far["abs_rel"] == pytest.approx(0.5)
    # relative depth off by a factor 7: median alignment recovers it exactly
    rng = np.random.default_rng(0)
    g = rng.uniform(1, 5, (10, 10))
    aligned = depth_errors(g / 7, g, align_median=True)
    assert aligned["scale"] == pytest.approx(7.0) and aligned["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert depth_errors(g / 7, g)["delta1"] == 0.0
    empty = depth_errors(np.zeros((2, 2)), np.ones((2, 2)))
    assert empty["pixels"] == 0 and np.isnan(empty["abs_rel"])


def test_percentiles():
    p = percentiles(range(1, 101))
    assert p["p50"] == pytest.approx(50.5) and p["max"] == 100 and p["mean"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    assert np.isnan(percentiles([])["p50"])


def test_disparity_affine_alignment_recovers_shifted_inverse_depth():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, 500)
    pred = 1.0 / (0.3 / gt + 0.05)  # disparity scaled and shifted: no single depth scale fits it
    assert depth_errors(pred, gt, align_median=True)["abs_rel"] > 0.1
    e = depth_errors(pred, gt, align_disparity=True)
    assert e["abs_rel"] < 1e-9 and e["delta1"] == 1.0
    # an inverted ordering cannot be fitted: the error stays large
    assert depth_errors(gt[::-1].copy(), gt, align_disparity=True)["abs_rel"] > 0.3


def test_disparity_aligned_outliers_are_capped_at_the_ground_truths_range():
    """One pixel aligned to a disparity at or below 0, or to a tiny positive one, counts as the farthest ground
    truth (as MiDaS caps aligned depth): bounded, and the same either way (it was 1000x the farthest depth for a
    negative disparity and unbounded for a tiny positive one, so one pixel of 36,864 could triple a frame's AbsRel)."""
    rng = np.random.default_rng(0)
    gt = 1.0 / rng.uniform(0.2, 1.0, 36864)
    pred = 1.0 / (1.0 / gt + 0.5 + rng.normal(0, 0.02, gt.size))  # disparity shifted by 0.5: the fit's t is -0.5
    clean = depth_errors(pred, gt, align_disparity=True)["abs_rel"]
    scores = []
    for aligned in (-0.1, 1.5e-4):  # the pixel's disparity after the fit
        bad = pred.copy()
        bad[0] = 1.0 / (aligned + 0.5)
        scores.append(depth_errors(bad, gt, align_disparity=True)["abs_rel"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert scores[0] - clean < (gt.max() / gt[0]) / gt.size + 1e-6  # at most the farthest depth's ratio, once


def test_depth_baselines():
    ramp = ramp_depth((30, 8))
    assert ramp.shape == (30, 8) and ramp[0, 0] == pytest.approx(2.0) and ramp[-1, 0] == pytest.approx(1 / 1.5)
    truth = 1.0 / (0.3 + 0.004 * np.arange(30))[:, None].repeat(8, 1)  # a disparity ramp of a shallower range
    assert depth_errors(ramp, truth, align_disparity=True)["abs_rel"] < 1e-9  # scale+shift: every ramp is exact
    assert depth_errors(ramp, truth, align_median=True)["abs_rel"] > 0.05  # scale alone: only this one's range
    assert depth_errors(constant_depth((30, 8)), np.full((30, 8), 2.5), align_median=True)["abs_rel"] < 1e-12
    assert depth_errors(constant_depth((30, 8)), truth, align_disparity=True)["abs_rel"] > 0.05
