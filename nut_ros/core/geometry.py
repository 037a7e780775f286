"""Geometry: canonical orthographic space <-> pixels <-> metric camera optical frame (REP-103, z forward).

Canonical (STAG) space is ``(x, ŷ, z)``: ``x`` right and ``z`` up in [-1, 1] over the model image, ``ŷ`` the
normalised inverse depth in [0, 1] (1 = near). The model sees the image resized to ``w`` x ``h`` (the model
resolution) and an inverse depth normalised per frame, ``ŷ = (1/depth - disp_min) / (disp_max - disp_min)``.
Formulas are documented in docs/CONVENTIONS.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nut_ros.core.gaussians import INV_DEPTH_EPS, INV_DEPTH_OFFSET, INV_DEPTH_SCALE


def centre_scaled(c: float, scale: float) -> float:
    """A principal point coordinate (pixels, 0 at the first pixel's centre) after resizing the image by ``scale``:
    pixel-centre exact (pixel edges scale, centres sit half a pixel in)."""
    return (c + 0.5) * scale - 0.5


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (pixel centres at integer coordinates)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing the image to ``width`` x ``height`` (pixel-centre exact)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, centre_scaled(self.cx, sx), centre_scaled(self.cy, sy),
                          width, height)

    @staticmethod
    def from_fov(width: int, height: int, hfov_deg: float = 60.0) -> "Intrinsics":
        """A centred pinhole with square pixels and horizontal field of view ``hfov_deg`` (no CameraInfo)."""
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height)


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image [H, W, ...]`` at ``width`` x ``height``: each pixel takes the source pixel that holds its centre (pixel
    centres mapped as :meth:`Intrinsics.scaled` maps them, torch's ``nearest-exact``); values are never blended, so
    depth images and masks keep theirs (OpenCV's ``INTER_NEAREST`` is half a source pixel off when shrinking)."""
    h0, w0 = image.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * (h0 / height)).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w0 / width)).astype(np.int64), w0 - 1)
    return image[rows[:, None], cols[None, :]]


def same_aspect(w0: int, h0: int, w1: int, h1: int) -> bool:
    """Whether images of ``w0`` x ``h0`` and ``w1`` x ``h1`` pixels have the same aspect ratio, within 1 % (a
    resize maps one onto the other without distortion: a CameraInfo to scale, a depth image to align)."""
    return abs(w0 * h1 - h0 * w1) <= 0.01 * w0 * h1


@dataclass(frozen=True)
class DepthNormalization:
    """Affine map between canonical ``ŷ`` and inverse depth: ``disparity = disp_min + ŷ·(disp_max - disp_min)``,
    the one owner of that formula (the fields may also be tensors broadcasting over a batch). A frame's own
    normalisation comes from :func:`nut_ros.pipeline.depth.normalize_inverse_depth`.

    ``metric``: disparities are in 1/m (from a metric depth image), so depths come out in metres. The relative
    mode uses the renderer's own map (``disp_min = 0.2``, ``disp_max = 10``): depth is the canonical depth in
    [0.1, 5] (unitless).
    """

    disp_min: float
    disp_max: float
    metric: bool

    @staticmethod
    def relative() -> "DepthNormalization":
        return DepthNormalization(INV_DEPTH_OFFSET, INV_DEPTH_OFFSET + INV_DEPTH_SCALE, metric=False)

    @property
    def span(self) -> float:
        return self.disp_max - self.disp_min

    def disparity_to_yhat(self, disparity: Tensor) -> Tensor:
        """``ŷ = (disparity - disp_min) / (disp_max - disp_min)`` (in [0, 1] on the frame it came from)."""
        return (disparity - self.disp_min) / self.span

    def yhat_to_disparity(self, y_hat: Tensor) -> Tensor:
        """``disp_min + ŷ·(disp_max - disp_min)``."""
        return self.disp_min + y_hat * self.span

    def depth_to_yhat(self, depth: Tensor) -> Tensor:
        """Model input ``ŷ`` of a depth: :meth:`disparity_to_yhat` of ``1/depth``."""
        return self.disparity_to_yhat(1.0 / depth)

    def yhat_to_depth(self, y_hat: Tensor) -> Tensor:
        """Depth of a canonical ``ŷ``: ``1 / (disp_min + ŷ·(disp_max - disp_min))``."""
        return 1.0 / self.yhat_to_disparity(y_hat)

    def yhat_to_depth_derivative(self, y_hat: Tensor) -> Tensor:
        """``d depth / d ŷ = -(disp_max - disp_min)·depth²``."""
        return -self.span * self.yhat_to_depth(y_hat) ** 2


def rendered_depth_to_yhat(depth: Tensor) -> Tensor:
    """Invert the renderer's map ``d = 1/(0.2 + 9.8·ŷ + 1e-6)``: canonical ``ŷ`` of a rendered (normalised) depth."""
    return (1.0 / depth - INV_DEPTH_OFFSET - INV_DEPTH_EPS) / INV_DEPTH_SCALE


