"""ONNX export of a model configuration: encoder, decoder and the render-time state graph, static shapes.

Three graphs per configuration and batch size (opset 17, the TorchScript exporter):

* ``<config>.encoder.onnx``  ``input_rgb [B,3,H,W], input_disp [B,Cd,H,W]`` -> the tensors ``NutModel.encode``
  returns (the fields of its :class:`FrameCache`, named as the fields);
* ``<config>.decoder.onnx``  ``prev_*`` and ``cur_*`` (the encoder's outputs) -> the tensors ``NutModel.decode``
  returns (the 2N :class:`Gaussians` fields);
* ``<config>.render.onnx``   Gaussians fields (``g_xyz``, ...) + pair time ``t [1]`` -> ``Gaussians.at(t)``, then the
  custom node ``nut_ros::OrthoRasterizer`` (-> ``rgb, depth, alpha``), which TensorRT maps onto the plugin of
  :mod:`engine.plugins.ortho_raster_plugin`; with ``--no-rasterizer`` it is ``<config>.state.onnx`` and stops at the
  rasterizer's inputs (``means, scales, rotations, opacities, colors``): TensorRT-RTX's ONNX parser aborts on
  custom-domain nodes, and onnxruntime has no kernel for it.

The graphs' tensors are named from what ``encode`` and ``decode`` return (a NamedTuple, a dataclass or a dict of
tensors; ``None`` fields are left out), so the export follows the model's outputs without a list of its own. An
input the graph does not use (e.g. a cache field only another configuration's decoder reads) is dropped by the
exporter; the manifest lists what each graph really takes. A
``<config>.manifest.json`` lists the files, their tensors (in order) and sha256, and the model configuration; the
ONNX Runtime and TensorRT backends and the engine builder read it and address tensors by name. An export of some
``--parts`` keeps the graphs the folder's manifest lists of the others when that manifest is of the same export
(model configuration, weights, batch, rasterizer node and attributes); otherwise the manifest starts anew. ``--verify``
runs every graph without custom nodes in onnxruntime and prints the max abs error of each output against PyTorch.

    python -m engine.export_onnx --config tiny --random-init --out build/onnx --verify
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from engine.build_engine import sha256
from engine.plugins.ortho_raster_plugin import (DEFAULT_MAX_PAIRS_PER_GAUSSIAN, ONNX_DOMAIN, OUTPUTS, PLUGIN_NAME,
                                                PLUGIN_NAMESPACE, PLUGIN_VERSION, RasterAttributes)
from nut_ros.core.gaussians import Gaussians, RasterInputs
from nut_ros.core.model import NutModel
from nut_ros.pipeline.backends import load_torch_model
from nut_ros.pipeline.onnx_backend import ENCODER_INPUTS
from nut_ros.render._torch_impl import rasterize_torch

OPSET = 17
GAUSSIAN_FIELDS = tuple(f.name for f in fields(Gaussians))
RASTER_FIELDS = RasterInputs._fields


def named_tensors(value: Any) -> dict[str, Tensor]:
    """The tensors of a NamedTuple, dataclass or dict by field name, in field order (``None`` fields left out)."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        items = zip(value._fields, value)
    elif dataclasses.is_dataclass(value):
        items = ((f.name, getattr(value, f.name)) for f in fields(value))
    elif isinstance(value, dict):
        items = value.items()
    else:
        raise TypeError(f"cannot name the tensors of a {type(value).__name__}: return a NamedTuple, a dataclass or "
                        f"a dict of tensors")
    return {name: t for name, t in items if t is not None}


def rebuild(template: Any, tensors: dict[str, Tensor]) -> Any:
    """An object like ``template`` (NamedTuple, dataclass or dict) holding ``tensors`` (missing fields: ``None``)."""
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(**{name: tensors.get(name) for name in template._fields})
    if dataclasses.is_dataclass(template):
        return dataclasses.replace(template, **{f.name: tensors.get(f.name) for f in fields(template)})
    return dict(tensors)


class EncoderGraph(nn.Module):
    """``rgb, disp`` -> the tensors of ``model.encode``."""

    def __init__(self, model: NutModel):
        super().__init__()
        self.model = model

    def forward(self, rgb: Tensor, disp: Tensor) -> tuple[Tensor, ...]:
        return tuple(named_tensors(self.model.encode(rgb, disp)).values())


