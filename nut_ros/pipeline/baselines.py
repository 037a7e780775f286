"""Classical baselines for views between two key frames, scored beside the model's interpolated frames.

* blending: ``(1 - t) · key0 + t · key1``;
* flow warp: the key frames warped towards time ``t`` with dense optical flow both ways (OpenCV DIS, ``medium``
  preset, on the grey frames at the resolution they come in) and blended with the same weights:
  ``(1 - t) · key0(x - t · f01(x)) + t · key1(x - (1 - t) · f10(x))``, a bidirectional backward warp that reads
  each key frame's flow at the target pixel (exact for motion that is constant over a neighbourhood).
"""
from __future__ import annotations

import cv2
import numpy as np


def blend(key0: np.ndarray, key1: np.ndarray, t: float) -> np.ndarray:
    """Linear blend of two ``[H, W, 3]`` images at pair time ``t`` (float)."""
    return (1 - t) * key0.astype(np.float32) + t * key1.astype(np.float32)


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    """Grey uint8 of an RGB image that is uint8 or float in [0, 1]."""
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class FlowWarp:
    """Flow-warp interpolation of one key-frame pair (``[H, W, 3]`` RGB, uint8 or float in [0, 1]); the two flows
    are computed once for all times, or given (``flows``: forward and backward ``[H, W, 2]`` pixels, to score
    another flow's warp the same way)."""

    def __init__(self, key0: np.ndarray, key1: np.ndarray, flows: tuple[np.ndarray, np.ndarray] | None = None):
        self.keys = key0.astype(np.float32), key1.astype(np.float32)
        if flows is None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            grey0, grey1 = (_grey_u8(k) for k in (key0, key1))
            flows = dis.calc(grey0, grey1, None), dis.calc(grey1, grey0, None)
        self.f01, self.f10 = (np.asarray(f, np.float32) for f in flows)
        h, w = key0.shape[:2]
        self._grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def at(self, t: float) -> np.ndarray:
        """The view at pair time ``t`` in [0, 1], ``[H, W, 3]`` float32 in the key frames' value range."""
        gx, gy = self._grid
        warped = []
        for key, flow, step in ((self.keys[0], self.f01, t), (self.keys[1], self.f10, 1 - t)):
            warped.append(cv2.remap(key, gx - step * flow[..., 0], gy - step * flow[..., 1], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE))
        return (1 - t) * warped[0] + t * warped[1]
