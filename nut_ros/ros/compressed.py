"""numpy <-> ``sensor_msgs/CompressedImage`` as image_transport's plugins write it.

* ``compressed`` (colour/mono): ``format = "<orig encoding>; <jpeg|png> compressed <stored encoding>"``, where the
  stored image is bgr8/bgra8/mono8 (mono16 for 16-bit PNG). Bare ``"jpeg"``/``"png"`` formats are read as well.
* ``compressedDepth``: ``format = "<16UC1|32FC1>; compressedDepth png"``; ``data`` = a 12-byte little-endian config
  header (int32 format enum, float32 depthQuantA, float32 depthQuantB) followed by a PNG. 16UC1 depth is stored as
  is (millimetres); 32FC1 depth (metres) is stored as 16-bit quantised inverse depth ``q = A / d + B`` with
  ``A = z0 (z0 + 1)``, ``B = 1 - A / depth_max`` (``q = 0``: invalid or beyond ``depth_max``), decoded as
  ``d = A / (q - B)``.
"""
from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from nut_ros.ros.errors import ConversionError
from nut_ros.ros.encodings import encoding_info
from nut_ros.ros.msg_types import as_uint8, make_header, msg_class, uint8_field

DEPTH_HEADER = struct.Struct("<iff")  # compression format enum, depthQuantA, depthQuantB
INV_DEPTH = 0  # compressed_depth_image_transport's compressionFormat::INV_DEPTH
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: segments (fill bytes included) :func:`encoded_size` walks before giving up: camera JPEGs carry a few dozen
#: before the frame header, crafted data millions (seconds of walking on the node's worker thread)
MAX_JPEG_SEGMENTS = 4096


def encoded_size(buffer: np.ndarray | bytes, field: str = "CompressedImage.data") -> tuple[int, int]:
    """``(width, height)`` of a PNG or JPEG stream read from its header, without decoding the pixels. A JPEG's
    segments are walked from one length field to the next up to its frame header, however much metadata (EXIF, ICC,
    comments) comes first, for at most :data:`MAX_JPEG_SEGMENTS` segments and not into the entropy-coded data."""
    if isinstance(buffer, (bytes, bytearray)):
        data = memoryview(buffer)
    else:  # a numpy or array.array field or a view (a copy only when it is not contiguous)
        data = memoryview(np.ascontiguousarray(buffer, np.uint8).reshape(-1))
    if bytes(data[:8]) == PNG_MAGIC and len(data) >= 24 and bytes(data[12:16]) == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if bytes(data[:2]) == b"\xff\xd8":
        i, segments = 2, 0
        while i + 9 <= len(data) and segments < MAX_JPEG_SEGMENTS:
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            segments += 1
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
                break
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
    raise ConversionError(f"{field}: no PNG or JPEG header with an image size (truncated or corrupt?)")


def _decode(buffer: np.ndarray, field: str) -> np.ndarray:
    pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if pixels is None:
        raise ConversionError(f"{field}: not a decodable JPEG/PNG stream ({buffer.size} bytes; truncated or corrupt?)")
    return pixels


def _compressed_msg(data: np.ndarray, fmt: str, stamp_ns: int, frame_id: str, flavor: str):
    return msg_class("sensor_msgs/msg/CompressedImage", flavor)(
        header=make_header(stamp_ns, frame_id, flavor), format=fmt, data=uint8_field(data, flavor))