class DecoderGraph(nn.Module):
    """The two frames' encoder tensors (``template``: an ``encode`` output giving their structure and names) ->
    the tensors of ``model.decode``."""

    def __init__(self, model: NutModel, template: Any):
        super().__init__()
        self.model = model
        self.template = template
        self.names = list(named_tensors(template))

    def forward(self, *caches: Tensor) -> tuple[Tensor, ...]:
        k = len(self.names)
        prev, cur = (rebuild(self.template, dict(zip(self.names, part))) for part in (caches[:k], caches[k:]))
        return tuple(named_tensors(self.model.decode(prev, cur)).values())


class OrthoRasterizerOp(torch.autograd.Function):
    """The rasterizer as one ONNX node; runs the torch rasterizer when traced (for the output shapes)."""

    @staticmethod
    def forward(ctx, means, scales, rotations, opacities, colors, attributes: RasterAttributes):
        bg = torch.tensor(attributes.background, dtype=means.dtype)
        with warnings.catch_warnings():  # traced for its output shapes only; its internals become the custom node
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return rasterize_torch(means, scales, rotations, opacities, colors, attributes.height, attributes.width,
                                   bg, attributes.lowpass)

    @staticmethod
    def symbolic(g, means, scales, rotations, opacities, colors, attributes: RasterAttributes):
        a = attributes
        outs = g.op(f"{ONNX_DOMAIN}::{PLUGIN_NAME}", means, scales, rotations, opacities, colors,
                    height_i=a.height, width_i=a.width, tile_size_i=a.tile_size, background_f=list(a.background),
                    lowpass_f=a.lowpass, max_pairs_per_gaussian_i=a.max_pairs_per_gaussian,
                    plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE, outputs=len(OUTPUTS))
        batch = means.type().sizes()[0]
        for out, channels in zip(outs, (3, 1, 1)):
            out.setType(means.type().with_sizes([batch, channels, a.height, a.width]))
        return outs


class StateGraph(nn.Module):
    """``Gaussians.at(t)``, then (with ``attributes``) the rasterizer node."""

    def __init__(self, attributes: RasterAttributes | None):
        super().__init__()
        self.attributes = attributes

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        *state, t = tensors
        inputs = Gaussians(*state).at(t)
        if self.attributes is None:
            return tuple(inputs)
        return OrthoRasterizerOp.apply(*inputs, self.attributes)


@dataclasses.dataclass
class Examples:
    """Deterministic inputs of the three graphs (two encoded random frames, their decoded pair, t = 0.5) and the
    tensor names of each graph."""

    inputs: dict[str, tuple[Tensor, ...]]
    names: dict[str, tuple[list[str], list[str]]]
    cache: Any  # an ``encode`` output: the structure the decoder graph rebuilds


def examples(model: NutModel, batch: int, rasterizer: bool, seed: int = 0) -> Examples:
    gen = torch.Generator().manual_seed(seed)
    h, w = model.config.image_size
    frames = [(torch.rand(batch, 3, h, w, generator=gen), torch.rand(batch, model.config.depth_channels, h, w,
                                                                      generator=gen)) for _ in range(2)]
    with torch.no_grad():
        prev, cur = (model.encode(*f) for f in frames)
        decoded = model.decode(prev, cur)
    prev_t, cur_t, out_t = named_tensors(prev), named_tensors(cur), named_tensors(decoded)
    gaussians = {n: out_t[n] for n in GAUSSIAN_FIELDS}  # the state graph's input: the pair's Gaussians
    inputs = {"encoder": frames[1], "decoder": (*prev_t.values(), *cur_t.values()),
              "state": (*gaussians.values(), torch.tensor([0.5]))}
    names = {"encoder": (list(ENCODER_INPUTS), list(cur_t)),
             "decoder": ([f"prev_{n}" for n in prev_t] + [f"cur_{n}" for n in cur_t], list(out_t)),
             "state": ([f"g_{n}" for n in gaussians] + ["t"], list(OUTPUTS if rasterizer else RASTER_FIELDS))}
    return Examples(inputs, names, cur)


