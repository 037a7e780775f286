"""Public rasterizer API: ``rasterize(RasterInputs, H, W) -> RenderOutput`` (pure torch, the compiled CPU kernel or
the CUDA extension)."""
from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render._torch_impl import rasterize_torch
from nut_ros.render.pair_budget import PairBudget


class RenderOutput(NamedTuple):
    """Rendered images of a batch: colour includes ``T·background``; depth is ``Σ αT d`` (not normalised)."""

    color: Tensor  # [B, 3, H, W]
    depth: Tensor  # [B, 1, H, W]
    alpha: Tensor  # [B, 1, H, W]

    def depth_normalized(self, eps: float = 1e-6) -> Tensor:
        """Expected depth of the visible Gaussians, ``depth / max(alpha, eps)``."""
        return self.depth / self.alpha.clamp(min=eps)

    def color_normalized(self, background: Sequence[float] | Tensor, min_alpha: float = 0.02) -> Tensor:
        """Expected colour of the visible Gaussians, ``(color - (1 - alpha)·background) / alpha``, where ``alpha >=
        min_alpha`` (elsewhere the composited colour, i.e. about the background). Where the splats of a pair
        only partly cover a pixel between its key frames (one frame's splats faded, the other's moved away), this
        is the colour of what is there instead of a mix with the background; where alpha is 1 it is ``color``."""
        bg = background_vector(background, self.color).reshape(1, 3, 1, 1)
        covered = self.alpha >= min_alpha
        alpha = torch.where(covered, self.alpha, torch.ones_like(self.alpha))
        return torch.where(covered, (self.color - (1 - alpha) * bg) / alpha, self.color)


def _import_cuda():
    """Import the CUDA extension module and build it (raises ImportError/OSError/RuntimeError when unavailable)."""
    from nut_ros.render import _cuda

    _cuda.extension()
    return _cuda.rasterize_cuda


def _import_cpu():
    """Build or load the compiled CPU kernel (raises OSError/RuntimeError when unavailable)."""
    from nut_ros.render import _cpu

    _cpu.library()
    return _cpu.rasterize_cpu


_KERNELS = {"CUDA": _import_cuda, "CPU": _import_cpu}


@functools.lru_cache(maxsize=None)
def _kernel(kind: str) -> tuple[Callable | None, str]:
    """``(rasterize function, "")`` of the compiled rasterizer ``kind`` ("CUDA": the extension, "CPU": the CPU
    kernel), or ``(None, why)`` when it cannot be imported, built or loaded; decided once per process."""
    try:
        return _KERNELS[kind](), ""
    except (ImportError, OSError, RuntimeError) as err:
        return None, f"{type(err).__name__}: {err}"


def background_vector(background: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    """``background`` as a 3-vector of ``like``'s dtype and device. Numbers are turned into a device tensor once
    per value, device and dtype and reused: each upload from pageable host memory would wait for the GPU queue."""
    if isinstance(background, Tensor):
        return background.to(dtype=like.dtype, device=like.device).reshape(3)
    return _constant_vector(tuple(float(v) for v in background), like.dtype, like.device)


@functools.lru_cache(maxsize=16)
def _constant_vector(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even when first asked for under inference mode
        return torch.tensor(values, dtype=dtype, device=device).reshape(3)


@functools.lru_cache(maxsize=None)
def _warn_fallback(kernel: str, why: str) -> None:
    """Warn (once per process and cause) that ``impl="auto"`` renders with the torch implementation instead."""
    warnings.warn(f"{kernel} rasterizer unavailable, rendering with the torch implementation ({why})", RuntimeWarning,
                  stacklevel=3)


def rasterize(inputs: RasterInputs, height: int, width: int,
              background: Sequence[float] | Tensor = (0.5, 0.5, 0.5), impl: str = "auto", *,
              lowpass: float, pair_budget: PairBudget | None = None) -> RenderOutput:
    """Render ``inputs`` (``[B, N, ·]`` tensors, reference world frame) with the fixed orthographic camera.

    ``impl``: ``"torch"`` (differentiable, any device), ``"cuda"`` (the compiled extension, CUDA tensors),
    ``"cpu"`` (the compiled CPU kernel, :mod:`nut_ros.render._cpu`: CPU tensors, no gradients; several times faster
    than torch there; float32 arithmetic like the CUDA kernels) or ``"auto"``: the extension for GPU tensors and the
    CPU kernel for float32 CPU tensors that need no gradient, when they build; otherwise torch, with one
    ``RuntimeWarning`` per cause when a kernel is missing. ``lowpass``: px² added to each screen covariance's
    diagonal, always given: the model's ``ModelConfig.raster_lowpass`` (0.1 for ``tiny``/``small``) for a model's
    Gaussians, :data:`~nut_ros.render.projection.LOWPASS` (the reference's 0.3) for the reference's scenes.
    ``pair_budget``: the CUDA extension's sort buffer for renders without gradients
    (:mod:`nut_ros.render.pair_budget`: no wait for the GPU; the caller checks
    :meth:`~nut_ros.render.pair_budget.PairBudget.overflowed` once the outputs are on the host); other renders ignore
    it.
    """
    if impl not in ("auto", "torch", "cuda", "cpu"):
        raise ValueError(f"unknown rasterizer impl {impl!r}")
    means = inputs.means
    if means.dim() != 3 or means.shape[-1] != 3:
        raise ValueError(f"means must be [B, N, 3], got {tuple(means.shape)}")
    if impl == "cuda" or (impl == "auto" and means.is_cuda):
        cuda_fn, why = _kernel("CUDA")
        if impl == "cuda" and (cuda_fn is None or not means.is_cuda):
            raise RuntimeError("impl='cuda' needs CUDA tensors and the built nut_ros.render._cuda extension: "
                               + (why or "the tensors are not on a GPU"))
        if cuda_fn is None:
            _warn_fallback("CUDA", why)
        else:  # the kernel reads the background as numbers (a tensor only when its gradient is wanted)
            return RenderOutput(*cuda_fn(*inputs, height, width, background, lowpass, pair_budget))
    elif impl == "cpu" or (impl == "auto" and means.dtype == torch.float32 and not inputs.wants_grad(background)):
        cpu_fn, why = _kernel("CPU")
        if impl == "cpu" and (cpu_fn is None or inputs.wants_grad(background)):
            raise RuntimeError("impl='cpu' renders without gradients with the built CPU kernel: "
                               + (why or "gradients are wanted (use impl='torch')"))
        if cpu_fn is None:
            _warn_fallback("CPU", why)
        else:
            return RenderOutput(*cpu_fn(*inputs, height, width, background_vector(background, means), lowpass))
    return RenderOutput(*rasterize_torch(*inputs, height, width, background_vector(background, means), lowpass))
