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

#: the encoder graph's inputs, image first (named by ``engine/export_onnx.py``; prefixed: the cache has an ``rgb``
#: output and ONNX names are unique); both exported backends feed them by these names
ENCODER_INPUTS = ("input_rgb", "input_disp")


def find_listed(path: str | Path, suffix: str, model: str | None, writer: str) -> Path:
    """``path`` itself if it is a file; else, in the folder ``path``, its only ``*<suffix>`` file or, where it holds
    several (one per model configuration: the writers' default folders are shared by configurations),
    ``<model><suffix>``. ``writer`` names the command that writes these files (for the errors)."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}")) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no *{suffix} in {path}: write it with {writer}")
    if len(found) == 1:
        return found[0]
    if model and path / f"{model}{suffix}" in found:
        return path / f"{model}{suffix}"
    which = f"none is {model}{suffix}" if model else "no model configuration was named"
    raise FileNotFoundError(f"{path} holds {', '.join(f.name for f in found)} and {which}: pass the model "
                            f"configuration (make_backend's model, the node's model parameter) or the file itself")


def find_manifest(path: str | Path, model: str | None = None) -> Path:
    """The export manifest at ``path``: a ``*.manifest.json`` file, or found in the folder ``path`` (its only one,
    else ``<model>.manifest.json``: :func:`find_listed`)."""
    return find_listed(path, ".manifest.json", model, "python -m engine.export_onnx")


def onnx_provider(device: str) -> tuple[str, dict]:
    """onnxruntime's execution provider and its options for a torch-style device string: ``cpu``, ``cuda`` or
    ``cuda:N`` (the CUDA provider on GPU ``N``); any other device is refused (``ValueError``)."""
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"the onnxruntime backend runs on cpu, cuda or cuda:N, not {device!r}") from error
    if parsed.type == "cpu":
        return "CPUExecutionProvider", {}
    if parsed.type == "cuda":
        return "CUDAExecutionProvider", {"device_id": parsed.index or 0}
    raise ValueError(f"the onnxruntime backend runs on cpu, cuda or cuda:N, not {device!r}")


def require_encoder_decoder(listed, source: Path, command: str) -> None:
    """Refuse (``ValueError``) a manifest or engine listing ``source`` whose ``listed`` graphs lack the encoder or
    the decoder, naming the missing ones and ``command``, which makes them."""
    missing = [part for part in ("encoder", "decoder") if part not in listed]
    if missing:
        raise ValueError(f"{source} has no {' and no '.join(missing)}; the backend needs the encoder and the decoder "
                         f"({command})")


def require_encoder_inputs(names, source: Path | str, command: str) -> None:
    """Refuse (``ValueError``) an encoder graph or engine ``source`` whose input ``names`` are not among
    :data:`ENCODER_INPUTS` with the image's among them: the backends feed the inputs by these names (``command``
    exports the encoder again)."""
    if ENCODER_INPUTS[0] not in names or not set(names) <= set(ENCODER_INPUTS):
        raise ValueError(f"{source}: the encoder's inputs are {list(names)}, but the backend feeds "
                         f"{list(ENCODER_INPUTS)} (image, disparity) by name, as engine/export_onnx.py names them; "
                         f"export the encoder again ({command})")


def keep_exported_learned_motion(config: ModelConfig, enabled: bool) -> None:
    """An exported decoder (ONNX graph, TensorRT engine) has a ``"learned"`` model's flow built in: refuse to leave
    it out (``ValueError``)."""
    if not enabled and config.motion_prior == "learned":
        raise ValueError("the exported decoder includes the learned flow; use motion_prior 'auto' or 'learned' "
                         "with this model, or export a model without the motion head")


class OnnxBackend:
    """Encoder and decoder in onnxruntime (CPU, or CUDA where onnxruntime-gpu is installed); torch rendering."""

    name = "onnxruntime"

    def __init__(self, manifest: str | Path, device: str = "cpu", threads: int | None = None,
                 model: str | None = None):
        import onnxruntime as ort

        provider, provider_options = onnx_provider(device)
        self.manifest_path = find_manifest(manifest, model)
        self.manifest = json.loads(self.manifest_path.read_text())
        if self.manifest["batch"] != 1:
            raise ValueError(f"the pipeline needs graphs exported with batch 1, got {self.manifest['batch']}")
        graphs, folder = self.manifest["graphs"], self.manifest_path.parent
        export = f"python -m engine.export_onnx --config {self.manifest['config']['name']} --out {folder}"
        require_encoder_decoder(graphs, self.manifest_path, f"{export} --parts encoder decoder")
        require_encoder_inputs(graphs["encoder"]["inputs"], self.manifest_path, f"{export} --parts encoder")
        self.model_config = ModelConfig.from_dict(self.manifest["config"])
        if provider not in ort.get_available_providers():
            raise RuntimeError(f"onnxruntime here has no {provider} (available: {ort.get_available_providers()})")
        self._device = device
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._sessions = {part: ort.InferenceSession(str(folder / graphs[part]["file"]),
                                                     options, providers=[(provider, provider_options)])
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
        return self._run("encoder", dict(zip(ENCODER_INPUTS, (rgb, disp))))  # those the graph has

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
