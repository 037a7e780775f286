"""ONNX Runtime vs PyTorch on a real frame pair (two frames of the bundled clip) through the exported encoder and
decoder graphs of a model (the learned motion head included): the largest absolute difference of every output.

    python test/bench/onnx_real_pair.py --model small [--weights PATH] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch

from engine.export_onnx import export, named_tensors
from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.pipeline.backends import default_checkpoint
from nut_ros.pipeline.stream import resize_rgb

CLIP = Path(__file__).resolve().parents[2] / "nut_ros" / "data" / "cups"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--frames", type=int, nargs=2, default=(0, 2))
    ap.add_argument("--out", default=None, help="keep the graphs here (default: a temporary folder)")
    args = ap.parse_args()
    model = load_checkpoint(args.weights or default_checkpoint(args.model)).float().eval()
    h, w = model.config.image_size
    rgbs = [resize_rgb(cv2.imread(str(CLIP / f"{i:03d}.jpg"))[..., ::-1].copy(), h, w) for i in args.frames]
    disp = torch.zeros(1, model.config.depth_channels, h, w)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        manifest = json.loads(export(model, out, parts=("encoder", "decoder")).read_text())
        sessions = {p: ort.InferenceSession(str(out / info["file"]), providers=["CPUExecutionProvider"])
                    for p, info in manifest["graphs"].items()}
        with torch.no_grad():
            caches = [model.encode(rgb, disp) for rgb in rgbs]
            gaussians = named_tensors(model.decode(*caches))
        errors: dict[str, float] = {}
        feeds = {}
        for side, rgb, cache in zip(("prev", "cur"), rgbs, caches):
            enc = sessions["encoder"]
            names = [o.name for o in enc.get_outputs()]
            got = dict(zip(names, enc.run(None, {i.name: x.numpy() for i, x in zip(enc.get_inputs(), (rgb, disp))})))
            for name, value in named_tensors(cache).items():
                errors[f"encoder.{name}"] = max(errors.get(f"encoder.{name}", 0.0),
                                                float(np.abs(got[name] - value.numpy()).max()))
                feeds[f"{side}_{name}"] = got[name]
        dec = sessions["decoder"]
        names = [o.name for o in dec.get_outputs()]
        got = dict(zip(names, dec.run(None, {i.name: feeds[i.name] for i in dec.get_inputs()})))
        for name, value in gaussians.items():
            if name in got:
                errors[f"decoder.{name}"] = float(np.abs(got[name] - value.numpy()).max())
    print(json.dumps({"model": args.model, "frames": list(args.frames), "max_abs": errors,
                      "overall": max(errors.values())}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
