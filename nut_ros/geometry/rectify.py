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

#: distortion models (sensor_msgs/CameraInfo ``distortion_model``) and how many coefficients each reads
MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


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

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"distortion model {self.model!r} is not one of {', '.join(MODELS)}")
        if len(self.d) < MODELS[self.model]:
            raise ValueError(f"{self.model} needs {MODELS[self.model]} distortion coefficients, got {len(self.d)}")


class Rectifier:
    """Remaps raw images onto their rectified camera; keeps the maps of the last :class:`Lens` it was given."""

    def __init__(self):
        self._lens: Lens | None = None
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def maps(self, lens: Lens) -> tuple[np.ndarray, np.ndarray]:
        """Per rectified pixel, the raw image's column and row it looks at (float32 ``[height, width]`` each)."""
        if lens != self._lens:
            k, r, p = (np.array(m, np.float64).reshape(3, 3) for m in (lens.k, lens.r, lens.p))
            d = np.array(lens.d[:MODELS[lens.model]], np.float64)
            size = (lens.width, lens.height)
            make = cv2.fisheye.initUndistortRectifyMap if lens.model == "equidistant" else cv2.initUndistortRectifyMap
            self._maps = make(k, d, r, p, size, cv2.CV_32FC1)
            self._lens = lens
        return self._maps

    def rgb(self, lens: Lens, image: np.ndarray) -> np.ndarray:
        """The rectified colour image (bilinear; black where the rectified view sees past the raw image)."""
        map_x, map_y = self.maps(lens)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, lens: Lens, depth: np.ndarray) -> np.ndarray:
        """The rectified depth image (float32 metres, nearest pixel; NaN where it sees past the raw image)."""
        map_x, map_y = self.maps(lens)
        return cv2.remap(np.asarray(depth, np.float32), map_x, map_y, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
