"""``sensor_msgs/CameraInfo`` <-> ``nut_ros.core.geometry.Intrinsics``."""
from __future__ import annotations

from typing import Any

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import make_header, msg_class


MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0  # fields of view a camera can have: fx, fy outside these are not calibrations
PRINCIPAL_MARGIN = 0.5  # the principal point may lie this fraction of the image size outside the image


def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """Pinhole intrinsics of the images the camera publishes, from ``k`` (row-major 3x3, for the calibrated
    ``width`` x ``height``), its ``roi`` and ``binning``; distortion is ignored.

    As sensor_msgs/CameraInfo defines them, the ROI is a window of the calibrated image (all zeros: the whole image)
    and binning then merges ``binning_x`` x ``binning_y`` pixels (0 counts as 1): the images are ``roi.width //
    binning_x`` x ``roi.height // binning_y``, the principal point moves by the ROI's offset and the intrinsics
    shrink by the binning, pixel-centre exact (as :meth:`Intrinsics.scaled`).

    Implausible values are rejected like an invalid K (``ConversionError``): a last row other than (0, 0, 1), a focal
    length giving a field of view outside [1, 170] degrees, a principal point more than half the image size outside
    the calibrated image, or an ROI outside it.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ConversionError(f"CameraInfo.k: expected 9 values, got {k.size}")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise ConversionError(f"CameraInfo.width/height: invalid image size {width}x{height}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not (np.isfinite(k).all() and fx > 0 and fy > 0):
        raise ConversionError(f"CameraInfo.k: uncalibrated or invalid camera matrix (fx={fx}, fy={fy})")
    if k[6] != 0 or k[7] != 0 or k[8] != 1:
        raise ConversionError(f"CameraInfo.k: the last row must be (0, 0, 1), got ({k[6]:g}, {k[7]:g}, {k[8]:g})")
    for name, f, size in (("fx", fx, width), ("fy", fy, height)):
        fov = 2 * np.degrees(np.arctan(size / (2 * f)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            raise ConversionError(f"CameraInfo.k: implausible {name}={f:g} for a {width}x{height} image (field of "
                                  f"view {fov:.3g} deg, expected {MIN_FOV_DEG:g} to {MAX_FOV_DEG:g})")
    for name, c, size in (("cx", cx, width), ("cy", cy, height)):
        if not -PRINCIPAL_MARGIN * size <= c <= (1 + PRINCIPAL_MARGIN) * size:
            raise ConversionError(f"CameraInfo.k: principal point {name}={c:g} is far outside the {width}x{height} "
                                  f"image")
    return _published(Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height), msg)


def distorted(msg: Any) -> bool:
    """Whether a ``sensor_msgs/CameraInfo`` has non-zero distortion coefficients ``d`` (which nut_ros ignores)."""
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    return bool(d.size) and bool(np.any(np.abs(d) > 1e-12))


def _published(k: Intrinsics, msg: Any) -> Intrinsics:
    """``k`` (the calibrated image) cropped to ``msg.roi`` and binned by ``msg.binning_x/y``."""
    roi = msg.roi
    x0, y0, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if w == 0 or h == 0:  # the default ROI: the whole image
        x0, y0, w, h = 0, 0, k.width, k.height
    if x0 + w > k.width or y0 + h > k.height:
        raise ConversionError(f"CameraInfo.roi: {w}x{h} at ({x0}, {y0}) reaches outside the calibrated "
                              f"{k.width}x{k.height} image")
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    if w // bx == 0 or h // by == 0:
        raise ConversionError(f"CameraInfo.binning: {bx}x{by} leaves no pixel of the {w}x{h} region")
    return Intrinsics(k.fx / bx, k.fy / by, (k.cx - x0 + 0.5) / bx - 0.5, (k.cy - y0 + 0.5) / by - 0.5,
                      w // bx, h // by)


def intrinsics_to_camera_info(intrinsics: Intrinsics, stamp_ns: int = 0, frame_id: str = "", flavor: str = "auto"):
    """A CameraInfo for an undistorted pinhole camera (plumb_bob, zero distortion, identity rectification)."""
    i = intrinsics
    k = np.array([i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0])
    p = np.array([i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    roi = msg_class("sensor_msgs/msg/RegionOfInterest", flavor)(x_offset=0, y_offset=0, height=0, width=0,
                                                                 do_rectify=False)
    return msg_class("sensor_msgs/msg/CameraInfo", flavor)(
        header=make_header(stamp_ns, frame_id, flavor), height=int(i.height), width=int(i.width),
        distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0, roi=roi)
