"""Rectifying a raw camera's images: the lens distortion removed and the view turned onto the rectified camera, as
image_proc's rectify does it (OpenCV's maps), for cameras whose driver publishes only distorted images.

A pixel of the rectified image looks along the ray of its pinhole camera ``p`` (3x3), turned back by the
rectification ``r`` into the raw camera, distorted by ``d`` (``model``) and projected by ``k``: colour is read
there bilinearly, depth at the nearest pixel (a depth edge's two sides are never mixed into a depth between them).
Pixels that look outside the raw image are black / NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nut_ros.core.geometry import centre_scaled

#: distortion models (sensor_msgs/CameraInfo ``distortion_model``) and the fewest coefficients each needs
MODELS = {"plumb_bob": 4, "rational_polynomial": 8, "equidistant": 4}
#: coefficient counts OpenCV's pinhole model takes (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]]); a CameraInfo's
#: ``d`` is passed whole, zero-padded to the next of them (image_geometry passes it whole too)
OPENCV_COUNTS = (4, 5, 8, 12, 14)


@dataclass(frozen=True)
class Lens:
    """A calibrated raw camera of ``width`` x ``height`` images: ``k`` and ``d`` (``model``) of the raw images, ``r``
    the turn onto the rectified camera, ``p`` the rectified camera's 3x3 matrix (row-major tuples)."""

    model: str
    k: tuple[float, ...]
    d: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]
    width: int
    height: int

    def scaled(self, width: int, height: int) -> "Lens":
        """The same lens for its images resized to ``width`` x ``height``: both camera matrices scaled pixel-centre
        exact (as :meth:`nut_ros.core.geometry.Intrinsics.scaled`); the distortion, on normalised coordinates, and
        the turn stay."""
        sx, sy = width / self.width, height / self.height

        def scale(m: tuple[float, ...]) -> tuple[float, ...]:
            fx, s, cx, _, fy, cy, *last = m
            return (fx * sx, s * sx, centre_scaled(cx, sx), 0.0, fy * sy, centre_scaled(cy, sy), *last)

        return Lens(self.model, scale(self.k), self.d, self.r, scale(self.p), width, height)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"distortion model {self.model!r} is not one of {', '.join(MODELS)}")
        if len(self.d) < MODELS[self.model]:
            raise ValueError(f"{self.model} needs {MODELS[self.model]} distortion coefficients, got {len(self.d)}")
        if self.model != "equidistant" and len(self.d) > OPENCV_COUNTS[-1]:
            raise ValueError(f"{self.model} takes at most {OPENCV_COUNTS[-1]} distortion coefficients, got "
                             f"{len(self.d)}")

    def coefficients(self) -> np.ndarray:
        """``d`` as OpenCV takes it: the fisheye model's four; the pinhole models' all, zero-padded to a count OpenCV
        takes (:data:`OPENCV_COUNTS`)."""
        if self.model == "equidistant":
            return np.array(self.d[:4], np.float64)
        count = next(n for n in OPENCV_COUNTS if n >= len(self.d))
        return np.pad(np.array(self.d, np.float64), (0, count - len(self.d)))


def lens_maps(lens: Lens) -> tuple[np.ndarray, np.ndarray]:
    """Per rectified pixel of ``lens``, the raw image's column and row it looks at (float32 ``[height, width]``
    each)."""
    k, r, p = (np.array(m, np.float64).reshape(3, 3) for m in (lens.k, lens.r, lens.p))
    make = cv2.fisheye.initUndistortRectifyMap if lens.model == "equidistant" else cv2.initUndistortRectifyMap
    return make(k, lens.coefficients(), r, p, (lens.width, lens.height), cv2.CV_32FC1)


class Rectifier:
    """Remaps raw images onto their rectified camera; keeps the maps of the last :class:`Lens` it was given, in
    OpenCV's fixed-point form (1/32 pixel; half the time of float maps per frame): for colour the whole pixel and
    the fraction, for depth the nearest pixel."""

    def __init__(self):
        self._lens: Lens | None = None
        self._fixed: tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def lens(self) -> Lens | None:
        """The lens of the last images rectified (None before any)."""
        return self._lens

    def fixed_maps(self, lens: Lens) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The maps :meth:`rgb` and :meth:`depth` use: ``((whole pixel, fraction), nearest pixel)``, made once per
        lens (those of the last lens are kept)."""
        if lens != self._lens:
            map_x, map_y = lens_maps(lens)
            colour = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
            nearest, _ = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2, nninterpolation=True)
            self._fixed, self._lens = (colour, nearest), lens
        return self._fixed

    def rgb(self, lens: Lens, image: np.ndarray) -> np.ndarray:
        """The rectified colour image (bilinear; black where the rectified view sees past the raw image)."""
        (whole, fraction), _ = self.fixed_maps(lens)
        return cv2.remap(image, whole, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, lens: Lens, depth: np.ndarray) -> np.ndarray:
        """The rectified depth image (float32 metres, nearest pixel; NaN where it sees past the raw image)."""
        _, nearest = self.fixed_maps(lens)
        return cv2.remap(np.asarray(depth, np.float32), nearest, None, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
