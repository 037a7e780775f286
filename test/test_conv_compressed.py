"""CompressedImage: image_transport 'compressed' (jpeg/png) and 'compressedDepth' (16UC1, 32FC1) formats."""
import struct

import cv2
import numpy as np
import pytest

from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.compressed import compress_depth, compress_image, decompress_depth, decompress_image
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.images import image_to_depth_m, image_to_rgb
from nut_ros.ros.msg_types import msg_class, uint8_field

FLAVORS = ["rosbags", pytest.param("rclpy", marks=pytest.mark.ros)]
TYPE = "sensor_msgs/msg/CompressedImage"


def _smooth_rgb(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)


def _wire(msg, flavor):
    return deserialize(serialize(msg), TYPE, flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_png_is_lossless_and_restores_the_encoding(flavor, encoding):
    rgb = _smooth_rgb()
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, rgb[:, :, 0]]),
              "bgra8": np.dstack([rgb[:, :, ::-1], rgb[:, :, 0]]), "mono8": rgb[:, :, 0]}[encoding]
    msg = _wire(compress_image(pixels, encoding, "png", flavor=flavor), flavor)
    stored = {"rgb8": "bgr8", "bgr8": "bgr8", "rgba8": "bgra8", "bgra8": "bgra8", "mono8": "mono8"}[encoding]
    assert msg.format == f"{encoding}; png compressed {stored}"
    out, out_encoding = decompress_image(msg)
    assert out_encoding == encoding and np.array_equal(out, pixels)
    expected_rgb = np.dstack([pixels] * 3) if encoding == "mono8" else rgb
    assert np.array_equal(image_to_rgb(msg), expected_rgb)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_jpeg_colour_roundtrip(flavor):
    rgb = _smooth_rgb()
    msg = _wire(compress_image(rgb, "rgb8", "jpeg", quality=95, flavor=flavor), flavor)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    out = image_to_rgb(msg)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 2.0
    # A bare "jpeg" format (older publishers) decodes as the stored bgr8.
    msg.format = "jpeg"
    pixels, encoding = decompress_image(msg)
    assert encoding == "bgr8" and np.abs(pixels[:, :, ::-1].astype(int) - rgb).mean() < 2.0


def test_png_mono16():
    mono = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 13
    pixels, encoding = decompress_image(compress_image(mono, "16UC1", "png", flavor="rosbags"))
    assert encoding == "mono16" and np.array_equal(pixels, mono)
    with pytest.raises(ConversionError, match="only be PNG"):
        compress_image(mono, "16UC1", "jpeg", flavor="rosbags")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_compressed_depth_16uc1_is_exact_and_has_the_plugin_layout(flavor):
    mm = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 37) % 9000
    msg = _wire(compress_depth(mm, "16UC1", flavor=flavor), flavor)
    assert msg.format == "16UC1; compressedDepth png"
    data = bytes(msg.data)
    assert struct.unpack("<i", data[:4])[0] == 0 and data[12:20] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED), mm)
    pixels, encoding = decompress_depth(msg)
    assert encoding == "16UC1" and np.array_equal(pixels, mm)
    depth = image_to_depth_m(msg)
    assert np.isnan(depth[0, 0]) and depth[0, 1] == np.float32(0.037)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_compressed_depth_32fc1_inverse_depth_quantisation(flavor):
    depth = np.linspace(0.3, 9.9, 30 * 40, dtype=np.float32).reshape(30, 40)
    depth[0, :3] = [np.nan, 10.0, 25.0]  # invalid, == depth_max, beyond it: all coded 0 -> NaN
    msg = _wire(compress_depth(depth, "32FC1", depth_max=10.0, depth_quantization=100.0, flavor=flavor), flavor)
    assert msg.format == "32FC1; compressedDepth png"
    _, quant_a, quant_b = struct.unpack("<iff", bytes(msg.data)[:12])
    assert quant_a == pytest.approx(100 * 101) and quant_b == pytest.approx(1 - 100 * 101 / 10.0)
    out, encoding = decompress_depth(msg)
    assert encoding == "32FC1" and out.dtype == np.float32
    assert np.isnan(out[0, :3]).all()
    valid = np.isfinite(depth) & (depth < 10.0)
    # Quantisation step of inverse depth coding at depth d: d^2 / A.
    assert np.all(np.abs(out[valid] - depth[valid]) <= depth[valid] ** 2 / quant_a + 1e-5)
    # Independent decode of the stored PNG with the documented formula.
    q = cv2.imdecode(np.frombuffer(bytes(msg.data)[12:], np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float32)
    np.testing.assert_allclose(out[valid], (quant_a / (q - quant_b))[valid], rtol=1e-6)
    np.testing.assert_array_equal(image_to_depth_m(msg)[valid], out[valid])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_malformed_compressed_messages(flavor):
    cls = msg_class(TYPE, flavor)

    def make(fmt, data):
        msg = compress_image(_smooth_rgb(), "rgb8", "png", flavor=flavor)
        msg.format, msg.data = fmt, uint8_field(np.frombuffer(data, np.uint8), flavor)
        assert isinstance(msg, cls)
        return msg

    good_png = bytes(compress_image(_smooth_rgb(), "rgb8", "png", flavor="rosbags").data)
    with pytest.raises(ConversionError, match="CompressedImage.data: not a decodable"):
        decompress_image(make("rgb8; png compressed bgr8", good_png[: len(good_png) // 3]))
    with pytest.raises(ConversionError, match="CompressedImage.data: not a decodable"):
        decompress_image(make("jpeg", b""))
    with pytest.raises(ConversionError, match="use decompress_depth"):
        decompress_image(make("16UC1; compressedDepth png", good_png))
    header = struct.pack("<iff", 0, 0.0, 0.0)
    with pytest.raises(ConversionError, match="too short"):
        decompress_depth(make("16UC1; compressedDepth png", header))
    with pytest.raises(ConversionError, match="no PNG stream"):
        decompress_depth(make("16UC1; compressedDepth png", good_png))
    with pytest.raises(ConversionError, match="RVL"):
        decompress_depth(make("16UC1; compressedDepth rvl", header + good_png))
    with pytest.raises(ConversionError, match="16UC1 or 32FC1"):
        decompress_depth(make("mono8; compressedDepth png", header + good_png))
    for no_encoding in ("compressedDepth", "compressedDepth png", "16UC1 compressedDepth png"):
        with pytest.raises(ConversionError, match="names no encoding"):
            decompress_depth(make(no_encoding, header + good_png))
    with pytest.raises(ConversionError, match="not a compressedDepth"):
        decompress_depth(make("rgb8; png compressed bgr8", good_png))
    with pytest.raises(ConversionError, match="1-channel 16-bit"):
        decompress_depth(make("16UC1; compressedDepth png", header + good_png))
