"""numpy <-> ``sensor_msgs/Image`` without cv_bridge.

Supported encodings: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3, the raw colour cameras' bayer_rggb8,
bayer_bggr8, bayer_gbrg8, bayer_grbg8, yuv422 (= uyvy) and yuv422_yuy2 (= yuyv), mono16, 16UC1 (depth in
millimetres), 32FC1 (depth in metres). Row padding (``step`` > width * pixel size) and ``is_bigendian`` are honoured.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from nut_ros.ros.compressed import decompress_depth, decompress_image
from nut_ros.ros.encodings import IMAGE_ENCODINGS, encoding_info
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import as_uint8, make_header, msg_class, uint8_field


def image_to_numpy(msg: Any) -> np.ndarray:
    """Pixels of an Image as ``[H, W]`` (1 channel) or ``[H, W, C]``, native byte order, in the message's channel order.

    The result may be a read-only view of the message buffer; copy it before writing.
    """
    dtype, channels = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ConversionError(f"Image.height/width: empty image ({width}x{height})")
    if step < row_bytes:
        raise ConversionError(f"Image.step: {step} is smaller than width * pixel size = {row_bytes} ({msg.encoding})")
    if dtype.itemsize > 1 and step % dtype.itemsize:
        raise ConversionError(f"Image.step: {step} is not a multiple of the {dtype.itemsize}-byte channel size")
    data = as_uint8(msg.data, "Image.data")
    if data.size < height * step:
        raise ConversionError(f"Image.data: {data.size} bytes, "
                              f"expected height * step = {height} * {step} = {height * step}")
    rows = data[: height * step].reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(wire)  # rows are contiguous along the last axis, so the view is zero-copy
    if wire != dtype.newbyteorder("="):
        pixels = pixels.astype(dtype)
    return pixels.reshape(height, width) if channels == 1 else pixels.reshape(height, width, channels)


def numpy_to_image(array: np.ndarray, encoding: str, stamp_ns: int = 0, frame_id: str = "", flavor: str = "auto"):
    """An Image (little-endian, unpadded) holding ``array`` (``[H, W]`` or ``[H, W, C]`` matching ``encoding``)."""
    dtype, channels = encoding_info(encoding, "encoding")
    array = np.asarray(array)
    shape_ok = array.ndim == 2 and channels == 1 or array.ndim == 3 and array.shape[2] == channels
    if not shape_ok:
        raise ConversionError(f"array: shape {array.shape} does not fit encoding {encoding!r} ({channels} channel(s))")
    if array.dtype != dtype:
        raise ConversionError(f"array: dtype {array.dtype} does not fit encoding {encoding!r} (needs {dtype})")
    height, width = array.shape[:2]
    little = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
    return msg_class("sensor_msgs/msg/Image", flavor)(
        header=make_header(stamp_ns, frame_id, flavor), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels * dtype.itemsize, data=uint8_field(little, flavor))


#: OpenCV's conversion to RGB of the encodings that need one, as cv_bridge converts them (OpenCV names a Bayer
#: pattern by the second and third pixels of its second row: ROS's RGGB is OpenCV's BG)
_OPENCV_TO_RGB = {"bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
                  "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
                  "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
                  "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV}


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (a new array) from 8-bit pixels of a colour, mono, Bayer or YUV 4:2:2 encoding."""
    if pixels.dtype != np.uint8:
        raise ConversionError(f"encoding: {encoding!r} is not an 8-bit colour or mono encoding (images: "
                              f"{', '.join(IMAGE_ENCODINGS)})")
    if encoding in _OPENCV_TO_RGB:
        if pixels.ndim == 3 and pixels.shape[1] % 2:
            raise ConversionError(f"Image.width: {pixels.shape[1]} is odd; {encoding!r} holds pixels in pairs")
        if min(pixels.shape[:2]) < 2:
            raise ConversionError(f"Image.height/width: {encoding!r} needs at least 2x2 pixels")
        return cv2.cvtColor(np.ascontiguousarray(pixels), _OPENCV_TO_RGB[encoding])
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding in ("bgr8", "bgra8", "8UC3"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def to_depth_m(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """float32 metres (a new array) from 16UC1 millimetres or 32FC1 metres; invalid (0, NaN, inf, < 0) -> NaN."""
    if encoding == "16UC1":
        depth = pixels.astype(np.float32) / np.float32(1000.0)
    elif encoding == "32FC1":
        depth = np.array(pixels, dtype=np.float32)
    else:
        raise ConversionError(f"encoding: {encoding!r} is not a depth encoding (expected 16UC1 or 32FC1)")
    depth[~(depth > 0) | ~np.isfinite(depth)] = np.nan
    return depth


def image_to_rgb(msg: Any) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` from an Image (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3 as bgr, Bayer, YUV 4:2:2)
    or CompressedImage."""
    if hasattr(msg, "format"):
        pixels, encoding = decompress_image(msg)
        return to_rgb(pixels, encoding)
    return to_rgb(image_to_numpy(msg), msg.encoding)


def image_to_depth_m(msg: Any) -> np.ndarray:
    """Depth in metres, float32 ``[H, W]``, NaN where invalid, from a 16UC1/32FC1 Image or a compressedDepth image."""
    if hasattr(msg, "format"):
        pixels, encoding = decompress_depth(msg)
        return to_depth_m(pixels, encoding)
    return to_depth_m(image_to_numpy(msg), msg.encoding)


def depth_to_image(depth_m: np.ndarray, stamp_ns: int = 0, frame_id: str = "", encoding: str = "32FC1",
                   flavor: str = "auto"):
    """An Image from depth in metres: 32FC1 metres (NaN kept), or 16UC1 millimetres (invalid -> 0, clipped)."""
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if encoding == "32FC1":
        return numpy_to_image(depth_m, "32FC1", stamp_ns, frame_id, flavor)
    if encoding == "16UC1":
        mm = np.nan_to_num(np.round(depth_m * 1000.0), nan=0.0, posinf=0.0, neginf=0.0)
        return numpy_to_image(np.clip(mm, 0, 65535).astype(np.uint16), "16UC1", stamp_ns, frame_id, flavor)
    raise ConversionError(f"encoding: depth images are 16UC1 or 32FC1, got {encoding!r}")
