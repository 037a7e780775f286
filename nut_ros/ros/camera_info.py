"""``sensor_msgs/CameraInfo`` <-> ``nut_ros.core.geometry.Intrinsics``."""
from __future__ import annotations

from typing import Any

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.rectify import Lens
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import make_header, msg_class


MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0  # fields of view a camera can have: fx, fy outside these are not calibrations
PRINCIPAL_MARGIN = 0.5  # the principal point may lie this fraction of the image size outside the image


def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """Pinhole intrinsics of the images the camera publishes, for the calibrated ``width`` x ``height``, its ``roi``
    and ``binning``: from ``k`` (row-major 3x3), or, for a camera with lens distortion (non-zero ``d``) whose ``p``
    is valid, from ``p[:3, :3]``, the camera of the rectified images (image_proc's ``image_rect`` carries the raw
    camera's CameraInfo: ``k`` and ``d`` describe the distorted images, ``p`` the rectified ones). The images are
    rectified onto it elsewhere, when they are raw (:func:`lens_of`).

    As sensor_msgs/CameraInfo defines them, the ROI is a window of the calibrated image (all zeros: the whole image)
    and binning then merges ``binning_x`` x ``binning_y`` pixels (0 counts as 1): the images are ``roi.width //
    binning_x`` x ``roi.height // binning_y``, the principal point moves by the ROI's offset and the intrinsics
    shrink by the binning, pixel-centre exact (as :meth:`Intrinsics.scaled`).

    Implausible values are rejected like an invalid K (``ConversionError``): a last row other than (0, 0, 1), a focal
    length giving a field of view outside [1, 170] degrees, a principal point more than half the image size outside
    the calibrated image, an ROI outside it, or distortion coefficients that are not finite.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ConversionError(f"CameraInfo.k: expected 9 values, got {k.size}")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise ConversionError(f"CameraInfo.width/height: invalid image size {width}x{height}")
    if not np.isfinite(np.asarray(msg.d, dtype=np.float64)).all():
        raise ConversionError("CameraInfo.d: distortion coefficients that are not finite")
    projection = _projection(msg)
    if projection is not None:
        return _published(projection, msg)
    return _published(_pinhole(k.reshape(3, 3), width, height, "k"), msg)


def uses_projection(msg: Any) -> bool:
    """Whether :func:`camera_info_to_intrinsics` takes the intrinsics from ``p`` (lens distortion, a valid ``p``)."""
    return _projection(msg) is not None


def _projection(msg: Any) -> Intrinsics | None:
    """The intrinsics of ``p[:3, :3]`` when the CameraInfo has lens distortion and ``p`` is a valid pinhole."""
    p = np.asarray(msg.p, dtype=np.float64).reshape(-1)
    if not distorted(msg) or p.size != 12:
        return None
    try:
        return _pinhole(p.reshape(3, 4)[:, :3], int(msg.width), int(msg.height), "p")
    except ConversionError:
        return None


def _pinhole(m: np.ndarray, width: int, height: int, name: str) -> Intrinsics:
    """Intrinsics of the 3x3 camera matrix ``m`` (CameraInfo field ``name``) of a ``width`` x ``height`` image;
    ``ConversionError`` when it is no plausible pinhole."""
    fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    if not (np.isfinite(m).all() and fx > 0 and fy > 0):
        raise ConversionError(f"CameraInfo.{name}: uncalibrated or invalid camera matrix (fx={fx}, fy={fy})")
    if m[2, 0] != 0 or m[2, 1] != 0 or m[2, 2] != 1:
        raise ConversionError(f"CameraInfo.{name}: the last row must be (0, 0, 1), got ({m[2, 0]:g}, {m[2, 1]:g}, "
                              f"{m[2, 2]:g})")
    for axis, f, size in (("fx", fx, width), ("fy", fy, height)):
        fov = 2 * np.degrees(np.arctan(size / (2 * f)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            raise ConversionError(f"CameraInfo.{name}: implausible {axis}={f:g} for a {width}x{height} image (field "
                                  f"of view {fov:.3g} deg, expected {MIN_FOV_DEG:g} to {MAX_FOV_DEG:g})")
    for axis, c, size in (("cx", cx, width), ("cy", cy, height)):
        if not -PRINCIPAL_MARGIN * size <= c <= (1 + PRINCIPAL_MARGIN) * size:
            raise ConversionError(f"CameraInfo.{name}: principal point {axis}={c:g} is far outside the "
                                  f"{width}x{height} image")
    return Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height)


def lens_of(msg: Any) -> Lens | None:
    """The raw camera of a CameraInfo with lens distortion, to rectify its images with
    (:class:`nut_ros.geometry.rectify.Rectifier`), or None without distortion. As image_proc, onto ``p[:3, :3]``
    turned by ``r`` (all zeros: no turn); without a valid ``p`` onto ``k``: the camera
    :func:`camera_info_to_intrinsics` gives either way. ``ConversionError`` for a distortion model it cannot
    rectify (or too few coefficients for it), or a ``k`` that is no plausible pinhole."""
    if not distorted(msg):
        return None
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    _pinhole(k.reshape(3, 3), int(msg.width), int(msg.height), "k")
    r = np.asarray(msg.r, dtype=np.float64).reshape(-1)
    if r.size != 9 or not r.any():
        r = np.eye(3).reshape(-1)
    projection = _projection(msg)
    new = k if projection is None else np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3].reshape(-1)
    try:
        return Lens(str(msg.distortion_model), tuple(k), tuple(np.asarray(msg.d, dtype=np.float64).reshape(-1)),
                    tuple(r), tuple(new), int(msg.width), int(msg.height))
    except ValueError as err:
        raise ConversionError(f"CameraInfo.distortion_model: {err}") from None


def distorted(msg: Any) -> bool:
    """Whether a ``sensor_msgs/CameraInfo`` has non-zero distortion coefficients ``d``."""
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
