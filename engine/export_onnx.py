"""ONNX export of a model configuration: encoder, decoder and the render-time state graph, static shapes.

Three graphs per configuration and batch size (opset 17, the TorchScript exporter):

* ``<config>.encoder.onnx``  ``rgb [B,3,H,W], disp [B,Cd,H,W]`` -> the :class:`FrameCache` fields;
* ``<config>.decoder.onnx``  ``prev_*`` and ``cur_*`` FrameCache fields -> the 2N :class:`Gaussians` fields;
* ``<config>.render.onnx``   Gaussians fields (``g_xyz``, ...) + pair time ``t [1]`` -> ``Gaussians.at(t)``, then the
  custom node ``nut_ros::OrthoRasterizer`` (-> ``rgb, depth, alpha``), which TensorRT maps onto the plugin of
  :mod:`engine.plugins.ortho_raster_plugin`; with ``--no-rasterizer`` it is ``<config>.state.onnx`` and stops at the
  rasterizer's inputs (``means, scales, rotations, opacities, colors``): TensorRT-RTX's ONNX parser aborts on
  custom-domain nodes, and onnxruntime has no kernel for it.

A ``<config>.manifest.json`` lists the files, their tensors and sha256, and the model configuration; the ONNX
Runtime backend and the engine builder read it. ``--verify`` runs every graph without custom nodes in onnxruntime
and prints the max abs error of each output against PyTorch.

    python -m engine.export_onnx --config tiny --random-init --out build/onnx --verify
"""
from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from engine.plugins.ortho_raster_plugin import (ONNX_DOMAIN, OUTPUTS, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION,
                                                RasterAttributes)
from nut_ros.core.gaussians import Gaussians, RasterInputs
from nut_ros.core.model import FrameCache, NutModel
from nut_ros.render._torch_impl import rasterize_torch

OPSET = 17
CACHE_FIELDS = FrameCache._fields
GAUSSIAN_FIELDS = tuple(f.name for f in fields(Gaussians))
RASTER_FIELDS = RasterInputs._fields


class EncoderGraph(nn.Module):
    def __init__(self, model: NutModel):
        super().__init__()
        self.model = model

    def forward(self, rgb: Tensor, disp: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.encode(rgb, disp))