def rendered_depth_to_depth(depth: Tensor, norm: DepthNormalization) -> Tensor:
    """Rendered depth (``RenderOutput.depth_normalized``) -> metres (metric) or relative depth: d -> ŷ -> depth."""
    return norm.yhat_to_depth(rendered_depth_to_yhat(depth))


def canonical_to_pixels(x: Tensor, z: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Pixel centre ``(u, v)`` at the model resolution: ``u = (w/2)·x + (w-1)/2``, ``v = -(h/2)·z + (h-1)/2``."""
    return (width / 2) * x + (width - 1) / 2, -(height / 2) * z + (height - 1) / 2


def pixels_to_canonical(u: Tensor, v: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`canonical_to_pixels`."""
    return (2 * u - (width - 1)) / width, ((height - 1) - 2 * v) / height


def backproject(u: Tensor, v: Tensor, depth: Tensor, k: Intrinsics) -> Tensor:
    """Optical-frame points ``[..., 3]`` of pixels ``(u, v)`` of an image with intrinsics ``k`` at ``depth`` (z)."""
    return torch.stack([(u - k.cx) * depth / k.fx, (v - k.cy) * depth / k.fy, depth], dim=-1)


def project(points: Tensor, k: Intrinsics) -> tuple[Tensor, Tensor]:
    """Pixel coordinates ``(u, v)`` of optical-frame points ``[..., 3]`` (a tensor or a numpy array)."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return k.fx * x / z + k.cx, k.fy * y / z + k.cy


def canonical_to_optical(xyz: Tensor, norm: DepthNormalization, k: Intrinsics) -> Tensor:
    """Canonical positions ``(x, ŷ, z) [..., 3]`` -> optical-frame points; ``k`` is at the model resolution."""
    u, v = canonical_to_pixels(xyz[..., 0], xyz[..., 2], k.width, k.height)
    return backproject(u, v, norm.yhat_to_depth(xyz[..., 1]), k)


def optical_to_canonical(points: Tensor, norm: DepthNormalization, k: Intrinsics) -> Tensor:
    """Inverse of :func:`canonical_to_optical`."""
    u, v = project(points, k)
    x, z = pixels_to_canonical(u, v, k.width, k.height)
    return torch.stack([x, norm.depth_to_yhat(points[..., 2]), z], dim=-1)


def canonical_velocity_to_optical(xyz: Tensor, velocity: Tensor, norm: DepthNormalization, k: Intrinsics,
                                  interval_s: float | None = None) -> Tensor:
    """Velocity ``d(x, ŷ, z)/dτ`` at canonical position ``xyz`` -> optical-frame velocity (chain rule).

    ``τ`` is the pair-normalised time; with ``interval_s`` (seconds between the pair's frames) the result is per
    second, otherwise per pair interval.
    """
    u, v = canonical_to_pixels(xyz[..., 0], xyz[..., 2], k.width, k.height)
    depth = norm.yhat_to_depth(xyz[..., 1])
    d_depth = norm.yhat_to_depth_derivative(xyz[..., 1]) * velocity[..., 1]
    du, dv = (k.width / 2) * velocity[..., 0], -(k.height / 2) * velocity[..., 2]
    vel = torch.stack([(du * depth + (u - k.cx) * d_depth) / k.fx, (dv * depth + (v - k.cy) * d_depth) / k.fy,
                       d_depth], dim=-1)
    return vel / interval_s if interval_s is not None else vel


def canonical_scale_to_optical(scale: Tensor, depth: Tensor, k: Intrinsics) -> Tensor:
    """Canonical ``(s_x, s_z) [..., 2]`` at ``depth`` -> optical-frame standard deviations ``[..., 3]``.

    The pixel footprint ``(w/2·s_x, h/2·s_z)`` is back-projected (``·depth/f``); along the optical axis the mean
    of the two is used, as the renderer does for its depth axis.
    """
    sx = (k.width / 2) * scale[..., 0] * depth / k.fx
    sy = (k.height / 2) * scale[..., 1] * depth / k.fy
    return torch.stack([sx, sy, (sx + sy) / 2], dim=-1)


def world_quaternion_to_optical(q: Tensor) -> Tensor:
    """Rotation ``(w, x, y, z)`` in the renderer's world frame -> optical frame (p_cam = (x, -z, y)).

    The frame change is a +90° rotation about x, ``c = (cos 45°, sin 45°, 0, 0)``; the result is ``c ⊗ q ⊗ c⁻¹``.
    """
    w, x, y, z = q.unbind(-1)
    h = math.sqrt(0.5)
    # c ⊗ q
    w1, x1, y1, z1 = h * (w - x), h * (x + w), h * (y - z), h * (z + y)
    # (c ⊗ q) ⊗ c⁻¹ with c⁻¹ = (h, -h, 0, 0)
    return torch.stack([h * (w1 + x1), h * (x1 - w1), h * (y1 - z1), h * (z1 + y1)], dim=-1)
