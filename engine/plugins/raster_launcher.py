"""The rasterizer kernels (``nut_ros/render/csrc/ortho_raster_kernels.cuh``, the sources the PyTorch extension
builds from) compiled by pycuda and launched on any CUDA stream.

pycuda compiles the kernels to a cubin for the current GPU and owns the CUDA context (the device's *primary*
context, shared with TensorRT and PyTorch, so raw device pointers from either are valid here). pycuda can only
launch on streams it created, so the launches go through the driver API (``cuLaunchKernel`` via ctypes) with the
stream handle given by the caller: TensorRT's ``enqueue`` stream, a pycuda ``Stream.handle`` or a torch stream's
``cuda_stream``. Every pointer argument is a raw device address (``int``), as TensorRT hands them to plugins.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from nut_ros.render.kernel_config import CONFIG, CSRC, TILE

KERNELS = ("ortho_preprocess", "ortho_scan_tiles", "ortho_scatter", "ortho_sort_tiles", "ortho_render")


def _align(nbytes: int) -> int:
    a = CONFIG["ORTHO_ALIGN"]
    return (nbytes + a - 1) // a * a


@dataclass(frozen=True)
class Workspace:
    """Byte offsets of the scratch buffers in one workspace allocation (same order as ``ortho_raster_layout``)."""

    xy: int
    depth: int
    conic: int
    rect: int
    tile_count: int
    tile_start: int
    tile_cursor: int
    total: int
    keys: int
    nbytes: int
    tiles: int  # B * tiles per image
    capacity: int  # tile-Gaussian pairs the keys buffer holds

    @staticmethod
    def layout(batch: int, n: int, height: int, width: int, capacity: int) -> "Workspace":
        g = batch * n
        tiles = batch * (-(-width // TILE)) * (-(-height // TILE))
        sizes = [g * 8, g * 4, g * 16, g * 16, tiles * 4, tiles * 4, tiles * 4, 4, capacity * 8]
        offsets, o = [], 0
        for size in sizes:
            offsets.append(o)
            o += _align(size)
        return Workspace(*offsets, nbytes=o, tiles=tiles, capacity=capacity)


class _Driver:
    """The few CUDA driver calls needed, through ctypes (``libcuda`` is loaded by any CUDA process anyway)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")

    def check(self, result: int, what: str) -> None:
        if result != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(result, ctypes.byref(name))
            raise RuntimeError(f"{what} failed: {name.value.decode() if name.value else result}")

    def load(self, image: bytes, names: tuple[str, ...]) -> tuple[ctypes.c_void_p, dict[str, ctypes.c_void_p]]:
        module = ctypes.c_void_p()
        self.check(self.lib.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(image)), "cuModuleLoadData")
        functions = {}
        for name in names:
            fn = ctypes.c_void_p()
            self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()), f"get {name}")
            functions[name] = fn
        return module, functions

    def launch(self, fn, grid, block, stream: int, args: list) -> None:
        params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args])
        self.check(self.lib.cuLaunchKernel(fn, *map(ctypes.c_uint, grid), *map(ctypes.c_uint, block),
                                           ctypes.c_uint(0), ctypes.c_void_p(stream), params, None),
                   "cuLaunchKernel")

    def memset_d32(self, ptr: int, value: int, count: int, stream: int) -> None:
        self.check(self.lib.cuMemsetD32Async(ctypes.c_uint64(ptr), ctypes.c_uint(value), ctypes.c_size_t(count),
                                             ctypes.c_void_p(stream)), "cuMemsetD32Async")

    def read_i32(self, ptr: int, stream: int) -> int:
        out = ctypes.c_int32()
        self.check(self.lib.cuStreamSynchronize(ctypes.c_void_p(stream)), "cuStreamSynchronize")
        self.check(self.lib.cuMemcpyDtoH_v2(ctypes.byref(out), ctypes.c_uint64(ptr), ctypes.c_size_t(4)),
                   "cuMemcpyDtoH")
        return out.value