class DecoderGraph(nn.Module):
    def __init__(self, model: NutModel):
        super().__init__()
        self.model = model

    def forward(self, *caches: Tensor) -> tuple[Tensor, ...]:
        k = len(CACHE_FIELDS)
        g = self.model.decode(FrameCache(*caches[:k]), FrameCache(*caches[k:]))
        return tuple(getattr(g, name) for name in GAUSSIAN_FIELDS)


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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def example_inputs(model: NutModel, batch: int, seed: int = 0) -> dict[str, tuple[Tensor, ...]]:
    """Deterministic inputs of the three graphs (two encoded random frames, their decoded pair, t = 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = model.config.image_size
    frames = [(torch.rand(batch, 3, h, w, generator=gen), torch.rand(batch, model.config.depth_channels, h, w,
                                                                      generator=gen)) for _ in range(2)]
    with torch.no_grad():
        prev, cur = (model.encode(*f) for f in frames)
        gaussians = model.decode(prev, cur)
    return {"encoder": frames[1], "decoder": (*prev, *cur),
            "state": (*(getattr(gaussians, n) for n in GAUSSIAN_FIELDS), torch.tensor([0.5]))}


def graph_names(part: str, rasterizer: bool) -> tuple[list[str], list[str]]:
    if part == "encoder":
        return ["rgb", "disp"], list(CACHE_FIELDS)
    if part == "decoder":
        return [f"prev_{n}" for n in CACHE_FIELDS] + [f"cur_{n}" for n in CACHE_FIELDS], list(GAUSSIAN_FIELDS)
    return [f"g_{n}" for n in GAUSSIAN_FIELDS] + ["t"], list(OUTPUTS if rasterizer else RASTER_FIELDS)


def export(model: NutModel, out_dir: str | Path, batch: int = 1, rasterizer: bool = True,
           max_pairs_per_gaussian: int = 16, background=(0.5, 0.5, 0.5),
           parts: tuple[str, ...] = ("encoder", "decoder", "state")) -> Path:
    """Export the graphs ``parts`` of ``model`` into ``out_dir``; returns the manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    cfg = model.config
    h, w = cfg.image_size
    attributes = RasterAttributes(h, w, tuple(background), lowpass=cfg.raster_lowpass,
                                  max_pairs_per_gaussian=max_pairs_per_gaussian)
    inputs = example_inputs(model, batch)
    modules = {"encoder": EncoderGraph(model), "decoder": DecoderGraph(model),
               "state": StateGraph(attributes if rasterizer else None)}
    manifest = {"config": cfg.to_dict(), "batch": batch, "opset": OPSET, "rasterizer_node": rasterizer,
                "raster_attributes": {k: v.tolist() for k, v in attributes.fields().items()}, "graphs": {}}
    for part in parts:
        module = modules[part]
        stem = "render" if part == "state" and rasterizer else part
        path = out_dir / f"{cfg.name}.{stem}.onnx"
        in_names, out_names = graph_names(part, rasterizer and part == "state")
        with torch.no_grad():
            torch.onnx.export(module.eval(), inputs[part], str(path), opset_version=OPSET, dynamo=False,
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
    manifest_path = out_dir / f"{cfg.name}.manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest_path


def verify(model: NutModel, manifest_path: str | Path, providers=("CPUExecutionProvider",)) -> dict[str, dict]:
    """Max abs error of every output of every graph without a custom node: onnxruntime vs PyTorch."""
    import onnxruntime as ort

    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    model = model.float().eval()
    inputs = example_inputs(model, manifest["batch"])
    modules = {"encoder": EncoderGraph(model), "decoder": DecoderGraph(model), "state": StateGraph(None)}
    errors = {}
    for part, info in manifest["graphs"].items():
        if info["custom_node"]:
            continue
        session = ort.InferenceSession(str(manifest_path.parent / info["file"]), providers=list(providers))
        feeds = {name: t.numpy() for name, t in zip(info["inputs"], inputs[part])}
        got = session.run(list(info["outputs"]), feeds)
        with torch.no_grad():
            want = modules[part].eval()(*inputs[part])
        errors[part] = {name: float(np.abs(g - e.numpy()).max()) for name, g, e in zip(info["outputs"], got, want)}
    return errors


def load_model(config: str, checkpoint: str | None, random_init: bool) -> NutModel:
    from nut_ros.pipeline.backends import load_torch_model

    return load_torch_model(config, checkpoint, random_init)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny", help="model configuration (streamsplat, small, tiny)")
    p.add_argument("--checkpoint", help="weights (.safetensors); default: the shipped weights of --config")
    p.add_argument("--random-init", action="store_true", help="export a randomly initialised model (testing)")
    p.add_argument("--out", default="build/onnx")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--no-rasterizer", action="store_true", help="stop the render graph at the rasterizer inputs")
    p.add_argument("--max-pairs-per-gaussian", type=int, default=16)
    parts = ["encoder", "decoder", "state"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts, help="graphs to export (default all)")
    p.add_argument("--verify", action="store_true", help="compare onnxruntime with PyTorch")
    args = p.parse_args(argv)
    model = load_model(args.config, args.checkpoint, args.random_init)
    manifest = export(model, args.out, args.batch, not args.no_rasterizer, args.max_pairs_per_gaussian,
                      parts=tuple(args.parts))
    print(f"wrote {manifest}")
    if args.verify:
        for part, errs in verify(model, manifest).items():
            print(part, " ".join(f"{k}={v:.2e}" for k, v in errs.items()))


if __name__ == "__main__":
    main()
