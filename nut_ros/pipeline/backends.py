"""Inference backends of the streaming pipeline: the protocol, the PyTorch backend and a factory.

A backend owns the model and the rasterizer. ``encode`` returns an opaque per-frame handle that the pipeline caches
and hands back to ``decode``/``static``; all Gaussians it returns are float32, batch of one.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from nut_ros.core.choices import BACKENDS
from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.core.config import ModelConfig
from nut_ros.core.gaussians import Gaussians
from nut_ros.core.model import NutModel, build_model, static_gaussians
from nut_ros.pipeline.compile import compile_network
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.render import PairBudget, RenderOutput, rasterize

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: backend name -> ``module:class`` of the backends other than torch, imported when asked for. The TensorRT runtime
#: lives in ``engine/`` and imports the pipeline; naming it here keeps that dependency one way (no import of
#: ``engine`` from the pipeline) while the node can still pick it by name.
EXPORTED_BACKENDS = {"onnxruntime": "nut_ros.pipeline.onnx_backend:OnnxBackend",
                     "tensorrt": "engine.trt_backend:TensorRTBackend"}


@runtime_checkable
class Backend(Protocol):
    """What :class:`nut_ros.pipeline.stream.StreamingPipeline` needs from an inference engine."""

    name: str  # "torch", "onnxruntime" or "tensorrt"
    device: str
    model_config: ModelConfig

    def encode(self, rgb: Tensor, disp: Tensor) -> Any:
        """``rgb [1,3,H,W]`` float in [0,1] and ``disp [1,Cd,H,W]`` at the model resolution -> per-frame handle."""

    def decode(self, prev: Any, cur: Any) -> Gaussians:
        """The pair's ``2N`` Gaussians: ``prev``'s with t0 = 0 first, then ``cur``'s with t0 = 1."""

    def static(self, handle: Any) -> Gaussians:
        """The ``N`` static Gaussians of one frame (zero velocity, no fading, t0 = 1: a stream's first frame)."""

    def render(self, gaussians: Gaussians, t: float, background: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderOutput:
        """Render at pair time ``t`` at the model resolution."""

    def use_learned_motion(self, enabled: bool) -> None:
        """Whether ``decode`` adds the model's learned flow (models with ``motion_prior = "learned"``); a backend
        that cannot leave it out raises ``ValueError`` for ``False``."""


class TorchBackend:
    """The PyTorch model on CPU or CUDA (optionally under bf16 autocast on CUDA, optionally ``torch.compile``d and/or
    replayed as CUDA graphs (:mod:`nut_ros.pipeline.cuda_graphs`, CUDA only: the compiled network's fused kernels
    inside the graphs); rendering stays float32)."""

    name = "torch"

    def __init__(self, model: NutModel, device: str | torch.device = "cpu", bf16: bool = False,
                 raster_impl: str = "auto", compile: bool = False, compile_mode: str = "default",
                 cuda_graphs: bool = False):
        self._device = torch.device(device)
        if bf16 and self._device.type != "cuda":
            raise ValueError("bf16 autocast is only supported on CUDA")
        if cuda_graphs and self._device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")
        if cuda_graphs and compile and compile_mode != "default":
            raise ValueError(f"compile_mode {compile_mode!r} brings its own CUDA graphs: use 'default' with "
                             f"cuda_graphs")
        if self._device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal activations made CPU decoding up to ~9x slower
        self.model = model.to(self._device).eval()
        self.model_config = model.config
        self.bf16 = bf16
        self.raster_impl = raster_impl
        self._encode, self._decode = self.model.encode, self.model.decode
        self.cuda_graphs = cuda_graphs
        self._pairs = PairBudget()  # the CUDA rasterizer's sort buffer, sized ahead (no wait for the GPU per render)
        if compile:  # the first frames of each shape take tens of seconds to compile
            self._encode, self._decode = compile_network(self.model, compile_mode)
        if cuda_graphs:  # the first frame of each input shape is captured (a few eager calls); decode also per head
            self._encode = GraphedCall(self._encode)
            self._decode = GraphedCall(self._decode, key=lambda: (self.model.learned_motion,))

    @property
    def device(self) -> str:
        return str(self._device)

    def _autocast(self):
        if self.bf16:  # a captured graph cannot keep autocast's cached weight casts (they die with the region)
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.cuda_graphs)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode(self, rgb: Tensor, disp: Tensor):
        with self._autocast():
            return self._encode(rgb.to(self._device), disp.to(self._device))

    @torch.inference_mode()
    def decode(self, prev, cur) -> Gaussians:
        with self._autocast():
            g = self._decode(prev, cur)
        return g.map(lambda x: x.float())

    @torch.inference_mode()
    def static(self, handle) -> Gaussians:
        return static_gaussians(handle, t0=1.0).map(lambda x: x.float())

    @torch.inference_mode()
    def render(self, gaussians: Gaussians, t: float, background: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderOutput:
        h, w = self.model_config.image_size
        return rasterize(gaussians.at(t), h, w, background=background, impl=self.raster_impl,
                         lowpass=self.model_config.raster_lowpass, pair_budget=self._pairs)

    def render_overflowed(self) -> bool:
        """Whether a render since the last call dropped tile-Gaussian pairs (CUDA rasterizer: its sort buffer is
        sized ahead, :mod:`nut_ros.render.pair_budget`) and must be repeated; the budget has grown so a repeat fits.
        Reads the GPU: call it once the renders' outputs are on the host."""
        return self._pairs.overflowed()

    def use_learned_motion(self, enabled: bool) -> None:
        """Whether ``decode`` adds the model's learned flow (a model with the motion head; the pipeline turns it off
        when another motion prior replaces it)."""
        self.model.learned_motion = enabled and self.model.motion_head is not None

    def synchronize(self) -> None:
        """Wait for queued GPU work (so stage timings are real)."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)


def default_checkpoint(model: str) -> Path:
    """Where the shipped weights of a model configuration live."""
    return WEIGHTS_DIR / f"{model}.safetensors"


def load_torch_model(model: str, checkpoint: str | Path | None, random_init: bool = False) -> NutModel:
    """A configured model: random initialisation, an explicit checkpoint, or the shipped default weights.

    A nut_ros checkpoint carries its configuration; any other file is imported as the authors' checkpoint of the
    configuration ``model`` (e.g. the StreamSplat release with ``model="streamsplat"``, strictly).
    """
    if random_init:
        return build_model(model)
    path = Path(checkpoint) if checkpoint else default_checkpoint(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights for model {model!r} at {path}: pass a checkpoint (.safetensors), ship trained weights "
            f"there, or ask for a randomly initialised model (random_init=True / --random-init) for testing")
    return load_checkpoint(path, reference_config=model)


def make_backend(name: str = "torch", model: str = "tiny", checkpoint: str | Path | None = None,
                 device: str = "cpu", random_init: bool = False, **options) -> Backend:
    """Build a backend by name (:data:`BACKENDS`: ``torch``, ``onnxruntime``, ``tensorrt``).

    ``torch``: ``checkpoint`` is a .safetensors file (default ``nut_ros/weights/<model>.safetensors``);
    ``options`` go to :class:`TorchBackend` (``bf16``, ``raster_impl``, ``compile``, ``cuda_graphs``). The ONNX
    Runtime and TensorRT backends (:data:`EXPORTED_BACKENDS`) are imported only when asked for; ``checkpoint`` is
    then required: an export folder or its ``*.manifest.json`` (onnxruntime), an engine folder or its
    ``*.engines.json`` (tensorrt), a folder of several configurations' files giving ``<model>.manifest.json`` /
    ``<model>.engines.json``; ``options`` go to them.
    """
    if name == "torch":
        return TorchBackend(load_torch_model(model, checkpoint, random_init), device, **options)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")
    if random_init:
        raise ValueError(f"random_init is only available for the torch backend, not {name!r}")
    if not checkpoint:
        raise ValueError(f"the {name} backend needs its exported files: pass checkpoint= (an ONNX manifest or "
                         f"folder for onnxruntime, an engine folder for tensorrt)")
    module, cls = EXPORTED_BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(checkpoint, device=device, model=model, **options)