def weights_sha256(model: nn.Module) -> str:
    """sha256 of a model's state (names and values), which tells exports of other weights apart."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def previous_graphs(manifest_path: Path, header: dict) -> dict:
    """The graphs listed in the manifest at ``manifest_path`` when everything else in it equals ``header`` (the
    same export); otherwise (or without a manifest) none."""
    if not manifest_path.is_file():
        return {}
    old = json.loads(manifest_path.read_text())
    graphs = old.pop("graphs")
    return graphs if old == json.loads(json.dumps(header)) else {}


def export(model: NutModel, out_dir: str | Path, batch: int = 1, rasterizer: bool = True,
           max_pairs_per_gaussian: int = DEFAULT_MAX_PAIRS_PER_GAUSSIAN, background=(0.5, 0.5, 0.5),
           parts: tuple[str, ...] = ("encoder", "decoder", "state")) -> Path:
    """Export the graphs ``parts`` of ``model`` into ``out_dir``; returns the manifest path (which keeps the graphs
    of other parts it listed of the same export: :func:`previous_graphs`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    cfg = model.config
    h, w = cfg.image_size
    attributes = RasterAttributes(h, w, tuple(background), lowpass=cfg.raster_lowpass,
                                  max_pairs_per_gaussian=max_pairs_per_gaussian)
    ex = examples(model, batch, rasterizer)
    modules = {"encoder": EncoderGraph(model), "decoder": DecoderGraph(model, ex.cache),
               "state": StateGraph(attributes if rasterizer else None)}
    header = {"config": cfg.to_dict(), "weights_sha256": weights_sha256(model), "batch": batch, "opset": OPSET,
              "rasterizer_node": rasterizer,
              "raster_attributes": {k: v.tolist() for k, v in attributes.fields().items()}}
    manifest_path = out_dir / f"{cfg.name}.manifest.json"
    manifest = {**header, "graphs": previous_graphs(manifest_path, header)}
    for part in parts:
        module = modules[part]
        stem = "render" if part == "state" and rasterizer else part
        path = out_dir / f"{cfg.name}.{stem}.onnx"
        in_names, out_names = ex.names[part]
        with torch.no_grad():
            torch.onnx.export(module.eval(), ex.inputs[part], str(path), opset_version=OPSET, dynamo=False,
                              input_names=in_names, output_names=out_names, do_constant_folding=True,
                              custom_opsets={ONNX_DOMAIN: 1} if part == "state" and rasterizer else None)
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
        manifest["graphs"][part] = {
            "file": path.name, "sha256": sha256(path),
            "inputs": {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input},
            "outputs": {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output},
            "custom_node": part == "state" and rasterizer,
        }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest_path


def verify(model: NutModel, manifest_path: str | Path, providers=("CPUExecutionProvider",)) -> dict[str, dict]:
    """Max abs error of every output of every graph without a custom node: onnxruntime vs PyTorch."""
    import onnxruntime as ort

    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    model = model.float().eval()
    ex = examples(model, manifest["batch"], rasterizer=False)
    modules = {"encoder": EncoderGraph(model), "decoder": DecoderGraph(model, ex.cache), "state": StateGraph(None)}
    errors = {}
    for part, info in manifest["graphs"].items():
        if info["custom_node"]:
            continue
        session = ort.InferenceSession(str(manifest_path.parent / info["file"]), providers=list(providers))
        named = dict(zip(ex.names[part][0], ex.inputs[part]))
        feeds = {name: named[name].numpy() for name in info["inputs"]}  # the exporter drops inputs a graph ignores
        got = session.run(list(info["outputs"]), feeds)
        with torch.no_grad():
            want = modules[part].eval()(*ex.inputs[part])
        errors[part] = {name: float(np.abs(g - e.numpy()).max()) for name, g, e in zip(info["outputs"], got, want)}
    return errors


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny", help="model configuration (streamsplat, small, tiny)")
    p.add_argument("--checkpoint", help="weights (.safetensors); default: the shipped weights of --config")
    p.add_argument("--random-init", action="store_true", help="export a randomly initialised model (testing)")
    p.add_argument("--out", default="build/onnx", help="export folder (default build/onnx), which configurations "
                                                       "may share: every file is named by its configuration")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--no-rasterizer", action="store_true", help="stop the render graph at the rasterizer inputs")
    p.add_argument("--max-pairs-per-gaussian", type=int, default=DEFAULT_MAX_PAIRS_PER_GAUSSIAN)
    parts = ["encoder", "decoder", "state"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts, help="graphs to export (default all)")
    p.add_argument("--verify", action="store_true", help="compare onnxruntime with PyTorch")
    args = p.parse_args(argv)
    model = load_torch_model(args.config, args.checkpoint, args.random_init)
    manifest = export(model, args.out, args.batch, not args.no_rasterizer, args.max_pairs_per_gaussian,
                      parts=tuple(args.parts))
    print(f"wrote {manifest}")
    if args.verify:
        for part, errs in verify(model, manifest).items():
            print(part, " ".join(f"{k}={v:.2e}" for k, v in errs.items()))


if __name__ == "__main__":
    main()
