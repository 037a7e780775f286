"""Round trips and malformed input for numpy <-> sensor_msgs/Image (both message flavors, through CDR)."""
import numpy as np
import pytest

from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.encodings import ENCODINGS
from nut_ros.ros.images import depth_to_image, image_to_depth_m, image_to_numpy, image_to_rgb, numpy_to_image
from nut_ros.ros.msg_types import stamp_to_ns, uint8_field

FLAVORS = ["rosbags", pytest.param("rclpy", marks=pytest.mark.ros)]
RNG = np.random.default_rng(0)


def _pixels(encoding, h=6, w=5):
    dtype, channels = ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return RNG.uniform(0.1, 20.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _wire(msg, flavor):
    return deserialize(serialize(msg), "sensor_msgs/msg/Image", flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_roundtrip_every_encoding(flavor, encoding):
    pixels = _pixels(encoding)
    msg = _wire(numpy_to_image(pixels, encoding, 1_700_000_000_123_456_789, "cam_optical", flavor), flavor)
    assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == (encoding, 6, 5, "cam_optical")
    assert stamp_to_ns(msg.header.stamp) == 1_700_000_000_123_456_789
    back = image_to_numpy(msg)
    assert back.dtype == pixels.dtype and np.array_equal(back, pixels)


def _padded(pixels, encoding, pad, bigendian, flavor):
    """A message with ``pad`` bytes at the end of each row and the given byte order."""
    dtype = ENCODINGS[encoding][0]
    h, w = pixels.shape[:2]
    rows = (np.ascontiguousarray(pixels, dtype=dtype.newbyteorder(">" if bigendian else "<"))
            .view(np.uint8).reshape(h, -1))
    buf = np.full((h, rows.shape[1] + pad), 0xAB, np.uint8)
    buf[:, : rows.shape[1]] = rows
    msg = numpy_to_image(pixels, encoding, flavor=flavor)
    msg.step, msg.is_bigendian, msg.data = buf.shape[1], int(bigendian), uint8_field(buf, flavor)
    return _wire(msg, flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "16UC1", "32FC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_step_padding_and_byte_order(flavor, encoding, bigendian):
    pixels = _pixels(encoding)
    assert np.array_equal(image_to_numpy(_padded(pixels, encoding, 8, bigendian, flavor)), pixels)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_rgb_from_every_colour_encoding(flavor):
    rgb = _pixels("rgb8")
    sources = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "8UC3": rgb[:, :, ::-1],
               "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
               "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])}
    for encoding, pixels in sources.items():
        out = image_to_rgb(numpy_to_image(pixels, encoding, flavor=flavor))
        assert out.shape == rgb.shape and out.dtype == np.uint8 and np.array_equal(out, rgb), encoding
    mono = _pixels("mono8")
    assert np.array_equal(image_to_rgb(numpy_to_image(mono, "mono8", flavor=flavor)), np.dstack([mono] * 3))
    with pytest.raises(ConversionError, match="not an 8-bit"):
        image_to_rgb(numpy_to_image(_pixels("16UC1"), "16UC1", flavor=flavor))


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer samples a raw camera with ``pattern`` (e.g. "RGGB": the top-left 2x2 cell) takes of ``rgb``."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        out[k // 2::2, k % 2::2] = rgb[k // 2::2, k % 2::2, "RGB".index(colour)]
    return out


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
def test_rgb_from_bayer_keeps_each_pattern_colours(encoding):
    """Demosaicing a raw camera's samples of a picture of flat colours gives those colours back inside each (a
    pattern read as another would swap red and blue or mix green into them)."""
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, :8] = (200, 100, 50)
    rgb[:, 8:] = (30, 160, 220)
    msg = numpy_to_image(_mosaic(rgb, encoding.removeprefix("bayer_")[:4].upper()), encoding)
    out = image_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[2:-2, 2:6], rgb[2:-2, 2:6]) and np.array_equal(out[2:-2, 10:14], rgb[2:-2, 10:14])


@pytest.mark.parametrize("encoding, order", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"),
                                             ("yuyv", "YUYV")])
