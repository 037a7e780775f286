"""The real ONNX export path (``engine.export_onnx``) on the shipped ``tiny`` weights at full size, and its tensor
names following what ``encode`` and ``decode`` return (the model may grow outputs: the export has no list of its
own)."""
import json

import pytest
import torch

from engine.export_onnx import export, named_tensors, verify
from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.core.config import get_config
from nut_ros.core.model import FrameCache, NutModel
from nut_ros.pipeline.backends import default_checkpoint

pytest.importorskip("onnxruntime")
# onnxruntime fuses and reorders float32 ops; 1e-4 leaves headroom for that, not for a wrong op
TOL = 1e-4


def test_shipped_tiny_exports_and_matches_onnxruntime(tmp_path):
    model = load_checkpoint(default_checkpoint("tiny"))
    manifest_path = export(model, tmp_path, parts=("encoder", "decoder"))
    graphs = json.loads(manifest_path.read_text())["graphs"]
    h, w = model.config.image_size
    with torch.no_grad():
        cache = named_tensors(model.encode(torch.rand(1, 3, h, w), torch.rand(1, model.config.depth_channels, h, w)))
    assert list(graphs["encoder"]["outputs"]) == list(cache)  # FrameCache's fields, in order
    inputs = [f"{side}_{n}" for side in ("prev", "cur") for n in cache]
    # in order; a field this decoder ignores is not an input of its graph (tiny has no learned motion features)
    assert list(graphs["decoder"]["inputs"]) == [n for n in inputs if n in graphs["decoder"]["inputs"]]
    assert {"prev_tokens", "cur_tokens", "prev_features", "cur_xyz"} <= set(graphs["decoder"]["inputs"])
    assert list(graphs["decoder"]["outputs"]) == ["xyz", "velocity", "rgb", "opacity", "scale", "gamma", "t0"]
    errors = verify(model, manifest_path)
    assert set(errors) == {"encoder", "decoder"}
    assert max(max(e.values()) for e in errors.values()) < TOL, errors


class _GrownModel(NutModel):
    """``encode`` returns a dict with an output the model's own cache has not got (as a new head would add);
    ``decode`` returns the Gaussians' fields plus one more."""

    def encode(self, rgb, disp):
        cache = super().encode(rgb, disp)
        return {**named_tensors(cache), "extra": cache.xyz.mean(dim=1, keepdim=True)}

    def decode(self, prev, cur):
        pick = lambda d: FrameCache(**{n: d.get(n) for n in FrameCache._fields})  # noqa: E731
        g = super().decode(pick(prev), pick(cur))
        return {**named_tensors(g), "spread": (prev["extra"] - cur["extra"]).abs()}


def test_export_names_follow_what_encode_and_decode_return(tmp_path):
    torch.manual_seed(0)
    model = _GrownModel(get_config("tiny", image_size=(48, 96))).eval()
    manifest_path = export(model, tmp_path, parts=("encoder", "decoder"))
    graphs = json.loads(manifest_path.read_text())["graphs"]
    assert list(graphs["encoder"]["outputs"])[-1] == "extra"
    assert {"prev_extra", "cur_extra"} <= set(graphs["decoder"]["inputs"])
    assert list(graphs["decoder"]["outputs"])[-1] == "spread" and "xyz" in graphs["decoder"]["outputs"]
    errors = verify(model, manifest_path)
    assert max(max(e.values()) for e in errors.values()) < TOL, errors
