"""Matched input messages -> a pipeline ``Frame``, with the checks that make bad input a counted drop, not a crash."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics, same_aspect
from nut_ros.pipeline.types import Frame
from nut_ros.ros.camera_info import distorted
from nut_ros.ros.compressed import DEPTH_HEADER, encoded_size
from nut_ros.ros.conversions import (ConversionError, camera_info_to_intrinsics, decompress_depth, image_to_numpy,
                                     image_to_rgb)
from nut_ros.ros.images import to_depth_m
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.msg_types import as_uint8, check_time


@dataclass
class BuiltFrame:
    """The frame plus notes on input it had to ignore or adapt (for throttled warnings)."""

    frame: Frame
    notes: list[str] = field(default_factory=list)


def image_size(msg) -> tuple[int, int]:
    """``(width, height)`` of an Image from its fields, or of a CompressedImage from its JPEG/PNG header."""
    if not hasattr(msg, "format"):
        return int(msg.width), int(msg.height)
    data = as_uint8(msg.data, "CompressedImage.data")
    if "compressedDepth" in str(msg.format):
        data = data[DEPTH_HEADER.size:]
    return encoded_size(data)


def check_size(msg, max_pixels: int, what: str) -> None:
    """``ConversionError`` when the message holds more than ``max_pixels`` pixels (checked before decoding)."""
    width, height = image_size(msg)
    if max_pixels and width * height > max_pixels:
        raise ConversionError(f"{what}: {width}x{height} is more than max_input_pixels={max_pixels}")


def depth_metres(msg, depth_scale: float) -> np.ndarray:
    """float32 metres (NaN where invalid) from a depth Image/compressedDepth; 16UC1 units are ``depth_scale`` m."""
    if hasattr(msg, "format"):
        pixels, encoding = decompress_depth(msg)
    else:
        pixels, encoding = image_to_numpy(msg), msg.encoding
    if encoding == "16UC1":
        depth = pixels.astype(np.float32) * np.float32(depth_scale)
        depth[depth <= 0] = np.nan
        return depth
    return to_depth_m(pixels, encoding)


def frame_from_messages(matched: Matched, depth_scale: float, frame_id: str = "", max_pixels: int = 0,
                        camera_pose: np.ndarray | None = None) -> BuiltFrame:
    """Decode the image (any colour encoding or compressed), its depth and CameraInfo into a ``Frame``.

    Raises ``ConversionError`` when the image itself is unusable: bad encoding or stamp, or (checked from the
    header, before decoding) more than ``max_pixels`` pixels (0: no cap); the same for its depth image. Depth of
    another size is resized (nearest) onto the image when the aspect ratio agrees, else ignored (it is not aligned to
    the image: the frame goes on as RGB only); a CameraInfo of another size is scaled when the aspect ratio agrees,
    else ignored; a broken CameraInfo is ignored. Each adaptation is reported in ``notes``.
    """
    stamp_ns = check_time(matched.image.header.stamp, "image header.stamp")
    check_size(matched.image, max_pixels, "image")
    rgb = image_to_rgb(matched.image)
    h, w = rgb.shape[:2]
    notes = []
    depth = None
    if matched.depth is not None:
        check_size(matched.depth, max_pixels, "depth")
        depth = depth_metres(matched.depth, depth_scale)
        if depth.shape != (h, w) and not same_aspect(depth.shape[1], depth.shape[0], w, h):
            notes.append(f"depth is {depth.shape[1]}x{depth.shape[0]}, image {w}x{h}: another aspect ratio, not "
                         "aligned to the image: ignored (register the depth to the colour camera)")
            depth = None
        elif depth.shape != (h, w):
            notes.append(f"depth is {depth.shape[1]}x{depth.shape[0]}, image {w}x{h}: resized (nearest)")
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    intrinsics = None
    if matched.info is not None:
        try:
            intrinsics = _intrinsics_for(camera_info_to_intrinsics(matched.info), w, h, notes)
        except ConversionError as err:
            notes.append(f"CameraInfo ignored: {err}")
        if intrinsics is not None and distorted(matched.info):
            notes.append("CameraInfo has lens distortion (d), which nut_ros does not correct: the images are used as "
                         "pinhole images with K, so depth and points bend towards the image's edges. Feed rectified "
                         "images (image_proc's image_rect) with a CameraInfo whose K is their P[:3, :3] and d zero")
    return BuiltFrame(Frame(rgb=rgb, stamp_ns=stamp_ns, frame_id=frame_id or matched.image.header.frame_id,
                            depth_m=depth, intrinsics=intrinsics, camera_pose=camera_pose), notes)


def _intrinsics_for(k: Intrinsics, width: int, height: int, notes: list[str]) -> Intrinsics | None:
    if (k.width, k.height) == (width, height):
        return k
    if same_aspect(k.width, k.height, width, height):
        notes.append(f"CameraInfo is for {k.width}x{k.height}, image is {width}x{height}: intrinsics scaled")
        return k.scaled(width, height)
    notes.append(f"CameraInfo is for {k.width}x{k.height}, image is {width}x{height}: ignored")
    return None
