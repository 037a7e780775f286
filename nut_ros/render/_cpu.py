"""Compiled CPU forward pass of the orthographic rasterizer (``csrc/ortho_raster_cpu.cpp``), built just in time.

The kernel is plain C++17 with no torch headers: the first :func:`rasterize_cpu` call compiles it with the system
C++ compiler (``$CXX``, else ``c++``) for the CPU it runs on, in about two seconds, into :func:`cache_dir` (default
``~/.cache/nut_ros``) under a name that hashes the sources, the flags, the compiler and the CPU, and loads it
through ctypes. A failed build raises ``RuntimeError`` with the compiler's message; :func:`nut_ros.render.rasterize`
then renders with the torch implementation (and does not try again in that process). Forward only: renders that
need gradients use the torch implementation.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from nut_ros.render.kernel_config import CSRC

SOURCE = CSRC / "ortho_raster_cpu.cpp"
HEADERS = (CSRC / "ortho_raster_config.h",)
# -march=native: the kernel is built on the machine that runs it (the cache key names the CPU); its vector code uses the
# widest SIMD there
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")
#: bound on the (block, Gaussian) list entries the kernel holds at once (4 bytes each: 64 MiB); past it the Gaussians
#: are binned and composited in depth-ordered chunks, so wide splats (an untrained model's) cost time, not memory
MAX_ENTRIES = 1 << 24


def cache_dir() -> Path:
    """Where built kernels are kept: ``$NUT_ROS_CACHE``, else ``$XDG_CACHE_HOME/nut_ros`` or ``~/.cache/nut_ros``;
    where that cannot be created or written (a service user's read-only home), a folder of this user's in the
    system's temporary directory."""
    if os.environ.get("NUT_ROS_CACHE"):
        wanted = Path(os.environ["NUT_ROS_CACHE"])
    else:
        try:
            wanted = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nut_ros"
        except RuntimeError:  # no home directory known
            wanted = None
    if wanted is not None:
        try:
            wanted.mkdir(parents=True, exist_ok=True)
            if os.access(wanted, os.W_OK):
                return wanted
        except OSError:
            pass
    fallback = Path(tempfile.gettempdir()) / f"nut_ros-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    if hasattr(os, "getuid"):  # a shared temporary directory: load libraries only from a folder that is ours alone
        info = fallback.lstat()
        if fallback.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise PermissionError(f"{fallback} is not a folder of this user's alone: set NUT_ROS_CACHE to one")
    return fallback


def cpu_identity() -> str:
    """What the built code depends on besides its sources and flags: the machine type and, on Linux, the CPU's
    model and feature flags (a cache shared by different CPUs keeps one build per CPU)."""
    lines = []
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
    except OSError:
        pass
    return platform.machine() + "".join(sorted(set(lines)))


def compiler() -> str | None:
    """The C++ compiler to build with (``$CXX``, else ``c++`` or ``g++`` on PATH), or None."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The built kernel library (built on first use; ``RuntimeError`` when that fails)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), *(h.read_bytes() for h in HEADERS), " ".join(FLAGS).encode(), cxx.encode(),
                 cpu_identity().encode()):
        digest.update(part)
    target = cache_dir() / f"ortho_raster_cpu_{digest.hexdigest()[:16]}.so"
    if not target.is_file():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then moved in whole
            built = Path(tmp) / target.name
            run = subprocess.run([cxx, *FLAGS, f"-I{CSRC}", str(SOURCE), "-o", str(built)], capture_output=True,
                                 text=True)
            if run.returncode != 0:
                raise RuntimeError(f"building the nut_ros CPU rasterizer failed ({cxx}):\n{run.stderr.strip()}")
            os.replace(built, target)
    lib = ctypes.CDLL(str(target))
    lib.ortho_render_cpu.restype = ctypes.c_int
    lib.ortho_render_cpu.argtypes = ([ctypes.c_int] * 4 + [ctypes.c_float] + [ctypes.c_void_p] * 9
                                     + [ctypes.c_int, ctypes.c_int64])
    return lib


def check_inputs(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                 background: Tensor) -> None:
    """``ValueError`` unless every input is a CPU tensor of the shape the kernel reads (it checks none itself):
    means, scales and colours ``[B, N, 3]``, rotations ``[B, N, 4]``, opacities ``[B, N, 1]``, background 3 values."""
    tensors = {"means": means, "scales": scales, "rotations": rotations, "opacities": opacities, "colors": colors,
               "background": background}
    elsewhere = [name for name, t in tensors.items() if t.device.type != "cpu"]
    if elsewhere:
        raise ValueError(f"rasterize_cpu needs CPU tensors; not on the CPU: {', '.join(elsewhere)}")
    if means.dim() != 3:
        raise ValueError(f"means must be [B, N, 3], got {list(means.shape)}")
    b, n = means.shape[:2]
    wanted = {"means": 3, "scales": 3, "rotations": 4, "opacities": 1, "colors": 3}
    wrong = [f"{name} {list(tensors[name].shape)}" for name, k in wanted.items() if tensors[name].shape != (b, n, k)]
    if wrong or background.numel() != 3:
        wrong += [] if background.numel() == 3 else [f"background of {background.numel()} values"]
        raise ValueError(f"rasterize_cpu inputs for B={b}, N={n} do not fit: {', '.join(wrong)}")


def rasterize_cpu(means: Tensor, scales: Tensor, rotations: Tensor, opacities: Tensor, colors: Tensor,
                  height: int, width: int, background: Tensor, lowpass: float,
                  threads: int | None = None, max_entries: int = MAX_ENTRIES) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``[B, N, ·]`` CPU tensors like ``rasterize_torch`` (no gradients): colour ``[B,3,H,W]``, depth and alpha
    ``[B,1,H,W]``, in the inputs' dtype. ``threads``: worker threads (default ``torch.get_num_threads()``);
    ``max_entries``: see :data:`MAX_ENTRIES`."""
    check_inputs(means, scales, rotations, opacities, colors, background)
    lib = library()
    b, n = means.shape[:2]
    with torch.no_grad():  # the kernel projects the Gaussians itself, as project_gaussians does
        arrays = [t.contiguous() for t in (means.float(), scales.float(), rotations.float(),
                                           opacities.float()[..., 0], colors.float(), background.float().reshape(3))]
        color = torch.empty(b, 3, height, width)
        depth = torch.empty(b, 1, height, width)
        alpha = torch.empty(b, 1, height, width)
        failed = lib.ortho_render_cpu(b, n, height, width, lowpass, *(t.data_ptr() for t in arrays),
                                      color.data_ptr(), depth.data_ptr(), alpha.data_ptr(),
                                      int(threads or torch.get_num_threads()), int(max_entries))
    if failed:
        raise MemoryError(f"the CPU rasterizer ran out of memory rendering {b} x {n} Gaussians at {width}x{height}")
    dtype = means.dtype
    return color.to(dtype), depth.to(dtype), alpha.to(dtype)