def test_rgb_from_yuv422_in_either_byte_order(encoding, order):
    """Video-range BT.601 Y'CbCr (as camera drivers send it) of white, black, red and green, two pixels each."""
    yuv = [(235, 128, 128), (16, 128, 128), (81, 90, 240), (145, 54, 34)]
    pixels = np.zeros((2, 2 * len(yuv), 2), np.uint8)
    for k, (y, u, v) in enumerate(yuv):  # one pair of pixels: U Y V Y or Y U Y V
        pixels[:, 2 * k:2 * k + 2] = np.reshape([u, y, v, y] if order == "UYVY" else [y, u, y, v], (2, 2))
    out = image_to_rgb(numpy_to_image(pixels, encoding))
    want = np.repeat([(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0)], 2, axis=0)
    assert np.abs(out.astype(int) - want[None]).max() <= 2
    with pytest.raises(ConversionError, match="odd"):
        image_to_rgb(numpy_to_image(pixels[:, :3], encoding))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_depth_metres_from_both_encodings(flavor):
    mm = np.array([[0, 1000, 2500], [65535, 1, 800]], np.uint16)
    depth = image_to_depth_m(numpy_to_image(mm, "16UC1", flavor=flavor))
    assert depth.dtype == np.float32 and np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[~np.isnan(depth)], [1.0, 2.5, 65.535, 0.001, 0.8], rtol=1e-6)
    metres = np.array([[1.5, np.nan, np.inf], [0.0, -1.0, 3.25]], np.float32)
    depth = image_to_depth_m(numpy_to_image(metres, "32FC1", flavor=flavor))
    assert np.array_equal(np.isnan(depth), [[False, True, True], [True, True, False]])
    np.testing.assert_array_equal(depth[[0, 1], [0, 2]], [1.5, 3.25])
    with pytest.raises(ConversionError, match="not a depth encoding"):
        image_to_depth_m(numpy_to_image(_pixels("rgb8"), "rgb8", flavor=flavor))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_depth_to_image(flavor):
    depth = np.array([[1.2344, np.nan], [70.0, 0.5]], np.float32)
    mm = image_to_numpy(depth_to_image(depth, encoding="16UC1", flavor=flavor))
    assert np.array_equal(mm, [[1234, 0], [65535, 500]])
    f32 = image_to_numpy(depth_to_image(depth, flavor=flavor))
    assert np.array_equal(f32, depth, equal_nan=True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_malformed_messages_raise_naming_the_field(flavor):
    def broken(**changes):
        msg = numpy_to_image(_pixels("rgb8"), "rgb8", flavor=flavor)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    cases = {
        "Image.encoding": broken(encoding="nv21"),
        "Image.step": broken(step=5 * 3 - 1),
        "Image.data": broken(data=uint8_field(np.zeros(10, np.uint8), flavor)),
        "Image.height": broken(height=0),
    }
    for field, msg in cases.items():
        with pytest.raises(ConversionError, match=field.replace(".", r"\.")):
            image_to_numpy(msg)
    odd_step = numpy_to_image(_pixels("16UC1"), "16UC1", flavor=flavor)
    odd_step.step, odd_step.data = 11, uint8_field(np.zeros(66, np.uint8), flavor)
    with pytest.raises(ConversionError, match="multiple"):
        image_to_numpy(odd_step)
    assert issubclass(ConversionError, ValueError)


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ConversionError, match="shape"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8", flavor="rosbags")
    with pytest.raises(ConversionError, match="dtype"):
        numpy_to_image(np.zeros((4, 4), np.float64), "32FC1", flavor="rosbags")
    with pytest.raises(ConversionError, match="unsupported encoding"):
        numpy_to_image(np.zeros((4, 4), np.uint16), "bayer_rggb16", flavor="rosbags")


def test_a_depth_encoding_on_the_image_topic_names_the_image_encodings():
    msg = numpy_to_image(np.zeros((4, 4), np.uint16), "mono16", flavor="rosbags")
    with pytest.raises(ConversionError, match=r"'mono16' is not an 8-bit colour .*\(images: rgb8, bgr8"):
        image_to_rgb(msg)
