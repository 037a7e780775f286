"""Rectifying raw images (``nut_ros.geometry.rectify``): a picture seen through a distorting lens comes back as the
pinhole camera sees it, for each distortion model; depth is never blended across pixels."""
import cv2
import numpy as np
import pytest

from nut_ros.geometry.rectify import Lens, Rectifier, lens_maps

W, H = 160, 120
K = np.array([[120.0, 0, 79.5], [0, 120.0, 59.5], [0, 0, 1]])
P = np.array([[110.0, 0, 80.0], [0, 110.0, 60.0], [0, 0, 1]])
TURN = cv2.Rodrigues(np.array([0.0, 0.03, 0.01]))[0]  # a stereo rectification's small turn
COEFFS = {"plumb_bob": [-0.28, 0.09, 0.001, -0.002, 0.0],
          "rational_polynomial": [-0.2, 0.05, 0.001, 0.0, 0.0, 0.05, 0.0, 0.01],
          "equidistant": [0.05, -0.02, 0.004, 0.0]}


def picture() -> np.ndarray:
    """A smooth colour picture of the rectified camera (bilinear resampling keeps it nearly exact)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.dstack([128 + 100 * np.sin(x / 9), 128 + 100 * np.cos(y / 7), 255 * x / W]).astype(np.uint8)


def seen_through(lens: Lens, image: np.ndarray) -> np.ndarray:
    """What the raw camera of ``lens`` records of the rectified camera's ``image``: each raw pixel's ray, undistorted
    and turned, looked up in the rectified image (OpenCV's undistortPoints: the inverse of the maps under test)."""
    k, r, p = (np.reshape(m, (3, 3)) for m in (lens.k, lens.r, lens.p))
    d = np.array(lens.d)
    raw = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).reshape(-1, 1, 2).astype(np.float64)
    undistort = cv2.fisheye.undistortPoints if lens.model == "equidistant" else cv2.undistortPoints
    at = undistort(raw, k, d, R=r, P=p).reshape(H, W, 2).astype(np.float32)
    return cv2.remap(image, at[..., 0], at[..., 1], cv2.INTER_LINEAR)


def lens(model: str) -> Lens:
    return Lens(model, tuple(K.ravel()), tuple(COEFFS[model]), tuple(TURN.ravel()), tuple(P.ravel()), W, H)


@pytest.mark.parametrize("model", list(COEFFS))
def test_a_raw_image_comes_back_as_the_pinhole_camera_sees_it(model):
    truth = picture()
    raw = seen_through(lens(model), truth)
    out = Rectifier().rgb(lens(model), raw)
    inner = (slice(20, H - 20), slice(25, W - 25))
    error = np.abs(out[inner].astype(int) - truth[inner]).mean()
    assert out.shape == truth.shape and out.dtype == np.uint8
    assert error < 2.5 and np.abs(raw[inner].astype(int) - truth[inner]).mean() > 6 * error


