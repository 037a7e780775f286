"""Matched input messages -> a pipeline ``Frame``, with the checks that make bad input a counted drop, not a crash."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nut_ros.core.geometry import Intrinsics, resize_nearest, same_aspect
from nut_ros.geometry.rectify import Lens, Rectifier
from nut_ros.pipeline.types import Frame
from nut_ros.ros.camera_info import distorted, lens_of, uses_projection
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
    depth_rejected: bool = False  # a depth image was matched but not used (another frame_id or aspect ratio)
    info_invalid: bool = False  # a CameraInfo was matched but is invalid or for another aspect ratio


class KnownIntrinsics:
    """The last valid intrinsics per image size, for frames whose CameraInfo is invalid: at most ``sizes`` image
    sizes, the longest unused forgotten first."""

    def __init__(self, sizes: int = 8):
        self.sizes = sizes
        self._by_size: dict[tuple[int, int], Intrinsics] = {}

    def __len__(self) -> int:
        return len(self._by_size)

    def get(self, width: int, height: int) -> Intrinsics | None:
        k = self._by_size.pop((width, height), None)
        if k is not None:
            self._by_size[(width, height)] = k  # (now the most recently used)
        return k

    def remember(self, width: int, height: int, intrinsics: Intrinsics) -> None:
        self._by_size.pop((width, height), None)
        self._by_size[(width, height)] = intrinsics
        while len(self._by_size) > self.sizes:
            del self._by_size[next(iter(self._by_size))]


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
                        camera_pose: np.ndarray | None = None, known_intrinsics: KnownIntrinsics | None = None,
                        rectifier: Rectifier | None = None) -> BuiltFrame:
    """Decode the image (any colour encoding or compressed), its depth and CameraInfo into a ``Frame``.

    Raises ``ConversionError`` when the image itself is unusable: bad encoding or stamp, or (checked from the header,
    before decoding) more than ``max_pixels`` pixels (0: no cap). A depth image that is unusable the same way becomes a
    depth image without valid pixels (NaN): within a stream with depth the pipeline drops such a frame as a blink, and a
    longer run of them starts a stream without depth. A depth image whose ``header.frame_id`` differs from the image's
    (both set) is another camera's, not aligned to the image: ignored before decoding (the frame goes on as RGB only);
    depth of another size is resized (nearest) onto the image when the aspect ratio agrees, else ignored likewise. A
    CameraInfo of another size is scaled when the aspect ratio agrees; an invalid one, or one of another aspect ratio,
    is ignored, and the frame takes the last valid intrinsics of its image size from ``known_intrinsics`` (updated with
    every valid CameraInfo; none there: no intrinsics). With a ``rectifier``, the image and depth of a frame whose
    valid CameraInfo has lens distortion are rectified onto the camera of its intrinsics (:func:`_lens`; a frame
    that takes the last valid intrinsics, by the last lens rectified).
    Each adaptation is reported in ``notes``, each ignored depth image or CameraInfo flagged.
    """
    stamp_ns = check_time(matched.image.header.stamp, "image header.stamp")
    check_size(matched.image, max_pixels, "image")
    rgb = image_to_rgb(matched.image)
    h, w = rgb.shape[:2]
    notes = []
    depth = None
    depth_rejected = info_invalid = False
    image_frame = matched.image.header.frame_id
    if matched.depth is not None and image_frame and matched.depth.header.frame_id not in ("", image_frame):
        notes.append(f"depth image in frame {matched.depth.header.frame_id!r}, image in {image_frame!r}: another "
                     "camera's depth, not aligned to the image: ignored (subscribe depth to a depth topic aligned "
                     "to the colour camera, e.g. aligned_depth_to_color/image_raw or depth_registered/image_rect)")
        depth_rejected = True
    elif matched.depth is not None:
        try:
            check_size(matched.depth, max_pixels, "depth")
            depth = depth_metres(matched.depth, depth_scale)
        except ConversionError as err:  # like a blinded sensor: the stream's depth rules apply (see stream.py)
            notes.append(f"depth image not decodable: {err}: taken as a depth image without valid pixels")
            depth = np.full((h, w), np.nan, np.float32)
        if depth.shape != (h, w):
            if same_aspect(depth.shape[1], depth.shape[0], w, h):
                notes.append(f"depth is {depth.shape[1]}x{depth.shape[0]}, image {w}x{h}: resized (nearest)")
                depth = resize_nearest(depth, w, h)
            else:
                notes.append(f"depth is {depth.shape[1]}x{depth.shape[0]}, image {w}x{h}: another aspect ratio, "
                             "not aligned to the image: ignored (register the depth to the colour camera)")
                depth, depth_rejected = None, True
    intrinsics = None
    if matched.info is not None:
        try:
            intrinsics = _intrinsics_for(camera_info_to_intrinsics(matched.info), w, h, notes)
        except ConversionError as err:
            notes.append(f"CameraInfo ignored: {err}")
        info_invalid = intrinsics is None
        lens = None
        if info_invalid and known_intrinsics is not None:
            intrinsics = known_intrinsics.get(w, h)
            if intrinsics is not None:
                notes[-1] += f"; the last valid intrinsics of {w}x{h} images are used"
                lens = None if rectifier is None else rectifier.lens  # (and the last lens rectified, if any)
        elif intrinsics is not None:
            if known_intrinsics is not None:
                known_intrinsics.remember(w, h, intrinsics)
            if rectifier is not None and distorted(matched.info):
                lens = _lens(matched.info, notes)
            else:
                notes += _distortion_notes(matched.info)
        if lens is not None and same_aspect(lens.width, lens.height, w, h):
            # images of another size of the calibrated camera: its lens scaled to them, as the intrinsics are
            lens = lens if (lens.width, lens.height) == (w, h) else lens.scaled(w, h)
            rgb, depth = rectifier.rgb(lens, rgb), None if depth is None else rectifier.depth(lens, depth)
    return BuiltFrame(Frame(rgb=rgb, stamp_ns=stamp_ns, frame_id=frame_id or image_frame, depth_m=depth,
                            intrinsics=intrinsics, camera_pose=camera_pose), notes, depth_rejected, info_invalid)


def _lens(info, notes: list[str]) -> Lens | None:
    """The lens to rectify the images of ``info`` (a valid CameraInfo with lens distortion) with, or None, with a
    note, where it cannot: a distortion model nut_ros does not rectify, a ``k`` that is no camera, a region of
    interest (other than the whole image) or binning."""
    try:
        lens = lens_of(info)
    except ConversionError as err:
        notes.append(f"{err}: images not rectified")
        return None
    roi = info.roi
    whole = (int(roi.x_offset), int(roi.y_offset)) == (0, 0) and \
        (int(roi.width), int(roi.height)) in ((0, 0), (lens.width, lens.height))
    if not whole or max(int(info.binning_x), int(info.binning_y)) > 1:
        notes.append("CameraInfo has a region of interest or binning: images not rectified")
        return None
    return lens


def _distortion_notes(info) -> list[str]:
    """What the intrinsics of a CameraInfo with lens distortion (non-zero d) assume when the node does not rectify
    (none without distortion)."""
    if not distorted(info):
        return []
    if uses_projection(info):
        return ["CameraInfo has lens distortion (d): the images are taken as rectified images (image_proc's "
                "image_rect) with the intrinsics of P[:3, :3], not rectified again (rectify: never, or auto on a "
                "topic named rect); set rectify: always for raw images"]
    return ["CameraInfo has lens distortion (d) and no valid P, and the images are not rectified (rectify: never, or "
            "auto on a topic named rect): they are used as pinhole images with K, so depth and points bend towards "
            "the image's edges. Set rectify: always for raw images, or feed image_proc's image_rect"]


def _intrinsics_for(k: Intrinsics, width: int, height: int, notes: list[str]) -> Intrinsics | None:
    if (k.width, k.height) == (width, height):
        return k
    if same_aspect(k.width, k.height, width, height):
        notes.append(f"CameraInfo is for {k.width}x{k.height}, image is {width}x{height}: intrinsics scaled")
        return k.scaled(width, height)
    notes.append(f"CameraInfo is for {k.width}x{k.height}, image is {width}x{height}: ignored")
    return None
