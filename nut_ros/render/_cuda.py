"""CUDA extension of the orthographic rasterizer (kernels in ``engine/plugins/csrc``), built just in time.

Importing this module compiles nothing; it raises ``ImportError`` at once when there is no CUDA device or no CUDA
toolkit (``nvcc``). The first ``rasterize_cuda`` call builds the extension with ``torch.utils.cpp_extension.load``
(cached under ``TORCH_EXTENSIONS_DIR``); a failed build raises ``RuntimeError`` with the compiler's message, once.

The extension is forward-only. Gradients come from the pure-torch implementation: the backward pass re-runs
``rasterize_torch`` on the saved inputs and back-propagates through it (same function, so the gradients are those
of the torch rasterizer; memory and time of one torch forward + backward).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from nut_ros.render._torch_impl import rasterize_torch

CSRC = Path(os.environ.get("NUT_ROS_CSRC", Path(__file__).resolve().parents[2] / "engine" / "plugins" / "csrc"))
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
    raise ImportError(f"rasterizer CUDA sources not found in {CSRC} (set NUT_ROS_CSRC)")

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
                      height: int, width: int, background: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
    """Forward pass only: ``(color [B,3,H,W], depth [B,1,H,W], alpha [B,1,H,W], tile-Gaussian pairs)``."""
    args = [t.detach().float().contiguous() for t in (means, scales, rotations, opacities, colors)]
    bg = [float(v) for v in torch.as_tensor(background).reshape(3).tolist()]
    color, depth, alpha, pairs = extension().rasterize_forward(*args, int(height), int(width), bg)
    return color, depth, alpha, int(pairs.item())


class _RasterizeCuda(torch.autograd.Function):
    """CUDA forward; backward through the torch implementation re-run on the saved inputs."""

    @staticmethod
    def forward(ctx, means, scales, rotations, opacities, colors, height, width, background):
        ctx.save_for_backward(means, scales, rotations, opacities, colors, background)
        ctx.size = (height, width)
        color, depth, alpha, _ = rasterize_forward(means, scales, rotations, opacities, colors, height, width,
                                                   background)
        return color.to(means.dtype), depth.to(means.dtype), alpha.to(means.dtype)

    @staticmethod
    def backward(ctx, grad_color, grad_depth, grad_alpha):
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[:5] + ctx.needs_input_grad[7:8]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(saved, needs)]
            outputs = rasterize_torch(*leaves[:5], *ctx.size, leaves[5])
            wanted = [t for t in leaves if t.requires_grad]
            grads = iter(torch.autograd.grad(outputs, wanted, (grad_color, grad_depth, grad_alpha),
                                             allow_unused=True))
        g = [next(grads) if need else None for need in needs]
        return g[0], g[1], g[2], g[3], g[4], None, None, g[5]


def rasterize_cuda(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                   height: int, width: int, background: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N, ·]`` CUDA tensors like ``rasterize_torch``: colour ``[B,3,H,W]``, depth and alpha ``[B,1,H,W]``.

    ``background`` is a 3-vector. Differentiable (see the module docstring for how gradients are computed).
    """
    if not means.is_cuda:
        raise ValueError("rasterize_cuda needs CUDA tensors")
    background = torch.as_tensor(background, dtype=means.dtype, device=means.device).reshape(3)
    return _RasterizeCuda.apply(means, scales, rotations, opacities, colors, int(height), int(width), background)
