"""ONNX Runtime backend: the exported encoder and decoder graphs (``engine/export_onnx.py``); renders with
:func:`nut_ros.render.rasterize` (``impl="auto"``: the compiled CPU kernel for its CPU tensors).

Same interface as :class:`nut_ros.pipeline.backends.TorchBackend`. The handle of a frame is the encoder graph's
outputs by name (views of onnxruntime's output arrays), fed back to the decoder graph as ``prev_*`` / ``cur_*``;
the Gaussians are the decoder outputs named as their fields (the manifest lists every name).
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from nut_ros.core.config import ModelConfig
from nut_ros.core.gaussians import Gaussians
from nut_ros.core.model import FrameCache, static_gaussians
from nut_ros.render import RenderOutput, rasterize


def find_manifest(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the single ``*.manifest.json`` in the folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.glob("*.manifest.json")) if path.is_dir() else []
    if len(found) != 1:
        raise FileNotFoundError(f"expected one *.manifest.json written by engine/export_onnx.py in {path}, "
                                f"found {len(found)}")
    return found[0]


def require_encoder_decoder(listed, source: Path, command: str) -> None:
    """Refuse (``ValueError``) a manifest or engine listing ``source`` whose ``listed`` graphs lack the encoder or
    the decoder, naming the missing ones and ``command``, which makes them."""
    missing = [part for part in ("encoder", "decoder") if part not in listed]
    if missing:
        raise ValueError(f"{source} has no {' and no '.join(missing)}; the backend needs the encoder and the decoder "
                         f"({command})")


def keep_exported_learned_motion(config: ModelConfig, enabled: bool) -> None:
    """An exported decoder (ONNX graph, TensorRT engine) has a ``"learned"`` model's flow built in: refuse to leave
    it out (``ValueError``)."""
    if not enabled and config.motion_prior == "learned":
        raise ValueError("the exported decoder includes the learned flow; use motion_prior 'auto' or 'learned' "
                         "with this model, or export a model without the motion head")


class OnnxBackend:
    """Encoder and decoder in onnxruntime (CPU, or CUDA where onnxruntime-gpu is installed); torch rendering."""

    name = "onnxruntime"

    def __init__(self, manifest: str | Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        self.manifest_path = find_manifest(manifest)
        self.manifest = json.loads(self.manifest_path.read_text())
        if self.manifest["batch"] != 1:
            raise ValueError(f"the pipeline needs graphs exported with batch 1, got {self.manifest['batch']}")
        graphs, folder = self.manifest["graphs"], self.manifest_path.parent
        require_encoder_decoder(graphs, self.manifest_path, f"python -m engine.export_onnx --config "
                                f"{self.manifest['config']['name']} --parts encoder decoder --out {folder}")
        self.model_config = ModelConfig.from_dict(self.manifest["config"])
        provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[torch.device(device).type]
        if provider not in ort.get_available_providers():
            raise RuntimeError(f"onnxruntime here has no {provider} (available: {ort.get_available_providers()})")
        self._device = device
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._sessions = {part: ort.InferenceSession(str(folder / graphs[part]["file"]),
                                                     options, providers=[provider])
                          for part in ("encoder", "decoder")}
        self._outputs = {part: list(graphs[part]["outputs"]) for part in self._sessions}
        self._inputs = {part: list(graphs[part]["inputs"]) for part in self._sessions}

    @property
    def device(self) -> str:
        return self._device

    def _run(self, part: str, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        arrays = {name: np.ascontiguousarray(feeds[name].detach().cpu().float().numpy()) for name in self._inputs[part]}
        outputs = self._sessions[part].run(self._outputs[part], arrays)
        return {name: torch.from_numpy(x) for name, x in zip(self._outputs[part], outputs)}

    def encode(self, rgb: Tensor, disp: Tensor) -> dict[str, Tensor]:
        return self._run("encoder", dict(zip(self._inputs["encoder"], (rgb, disp))))  # the graph's two inputs

    def decode(self, prev: dict[str, Tensor], cur: dict[str, Tensor]) -> Gaussians:
        feeds = {f"prev_{name}": t for name, t in prev.items()} | {f"cur_{name}": t for name, t in cur.items()}
        out = self._run("decoder", feeds)
        return Gaussians(**{f.name: out[f.name] for f in fields(Gaussians)})

    def static(self, handle: dict[str, Tensor]) -> Gaussians:
        return static_gaussians(FrameCache(**{name: handle.get(name) for name in FrameCache._fields}), t0=1.0)

    def use_learned_motion(self, enabled: bool) -> None:
        keep_exported_learned_motion(self.model_config, enabled)

    @torch.inference_mode()
    def render(self, gaussians: Gaussians, t: float, background: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderOutput:
        h, w = self.model_config.image_size
        return rasterize(gaussians.at(t), h, w, background=background,
                         lowpass=self.model_config.raster_lowpass)

    def synchronize(self) -> None:
        """Nothing queued: onnxruntime's ``run`` returns when the outputs are ready."""
