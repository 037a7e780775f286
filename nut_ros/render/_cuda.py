"""CUDA extension of the orthographic rasterizer (sources in ``nut_ros/render/csrc``), built just in time.

Importing this module compiles nothing; it raises ``ImportError`` at once when there is no CUDA device or no CUDA
toolkit (``nvcc``). The first ``rasterize_cuda`` call builds the extension with ``torch.utils.cpp_extension.load``
(cached under ``TORCH_EXTENSIONS_DIR``); a failed build raises ``RuntimeError`` with the compiler's message, once.

Gradients: the forward saves the per-tile sorted lists, each pixel's final transmittance and the end of its
contributor list; the backward kernel walks the contributors back to front and yields the gradients of every
Gaussian's pixel centre, conic, opacity, colour and depth; torch then carries the centre, conic and depth gradients
through the differentiable projection (``project_gaussians``) to means, scales and rotations. They equal the torch
rasterizer's gradients up to float32 summation order.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render.kernel_config import CSRC
from nut_ros.render.pair_budget import PairBudget
from nut_ros.render.projection import project_gaussians

SOURCES = ("torch_bindings.cpp", "ortho_raster.cu")


def _toolkit() -> str | None:
    """Folder of the CUDA toolkit that torch would build with, or None."""
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and Path(CUDA_HOME, "bin", "nvcc").exists():
        return CUDA_HOME
    nvcc = shutil.which("nvcc")
    return str(Path(nvcc).resolve().parents[1]) if nvcc else None


if not torch.cuda.is_available():
    raise ImportError("nut_ros.render._cuda needs a CUDA device (torch.cuda.is_available() is False)")
if _toolkit() is None:
    raise ImportError("nut_ros.render._cuda needs the CUDA toolkit (nvcc on PATH or CUDA_HOME) to build its kernels")
if not all((CSRC / s).is_file() for s in SOURCES):
    raise ImportError(f"rasterizer CUDA sources not found in {CSRC}")

_ext = None
_build_error: str | None = None


def extension():
    """The compiled extension module (built on first use)."""
    global _ext, _build_error
    if _ext is None:
        if _build_error is not None:
            raise RuntimeError(_build_error)
        from torch.utils.cpp_extension import load

        try:
            _ext = load(name="nut_ros_ortho_raster", sources=[str(CSRC / s) for s in SOURCES],
                        extra_include_paths=[str(CSRC)], extra_cflags=["-O3"],
                        extra_cuda_cflags=["-O3", "-std=c++17"], verbose=bool(os.environ.get("VERBOSE")))
        except Exception as err:  # compiler / linker failure: remember it instead of rebuilding on every call
            _build_error = f"building the nut_ros CUDA rasterizer failed: {err}"
            raise RuntimeError(_build_error) from err
    return _ext


def rasterize_forward(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                      height: int, width: int, background: Tensor, lowpass: float,
                      capacity: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward pass only: ``(color [B,3,H,W], depth [B,1,H,W], alpha [B,1,H,W], tile-Gaussian pairs [1])`` (the
    count stays on the device). ``capacity`` > 0: the sort buffer holds that many pairs (more are dropped; compare
    the count) and the host does not wait for the GPU; 0: sized from the count, which waits for the queued kernels."""
    args = [t.detach().float().contiguous() for t in (means, scales, rotations, opacities, colors)]
    return tuple(extension().rasterize_forward(*args, int(height), int(width), _floats(background), False,
                                               float(lowpass), int(capacity)))


def _floats(background) -> list[float]:
    if isinstance(background, Tensor):
        background = background.detach().reshape(3).tolist()
    return [float(v) for v in background]


class _RasterizeCuda(torch.autograd.Function):
    """CUDA forward and backward kernels; the projection's part of the chain rule runs in torch."""

    @staticmethod
    def forward(ctx, means, scales, rotations, opacities, colors, height, width, background, lowpass):
        args = [t.detach().float().contiguous() for t in (means, scales, rotations, opacities, colors)]
        bg = _floats(background)
        color, depth, alpha, pairs, *state = extension().rasterize_forward(*args, int(height), int(width), bg, True,
                                                                           float(lowpass))
        ctx.save_for_backward(means, scales, rotations, args[4], *state)
        ctx.pairs, ctx.size, ctx.bg, ctx.lowpass = int(pairs.item()), (height, width), bg, float(lowpass)
        return color.to(means.dtype), depth.to(means.dtype), alpha.to(means.dtype)

    @staticmethod
    def backward(ctx, grad_color, grad_depth, grad_alpha):
        means, scales, rotations, colors, workspace, keys, final_t, final_last = ctx.saved_tensors
        grads = [g.float().contiguous() for g in (grad_color, grad_depth, grad_alpha)]
        d_xy, d_conic, d_opacity, d_color, d_depth = extension().rasterize_backward(
            colors, workspace, keys, ctx.pairs, final_t, final_last, *grads, ctx.bg)
        needs = ctx.needs_input_grad
        d_means = d_scales = d_rotations = None
        if any(needs[:3]):
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_(need) for t, need in zip((means, scales, rotations), needs[:3])]
                proj = project_gaussians(*leaves, *ctx.size, ctx.lowpass)
                wanted = [t for t in leaves if t.requires_grad]
                pairs = [(o, g.to(means.dtype)) for o, g in ((proj.uv, d_xy), (proj.conic, d_conic),
                                                             (proj.depth, d_depth)) if o.requires_grad]
                found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                                 allow_unused=True))
            d_means, d_scales, d_rotations = [next(found) if need else None for need in needs[:3]]
        d_opacity = d_opacity.to(means.dtype) if needs[3] else None
        d_color = d_color.to(means.dtype) if needs[4] else None
        d_background = None
        if needs[7]:  # background gets the final transmittance's weight
            d_background = (grad_color * final_t.unsqueeze(1).to(grad_color.dtype)).sum(dim=(0, 2, 3))
        return d_means, d_scales, d_rotations, d_opacity, d_color, None, None, d_background, None


def rasterize_cuda(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                   height: int, width: int, background: Tensor, lowpass: float,
                   pair_budget: PairBudget | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N, ·]`` CUDA tensors like ``rasterize_torch``: colour ``[B,3,H,W]``, depth and alpha ``[B,1,H,W]``.

    ``background`` is a 3-vector (a tensor when its gradient is wanted, else numbers), ``lowpass`` the px² added to
    the screen covariance. Differentiable (see the module docstring for how gradients are computed). Without
    gradients, a ``pair_budget`` sizes the sort buffer (no wait for the GPU) and records the render's pair count.
    """
    if not means.is_cuda:
        raise ValueError("rasterize_cuda needs CUDA tensors")
    inputs = RasterInputs(means, scales, rotations, opacities, colors)
    if not inputs.wants_grad(background):
        # inference: no state for a backward pass, and with a budget no wait for the pair count
        gaussians = means.shape[0] * means.shape[1]
        capacity = pair_budget.capacity(gaussians) if pair_budget is not None else 0
        color, depth, alpha, pairs = rasterize_forward(*inputs, height, width, background, lowpass, capacity)
        if pair_budget is not None:
            pair_budget.record(pairs, capacity, gaussians)
        return color.to(means.dtype), depth.to(means.dtype), alpha.to(means.dtype)
    return _RasterizeCuda.apply(means, scales, rotations, opacities, colors, int(height), int(width), background,
                                float(lowpass))