def decompress_image(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``compressed`` CompressedImage to ``(pixels, encoding)``.

    The encoding is the original one named in ``format`` when the decoded channels fit it (rgb8/rgba8 are
    converted back from the stored BGR order), else the stored one: bgr8, bgra8, mono8 or mono16.
    """
    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ConversionError(f"CompressedImage.format: {fmt!r} is a compressedDepth image; use decompress_depth")
    pixels = _decode(as_uint8(msg.data, "CompressedImage.data"), "CompressedImage.data")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in (1, 3, 4) or (pixels.dtype == np.uint16 and channels != 1):
        raise ConversionError(f"CompressedImage.data: unsupported decoded image ({channels} channels, {pixels.dtype})")
    if pixels.dtype == np.uint16:
        return pixels, "mono16"
    original = fmt.split(";")[0].strip()
    if original in ("rgb8", "rgba8") and channels == encoding_info(original)[1]:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA), original
    return pixels, {1: "mono8", 3: "bgr8", 4: "bgra8"}[channels]


def compress_image(array: np.ndarray, encoding: str, fmt: str = "jpeg", quality: int = 90, stamp_ns: int = 0,
                   frame_id: str = "", flavor: str = "auto"):
    """A ``compressed`` CompressedImage of ``array`` in ``encoding`` (8-bit colour/mono; mono16/16UC1 with PNG)."""
    if fmt not in ("jpeg", "png"):
        raise ConversionError(f"fmt: must be 'jpeg' or 'png', got {fmt!r}")
    dtype, channels = encoding_info(encoding, "encoding")
    array = np.asarray(array)
    if array.dtype != dtype or (array.ndim == 2) != (channels == 1) or (channels > 1 and array.shape[2] != channels):
        raise ConversionError(f"array: shape {array.shape} / dtype {array.dtype} does not fit encoding {encoding!r}")
    if dtype == np.uint16 and fmt != "png":
        raise ConversionError(f"encoding: 16-bit images can only be PNG-compressed, not {fmt!r}")
    if dtype == np.float32:
        raise ConversionError("encoding: 32FC1 images need compress_depth (compressedDepth), not compress_image")
    if encoding in ("rgb8", "rgba8"):
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    if channels == 4 and fmt == "jpeg":
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    stored = {1: "mono16" if dtype == np.uint16 else "mono8", 3: "bgr8",
              4: "bgra8"}[array.shape[2] if array.ndim == 3 else 1]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buffer = cv2.imencode("." + ("jpg" if fmt == "jpeg" else "png"), array, params)
    if not ok:
        raise ConversionError(f"array: OpenCV could not {fmt}-encode the image")
    return _compressed_msg(buffer.reshape(-1), f"{encoding}; {fmt} compressed {stored}", stamp_ns, frame_id, flavor)


def decompress_depth(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``compressedDepth`` CompressedImage to ``(depth, encoding)``: uint16 mm (16UC1) or float32 m (32FC1).

    32FC1 pixels with ``q = 0`` decode to NaN.
    """
    fmt = str(msg.format)
    if "compressedDepth" not in fmt:
        raise ConversionError(f"CompressedImage.format: {fmt!r} is not a compressedDepth format")
    if ";" not in fmt:  # compressed_depth_image_transport writes "<encoding>; compressedDepth <codec>"
        raise ConversionError(f"CompressedImage.format: {fmt!r} names no encoding "
                              f"(expected '16UC1; compressedDepth png' or '32FC1; compressedDepth png')")
    encoding, codec = (part.strip() for part in fmt.split(";", 1))
    if "rvl" in codec:
        raise ConversionError(f"CompressedImage.format: RVL-coded compressedDepth is not supported ({fmt!r})")
    if encoding not in ("16UC1", "32FC1"):
        raise ConversionError(f"CompressedImage.format: compressedDepth encoding must be 16UC1 or 32FC1, "
                              f"got {encoding!r}")
    data = as_uint8(msg.data, "CompressedImage.data")
    if data.size < DEPTH_HEADER.size + len(PNG_MAGIC):
        raise ConversionError(f"CompressedImage.data: {data.size} bytes, "
                              "too short for the compressedDepth header + PNG")
    _, quant_a, quant_b = DEPTH_HEADER.unpack(data[: DEPTH_HEADER.size].tobytes())
    if data[DEPTH_HEADER.size: DEPTH_HEADER.size + len(PNG_MAGIC)].tobytes() != PNG_MAGIC:
        raise ConversionError("CompressedImage.data: no PNG stream after the 12-byte compressedDepth header")
    pixels = _decode(data[DEPTH_HEADER.size:], "CompressedImage.data")
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ConversionError(f"CompressedImage.data: expected a 1-channel 16-bit PNG, "
                              f"got {pixels.dtype} {pixels.shape}")
    if encoding == "16UC1":
        return pixels, encoding
    q = pixels.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (q - np.float32(quant_b))
    depth[pixels == 0] = np.nan
    return depth, encoding


def compress_depth(depth: np.ndarray, encoding: str = "32FC1", depth_max: float = 10.0,
                   depth_quantization: float = 100.0, stamp_ns: int = 0, frame_id: str = "", flavor: str = "auto"):
    """A ``compressedDepth`` CompressedImage (PNG) of uint16 mm (16UC1) or float32 m (32FC1) depth.

    ``depth_max`` and ``depth_quantization`` (z0) are the plugin's parameters of the same name (defaults 10, 100).
    """
    depth = np.asarray(depth)
    if encoding == "16UC1":
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise ConversionError(f"depth: 16UC1 needs a 2-D uint16 array, got {depth.dtype} {depth.shape}")
        stored, quant_a, quant_b = depth, 0.0, 0.0
    elif encoding == "32FC1":
        if depth.dtype != np.float32 or depth.ndim != 2:
            raise ConversionError(f"depth: 32FC1 needs a 2-D float32 array, got {depth.dtype} {depth.shape}")
        quant_a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1.0))
        quant_b = np.float32(1.0) - quant_a / np.float32(depth_max)
        valid = depth < np.float32(depth_max)  # False for NaN, as in the plugin
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(valid, quant_a / depth + quant_b, 0.0)
        stored = np.clip(np.nan_to_num(q, nan=0.0, posinf=65535.0, neginf=0.0), 0, 65535).astype(np.uint16)
    else:
        raise ConversionError(f"encoding: compressedDepth supports 16UC1 and 32FC1, got {encoding!r}")
    ok, png = cv2.imencode(".png", stored, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ConversionError("depth: OpenCV could not PNG-encode the depth image")
    data = np.concatenate([np.frombuffer(DEPTH_HEADER.pack(INV_DEPTH, quant_a, quant_b), np.uint8), png.reshape(-1)])
    return _compressed_msg(data, f"{encoding}; compressedDepth png", stamp_ns, frame_id, flavor)
