"""Image encodings the conversions understand: numpy dtype and channel count per ``sensor_msgs`` encoding."""
from __future__ import annotations

import numpy as np

from nut_ros.ros.errors import ConversionError

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    # raw colour cameras: one 8-bit Bayer sample per pixel; YUV 4:2:2 as two bytes per pixel (U or V, then Y for
    # UYVY; Y, then U or V for YUYV)
    "bayer_rggb8": (np.dtype(np.uint8), 1),
    "bayer_bggr8": (np.dtype(np.uint8), 1),
    "bayer_gbrg8": (np.dtype(np.uint8), 1),
    "bayer_grbg8": (np.dtype(np.uint8), 1),
    "yuv422": (np.dtype(np.uint8), 2),  # UYVY
    "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2),  # YUYV
    "yuyv": (np.dtype(np.uint8), 2),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


#: the encodings of colour (and mono) images: 8 bits a channel; the others are depth encodings
IMAGE_ENCODINGS = tuple(name for name, (dtype, _) in ENCODINGS.items() if dtype == np.uint8)
DEPTH_ENCODINGS = tuple(name for name in ENCODINGS if name not in IMAGE_ENCODINGS)


def encoding_info(encoding: str, field: str = "Image.encoding") -> tuple[np.dtype, int]:
    """(dtype, channels) of an encoding; raises ``ConversionError`` for an unsupported one."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ConversionError(f"{field}: unsupported encoding {encoding!r} (images: {', '.join(IMAGE_ENCODINGS)}; "
                              f"depth images: {', '.join(DEPTH_ENCODINGS)})") from None
