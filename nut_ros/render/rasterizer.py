"""Public rasterizer API: ``rasterize(RasterInputs, H, W) -> RenderOutput`` (pure torch or the CUDA extension)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render._torch_impl import rasterize_torch


class RenderOutput(NamedTuple):
    """Rendered images of a batch: colour includes ``T·background``; depth is ``Σ αT d`` (not normalised)."""

    color: Tensor  # [B, 3, H, W]
    depth: Tensor  # [B, 1, H, W]
    alpha: Tensor  # [B, 1, H, W]

    def depth_normalized(self, eps: float = 1e-6) -> Tensor:
        """Expected depth of the visible Gaussians, ``depth / max(alpha, eps)``."""
        return self.depth / self.alpha.clamp(min=eps)


def _load_cuda():
    """The CUDA extension's ``rasterize_cuda`` (built on first use) or None when it cannot be imported or built."""
    try:
        from nut_ros.render import _cuda

        _cuda.extension()
    except (ImportError, OSError, RuntimeError):
        return None
    return _cuda.rasterize_cuda


def rasterize(inputs: RasterInputs, height: int, width: int,
              background: Sequence[float] | Tensor = (0.5, 0.5, 0.5), impl: str = "auto") -> RenderOutput:
    """Render ``inputs`` (``[B, N, ·]`` tensors, reference world frame) with the fixed orthographic camera.

    ``impl``: ``"torch"`` (differentiable, any device), ``"cuda"`` (the compiled extension, CUDA tensors) or
    ``"auto"`` (the extension when the tensors are on a GPU and it loads, otherwise torch).
    """
    if impl not in ("auto", "torch", "cuda"):
        raise ValueError(f"unknown rasterizer impl {impl!r}")
    means = inputs.means
    if means.dim() != 3 or means.shape[-1] != 3:
        raise ValueError(f"means must be [B, N, 3], got {tuple(means.shape)}")
    bg = torch.as_tensor(background, dtype=means.dtype, device=means.device).reshape(3)
    cuda_fn = _load_cuda() if impl == "cuda" or (impl == "auto" and means.is_cuda) else None
    if impl == "cuda" and (cuda_fn is None or not means.is_cuda):
        raise RuntimeError("impl='cuda' needs CUDA tensors and the built nut_ros.render._cuda extension")
    fn = cuda_fn if cuda_fn is not None else rasterize_torch
    return RenderOutput(*fn(*inputs, height, width, bg))
