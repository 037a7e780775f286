"""TensorRT backend: engines built by ``engine/build_engine.py``, pycuda device buffers, pinned memory and a stream.

Same interface as :class:`nut_ros.pipeline.backends.TorchBackend`; ``make_backend("tensorrt", ...)`` imports this
module by name (the deployment runtime imports the pipeline, never the reverse). A frame's handle keeps the encoder
outputs on the GPU (one pycuda allocation per tensor); ``decode`` binds two handles directly as the decoder's inputs
and copies the Gaussians back through pinned memory. ``render`` runs the render engine when it was built with the
rasterizer plugin, otherwise :class:`PycudaRenderer` (``Gaussians.at(t)`` on the host, then the rasterizer kernels on
the backend's stream; also where the caller's background is not the one the render engine was built with). When the
backend is created it refuses stale engines (other ONNX, TensorRT version or GPU, the GPU tag read with pycuda as
:func:`engine.build_engine.gpu_tag`; an ONNX file absent beside the manifest is not compared), a listing without an
encoder or decoder engine, an encoder engine whose inputs are not named as the export names them, a manifest missing
where the listing says (a path relative to the listing's folder) or exported with a batch other than 1, and a CUDA
device other than 0: pycuda's primary context and the engines' GPU tag are the default device's. pycuda's device
memory (the renderer's workspace included), pinned host memory and streams are created inside that context and freed
there, whichever thread drops them (:class:`_Buffers`, :class:`_Stream`); TensorRT's engines and execution contexts
free their own memory.
"""
from __future__ import annotations

import functools
import json
import warnings
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.build_engine import check_engine, gpu_tag, listing_manifest
from engine.plugins.ortho_raster_plugin import (DEFAULT_MAX_PAIRS_PER_GAUSSIAN, import_tensorrt, raster_kernels,
                                                register_plugin)
from engine.plugins.raster_launcher import Workspace
from nut_ros.core.config import ModelConfig
from nut_ros.core.gaussians import Gaussians, RasterInputs
from nut_ros.core.model import FrameCache, static_gaussians
from nut_ros.pipeline.onnx_backend import (ENCODER_INPUTS, find_listed, keep_exported_learned_motion,
                                           require_encoder_decoder, require_encoder_inputs)
from nut_ros.render import RenderOutput

PAIRS_PER_GAUSSIAN = DEFAULT_MAX_PAIRS_PER_GAUSSIAN  #: initial sort buffer of PycudaRenderer; grown when too small


class CurrentContext:
    """The device's primary CUDA context (retained by ``pycuda.autoprimaryctx``), made current on the calling
    thread for a ``with`` block: a context is current only on the thread that made it so, and the node calls the
    backend from its worker thread, not the thread that created it (pycuda calls there fail with "invalid device
    context" otherwise). Pushing a context that is already current is allowed; the pop restores the thread's."""

    def __init__(self):
        import pycuda.autoprimaryctx as primary

        self.context = primary.context

    def __enter__(self):
        self.context.push()

    def __exit__(self, *exc):
        import pycuda.driver as cuda

        cuda.Context.pop()


def in_current_context(method):
    """``method`` run with its object's :class:`CurrentContext` (``self.current``) current on the calling thread."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self.current:
            return method(self, *args, **kwargs)
    return call


def _free(current: CurrentContext, device: dict, host: dict[str, np.ndarray]) -> None:
    """Free the ``device`` allocations and the page-locked memory under the ``host`` arrays with ``current`` pushed:
    pycuda's own clean-up of an object dropped where its context is not current (another thread) frees nothing."""
    with current:
        for allocation in device.values():
            allocation.free()
        for array in host.values():
            array.base.free()  # pagelocked_empty's PagelockedHostAllocation