def test_depth_takes_the_nearest_raw_pixel_and_nan_outside_the_raw_view():
    rng = np.random.default_rng(3)
    depth = rng.choice(np.array([0.8, 2.5, 6.0], np.float32), (H, W))  # three surfaces, edges everywhere
    out = Rectifier().depth(lens("plumb_bob"), depth)
    assert out.dtype == np.float32 and set(np.unique(out[np.isfinite(out)])) <= {np.float32(0.8), np.float32(2.5),
                                                                                  np.float32(6.0)}
    # half the focal length: the rectified view reaches past the raw image's
    wide = Lens("plumb_bob", tuple(K.ravel()), (0.0, 0.0, 0.0, 0.0, 0.0), tuple(np.eye(3).ravel()),
                (55.0, 0.0, 80.0, 0.0, 55.0, 60.0, 0.0, 0.0, 1.0), W, H)
    out = Rectifier().depth(wide, np.ones((H, W), np.float32))
    assert np.isnan(out[0, 0]) and np.isnan(out[-1, -1]) and out[H // 2, W // 2] == 1.0


def test_a_scaled_lens_rectifies_the_resized_images_as_the_full_lens_the_full_ones():
    """Images resized by half (as a driver's lower resolution of the calibrated camera): their rectified image is the
    full rectified image resized, to resampling's rounding."""
    full = seen_through(lens("plumb_bob"), picture())
    half = cv2.resize(full, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    out = Rectifier().rgb(lens("plumb_bob").scaled(W // 2, H // 2), half)
    want = cv2.resize(Rectifier().rgb(lens("plumb_bob"), full), (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    inner = (slice(10, H // 2 - 10), slice(12, W // 2 - 12))
    assert np.abs(out[inner].astype(int) - want[inner]).mean() < 2.0
    unscaled = Rectifier().rgb(Lens("plumb_bob", lens("plumb_bob").k, tuple(COEFFS["plumb_bob"]), tuple(TURN.ravel()),
                                    tuple(P.ravel()), W // 2, H // 2), half)  # the full lens on half images: wrong
    assert np.abs(unscaled[inner].astype(int) - want[inner]).mean() > 10


def test_the_maps_are_kept_for_the_same_lens_and_made_again_for_another():
    rectifier = Rectifier()
    first = rectifier.fixed_maps(lens("plumb_bob"))
    assert rectifier.fixed_maps(lens("plumb_bob")) is first
    assert rectifier.fixed_maps(lens("equidistant")) is not first


def test_a_lens_without_enough_coefficients_or_of_an_unknown_model_is_refused():
    with pytest.raises(ValueError, match="needs 4"):
        Lens("plumb_bob", tuple(K.ravel()), (0.1, 0.0), tuple(np.eye(3).ravel()), tuple(P.ravel()), W, H)
    with pytest.raises(ValueError, match="at most 14"):
        Lens("rational_polynomial", tuple(K.ravel()), (0.01,) * 15, tuple(np.eye(3).ravel()), tuple(P.ravel()), W, H)


@pytest.mark.parametrize("count, passed", [(4, 4), (5, 5), (8, 8), (9, 12), (14, 14)])
def test_every_coefficient_reaches_opencv_padded_to_a_count_it_takes(count, passed):
    """As image_geometry passes ``d`` whole: a rational_polynomial calibration's thin-prism terms (14 coefficients, as
    some drivers publish) move the maps; shorter ones are zero-padded."""
    model = "plumb_bob" if count < 8 else "rational_polynomial"
    d = tuple(0.01 * (i + 1) for i in range(count))
    lens_d = Lens(model, tuple(K.ravel()), d, tuple(np.eye(3).ravel()), tuple(P.ravel()), W, H)
    assert np.array_equal(lens_d.coefficients(), np.pad(d, (0, passed - count)))
    if count == 14:
        fewer = Lens(model, tuple(K.ravel()), d[:8], tuple(np.eye(3).ravel()), tuple(P.ravel()), W, H)
        assert np.abs(lens_maps(lens_d)[0] - lens_maps(fewer)[0]).max() > 0.5


def test_depth_takes_exactly_the_nearest_pixel_of_the_float_maps():
    """The fixed-point nearest map rounds as OpenCV's float maps round (a truncating map would shift depth by up to a
    pixel against the colour)."""
    depth = np.random.default_rng(4).uniform(0.5, 5.0, (H, W)).astype(np.float32)
    map_x, map_y = lens_maps(lens("rational_polynomial"))
    want = cv2.remap(depth, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    np.testing.assert_array_equal(Rectifier().depth(lens("rational_polynomial"), depth), want)


def test_a_scaled_lens_scales_both_cameras_pixel_centre_exact_as_intrinsics_do():
    from nut_ros.core.geometry import Intrinsics

    half = lens("plumb_bob").scaled(W // 2, H // 2)
    for m in (K, P):
        k = Intrinsics(m[0, 0], m[1, 1], m[0, 2], m[1, 2], W, H).scaled(W // 2, H // 2)
        assert (half.p if m is P else half.k) == (k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0)
    assert (half.d, half.r, half.width, half.height) == (lens("plumb_bob").d, lens("plumb_bob").r, W // 2, H // 2)
    with pytest.raises(ValueError, match="not one of"):
        Lens("kannala", tuple(K.ravel()), (0.1,) * 5, tuple(np.eye(3).ravel()), tuple(P.ravel()), W, H)