def _ptr(p: int) -> ctypes.c_uint64:
    return ctypes.c_uint64(int(p))


class RasterKernels:
    """Compiled rasterizer kernels: ``enqueue`` renders B images of N Gaussians on a given stream."""

    def __init__(self, options: tuple[str, ...] = ("-O3", "-std=c++17")):
        import pycuda.autoprimaryctx  # noqa: F401  (the primary context, shared with TensorRT / torch)
        import pycuda.driver as cuda
        from pycuda.compiler import compile as nvcc_compile

        major, minor = cuda.Context.get_device().compute_capability()
        self.arch = f"sm_{major}{minor}"
        source = '#include "ortho_raster_kernels.cuh"\n'
        self.cubin = nvcc_compile(source, no_extern_c=True, include_dirs=[str(CSRC)], arch=self.arch,
                                  options=list(options))
        self._driver = _Driver()
        self._module, self._fn = self._driver.load(self.cubin, KERNELS)

    def enqueue(self, means: int, scales: int, rotations: int, opacities: int, colors: int, out_color: int,
                out_depth: int, out_alpha: int, workspace: int, ws: Workspace, batch: int, n: int, height: int,
                width: int, background: tuple[float, float, float], stream: int, lowpass: float) -> None:
        """Queue the whole forward pass. Inputs ``[B,N,3|3|4|1|3]`` float32, outputs ``[B,3|1|1,H,W]`` float32;
        ``lowpass``: px² added to each screen covariance."""
        d, i32, f32 = self._driver, ctypes.c_int32, ctypes.c_float
        at = {name: _ptr(workspace + getattr(ws, name)) for name in
              ("xy", "depth", "conic", "rect", "tile_count", "tile_start", "tile_cursor", "total", "keys")}
        gx, gy = -(-width // TILE), -(-height // TILE)
        g = batch * n
        pre = CONFIG["ORTHO_PRE_THREADS"]
        d.memset_d32(workspace + ws.tile_count, 0, ws.tiles, stream)
        if g:
            d.launch(self._fn["ortho_preprocess"], (-(-g // pre), 1, 1), (pre, 1, 1), stream,
                     [i32(batch), i32(n), i32(height), i32(width), f32(lowpass), _ptr(means), _ptr(scales),
                      _ptr(rotations),
                      _ptr(opacities), at["xy"], at["depth"], at["conic"], at["rect"], at["tile_count"]])
        d.launch(self._fn["ortho_scan_tiles"], (1, 1, 1), (CONFIG["ORTHO_SCAN_THREADS"], 1, 1), stream,
                 [i32(ws.tiles), at["tile_count"], at["tile_start"], at["tile_cursor"], at["total"]])
        if g and ws.capacity:
            d.launch(self._fn["ortho_scatter"], (-(-g // pre), 1, 1), (pre, 1, 1), stream,
                     [i32(batch), i32(n), i32(height), i32(width), at["depth"], at["rect"], at["tile_cursor"],
                      at["keys"], i32(ws.capacity)])
            d.launch(self._fn["ortho_sort_tiles"], (ws.tiles, 1, 1), (CONFIG["ORTHO_SORT_THREADS"], 1, 1), stream,
                     [at["tile_start"], at["tile_count"], at["keys"], i32(ws.capacity)])
        if batch:
            d.launch(self._fn["ortho_render"], (gx, gy, batch), (TILE, TILE, 1), stream,
                     [i32(n), i32(height), i32(width), at["tile_start"], at["tile_count"], at["keys"],
                      i32(ws.capacity), at["xy"], at["conic"], _ptr(colors), *(f32(v) for v in background),
                      _ptr(out_color), _ptr(out_depth), _ptr(out_alpha), _ptr(0), _ptr(0)])  # no backward state

    def pairs(self, workspace: int, ws: Workspace, stream: int) -> int:
        """Tile-Gaussian pairs of the last pass (synchronises ``stream``); more than ``ws.capacity`` = truncated."""
        return self._driver.read_i32(workspace + ws.total, stream)