class _Buffers:
    """Device allocation per named float32 tensor (or scratch space, sized in float32 words), with a pinned host
    mirror allocated on first transfer. Both are freed in ``current`` (:func:`_free`) once the object is unreachable,
    whichever thread drops it; at interpreter exit they are left to the process's teardown (the context may be gone
    by then)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], current: CurrentContext):
        import pycuda.driver as cuda

        self.shapes = dict(shapes)
        self.device = {k: cuda.mem_alloc(max(4, 4 * int(np.prod(s)))) for k, s in self.shapes.items()}
        self._host: dict[str, np.ndarray] = {}
        weakref.finalize(self, _free, current, self.device, self._host).atexit = False  # holds the dicts, not self

    def host(self, name: str) -> np.ndarray:
        import pycuda.driver as cuda

        if name not in self._host:
            self._host[name] = cuda.pagelocked_empty(self.shapes[name], np.float32)
        return self._host[name]

    def upload(self, name: str, value: torch.Tensor | np.ndarray, stream) -> None:
        import pycuda.driver as cuda

        value = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else value
        np.copyto(self.host(name), value.reshape(self.shapes[name]))
        cuda.memcpy_htod_async(self.device[name], self.host(name), stream)

    def download(self, name: str, stream) -> None:
        import pycuda.driver as cuda

        cuda.memcpy_dtoh_async(self.host(name), self.device[name], stream)

    def tensor(self, name: str) -> torch.Tensor:
        """A torch copy of the host mirror (valid after the stream has been synchronised)."""
        return torch.from_numpy(self.host(name).copy())


def _release(current: CurrentContext, held: list) -> None:
    """Drop the references in ``held`` with ``current`` pushed: an object pycuda frees only in its destructor (a
    ``Stream``) is then destroyed inside its context."""
    with current:
        held.clear()


class _Stream:
    """A pycuda stream (:attr:`stream`), created in ``current`` and destroyed there once this owner is unreachable,
    whichever thread drops it: pycuda's ``Stream`` has no explicit destroy, so the one lasting reference to it is the
    list that :func:`_release` empties inside the context. Keep the owner, not the stream."""

    def __init__(self, current: CurrentContext):
        import pycuda.driver as cuda

        with current:
            self._held = [cuda.Stream()]
        weakref.finalize(self, _release, current, self._held).atexit = False  # holds the list, not self

    @property
    def stream(self):
        return self._held[0]


class PycudaRenderer:
    """The rasterizer kernels of ``nut_ros/render/csrc`` driven with pycuda buffers, pinned memory and a stream (its
    own, or the :class:`_Stream` ``stream``); ``lowpass`` is the model's ``raster_lowpass``."""

    def __init__(self, height: int, width: int, lowpass: float, stream: _Stream | None = None):
        self.current = CurrentContext()
        self.height, self.width, self.lowpass = height, width, lowpass
        self._stream = stream or _Stream(self.current)
        with self.current:
            self.kernels = raster_kernels()
        self._key = None
        self.pairs = 0  # tile-Gaussian pairs of the last render

    def _allocate(self, batch: int, n: int, capacity: int) -> None:
        h, w = self.height, self.width
        self.workspace = Workspace.layout(batch, n, h, w, capacity)  # nbytes: a multiple of ORTHO_ALIGN (256)
        self.buffers = _Buffers({"means": (batch, n, 3), "scales": (batch, n, 3), "rotations": (batch, n, 4),
                                 "opacities": (batch, n, 1), "colors": (batch, n, 3), "color": (batch, 3, h, w),
                                 "depth": (batch, 1, h, w), "alpha": (batch, 1, h, w),
                                 "workspace": (self.workspace.nbytes // 4,)}, self.current)
        self._key = (batch, n, capacity)

    @in_current_context
    def render(self, inputs: RasterInputs, background: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderOutput:
        batch, n = inputs.means.shape[:2]
        if self._key is None or self._key[:2] != (batch, n):
            self._allocate(batch, n, max(1, batch * n * PAIRS_PER_GAUSSIAN))
        s = self._stream.stream
        for _ in range(2):  # a second pass only when the sort buffer was too small; it then fits exactly
            buf = self.buffers
            for name, value in zip(RasterInputs._fields, inputs):
                buf.upload(name, value, s)
            ptr = {k: int(v) for k, v in buf.device.items()}
            self.kernels.enqueue(ptr["means"], ptr["scales"], ptr["rotations"], ptr["opacities"], ptr["colors"],
                                 ptr["color"], ptr["depth"], ptr["alpha"], ptr["workspace"], self.workspace,
                                 batch, n, self.height, self.width, tuple(float(v) for v in background), s.handle,
                                 self.lowpass)
            self.pairs = self.kernels.pairs(ptr["workspace"], self.workspace, s.handle)
            if self.pairs <= self.workspace.capacity:
                break
            self._allocate(batch, n, self.pairs)
        for name in ("color", "depth", "alpha"):
            buf.download(name, s)
        s.synchronize()
        return RenderOutput(buf.tensor("color"), buf.tensor("depth"), buf.tensor("alpha"))


class _Engine:
    """A deserialized engine, its execution context and float32 I/O buffers."""

    def __init__(self, trt, runtime, path: Path, current: CurrentContext):
        self.trt = trt
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {path.name} (TensorRT's log "
                               f"above says why, such as too little free GPU memory)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        for n in names:
            if self.engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise TypeError(f"{path.name}: tensor {n} is not float32")
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        self.buffers = _Buffers(self.shapes, current)

    def run(self, stream, bound: dict[str, int] | None = None) -> None:
        """Execute on ``stream``; ``bound`` overrides tensor addresses (e.g. another engine's outputs)."""
        bound = bound or {}
        for name in self.inputs + self.outputs:
            self.context.set_tensor_address(name, bound.get(name, int(self.buffers.device[name])))
        if not self.context.execute_async_v3(stream.handle):
            raise RuntimeError("TensorRT execution failed")


def read_listing(engines: str | Path, model: str | None = None) -> tuple[Path, dict]:
    """The path and contents of an engine listing: ``engines`` itself, or found in the folder ``engines`` (its only
    ``*.engines.json``, else ``<model>.engines.json``: :func:`nut_ros.pipeline.onnx_backend.find_listed`)."""
    path = find_listed(engines, ".engines.json", model, "python -m engine.build_engine <manifest>")
    return path, json.loads(path.read_text())


def check_device(device: str) -> None:
    """Refuse (``ValueError``) any device but the default CUDA device (``cuda``, ``cuda:0``)."""
    parsed = torch.device(device)
    if parsed.type != "cuda":
        raise ValueError("the TensorRT backend runs on CUDA devices only")
    if parsed.index not in (None, 0):
        raise ValueError(f"the TensorRT backend drives the default CUDA device only (cuda:0), not {device!r}: "
                         f"choose the GPU with CUDA_VISIBLE_DEVICES instead")


def read_manifest(path: Path, listing: dict) -> dict:
    """The export manifest the listing at ``path`` names (:func:`engine.build_engine.listing_manifest`), which must
    exist and be of batch 1."""
    manifest = listing_manifest(path, listing)
    if not manifest.is_file():
        raise FileNotFoundError(f"{path.name} names the export manifest {manifest}, which is missing: keep the export "
                                f"folder where the listing says (relative to {path.parent}) or rebuild the engines "
                                f"with python -m engine.build_engine <manifest> --out {path.parent}")
    export = json.loads(manifest.read_text())
    if export["batch"] != 1:
        raise ValueError(f"the pipeline needs graphs exported with batch 1, got {export['batch']} ({manifest})")
    return export


def render_route(engine_count: int | None, engine_background: np.ndarray | None, count: int,
                 background: Sequence[float]) -> str:
    """How :meth:`TensorRTBackend.render` renders ``count`` Gaussians: ``"engine"`` (the render engine, built for a
    pair's fixed Gaussian count and its own float32 background), ``"direct"`` (the rasterizer's kernels launched
    directly: no render engine, or another count, such as a stream's first frame alone) or ``"direct, other
    background"`` (the engine's count but another background)."""
    if engine_count is None or count != engine_count:
        return "direct"
    if not np.array_equal(np.asarray(background, np.float32), engine_background):
        return "direct, other background"
    return "engine"


class TensorRTBackend:
    """Encoder / decoder (/ render) engines listed in ``<config>.engines.json`` (see ``engine/build_engine.py``)."""

    name = "tensorrt"

    def __init__(self, engines: str | Path, device: str = "cuda", model: str | None = None):
        """``engines``: an engine folder (its only listing, else ``<model>.engines.json``) or a listing."""
        check_device(device)  # what cannot run is refused before pycuda and the GPU are touched
        path, listing = read_listing(engines, model)
        export = read_manifest(path, listing)
        require_encoder_decoder(listing["engines"], path, f"python -m engine.build_engine <manifest> --out "
                                f"{path.parent} --parts encoder decoder")
        self.current = CurrentContext()  # every per-frame method runs inside it (the node's worker thread)
        trt = import_tensorrt()
        gpu = gpu_tag()
        export_dir = listing_manifest(path, listing).parent
        # a state graph without the rasterizer node is not used: Gaussians.at(t) runs on the host before rendering
        wanted = {part: info for part, info in listing["engines"].items() if part != "state" or info["custom_node"]}
        for info in wanted.values():
            onnx = export_dir / info["onnx"]
            check_engine(path.parent / info["file"], onnx if onnx.is_file() else None, trt.__version__, gpu)
        if any(info["custom_node"] for info in wanted.values()):
            register_plugin(trt)
        self.model_config = ModelConfig.from_dict(listing["config"])
        self._device = device
        self._stream = _Stream(self.current)
        with self.current:  # the constructing thread need not have the context current (as the node's worker)
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engines = {part: _Engine(trt, runtime, path.parent / info["file"], self.current)
                            for part, info in wanted.items()}
        require_encoder_inputs(self.engines["encoder"].inputs, path.parent / wanted["encoder"]["file"],
                               f"python -m engine.export_onnx --config {self.model_config.name} --parts encoder, "
                               f"then python -m engine.build_engine <manifest> --parts encoder")
        self._render_engine = self.engines.get("state")
        h, w = self.model_config.image_size
        # the rasterizer's kernels launched directly: every render without a render engine, and with one those of
        # another Gaussian count than its fixed one (a pair's), such as a stream's first frame alone, or of another
        # background than its own
        self._renderer = PycudaRenderer(h, w, self.model_config.raster_lowpass, self._stream)
        self._engine_background = None
        if self._render_engine is not None:  # the background is an attribute of the plugin node, float32
            self._engine_background = np.asarray(export["raster_attributes"]["background"], np.float32)
        self._background_warned = False

    @property
    def stream(self):
        """The backend's pycuda stream (owned by a :class:`_Stream`)."""
        return self._stream.stream

    @property
    def device(self) -> str:
        return self._device

    @in_current_context
    def encode(self, rgb: torch.Tensor, disp: torch.Tensor) -> _Buffers:
        """The frame's encoder outputs (named as the encoder engine's outputs), left on the GPU (its own
        allocations)."""
        enc = self.engines["encoder"]
        feeds = dict(zip(ENCODER_INPUTS, (rgb, disp)))
        for name in enc.inputs:  # by name (checked when the backend was created): the engine orders them its way
            enc.buffers.upload(name, feeds[name], self.stream)
        frame = _Buffers({n: enc.shapes[n] for n in enc.outputs}, self.current)
        enc.run(self.stream, {n: int(frame.device[n]) for n in enc.outputs})
        return frame

    @in_current_context
    def decode(self, prev: _Buffers, cur: _Buffers) -> Gaussians:
        dec = self.engines["decoder"]
        bound = {f"prev_{n}": int(ptr) for n, ptr in prev.device.items()}
        bound.update({f"cur_{n}": int(ptr) for n, ptr in cur.device.items()})
        dec.run(self.stream, bound)
        for name in dec.outputs:
            dec.buffers.download(name, self.stream)
        self.stream.synchronize()
        return Gaussians(**{n: dec.buffers.tensor(n) for n in Gaussians.__dataclass_fields__})

    @in_current_context
    def static(self, handle: _Buffers) -> Gaussians:
        names = ("xyz", "rgb", "opacity", "scale")
        for name in names:
            handle.download(name, self.stream)
        self.stream.synchronize()
        cache = {n: handle.tensor(n) if n in names else None for n in FrameCache._fields}  # static() reads these
        return static_gaussians(FrameCache(**cache), t0=1.0)

    def use_learned_motion(self, enabled: bool) -> None:
        keep_exported_learned_motion(self.model_config, enabled)

    @in_current_context
    @torch.inference_mode()
    def render(self, gaussians: Gaussians, t: float, background: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderOutput:
        eng = self._render_engine
        route = render_route(None if eng is None else eng.buffers.shapes["g_xyz"][1], self._engine_background,
                             gaussians.count, background)
        if route == "direct":
            return self._renderer.render(gaussians.at(t), background)
        if route == "direct, other background":
            if not self._background_warned:
                warnings.warn(f"the render engine was built with background {self._engine_background}; "
                              f"renders with another background ({list(background)} here) run the rasterizer "
                              f"kernels directly (warned once)", RuntimeWarning)
                self._background_warned = True
            return self._renderer.render(gaussians.at(t), background)
        for name in Gaussians.__dataclass_fields__:
            eng.buffers.upload(f"g_{name}", getattr(gaussians, name), self.stream)
        eng.buffers.upload("t", np.array([t], np.float32), self.stream)
        eng.run(self.stream)
        for name in eng.outputs:
            eng.buffers.download(name, self.stream)
        self.stream.synchronize()
        return RenderOutput(*(eng.buffers.tensor(n) for n in ("rgb", "depth", "alpha")))

    @in_current_context
    def synchronize(self) -> None:
        self.stream.synchronize()
