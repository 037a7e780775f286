"""Gaussians.at(t) reproduces the arguments the reference renderer hands to its rasterizer."""
from pathlib import Path

import torch
from safetensors.torch import load_file

from nut_ros.core.gaussians import Gaussians

FIXTURE = Path(__file__).parent / "fixtures" / "render_chain_small.safetensors"


def test_at_matches_reference_rasterizer_arguments():
    d = load_file(FIXTURE)
    pred = {k[len("in.pred_gs."):]: v for k, v in d.items() if k.startswith("in.pred_gs.")}
    gaussians = Gaussians.from_reference(pred, tuple(d["in.anchor_time"].tolist()))
    for i, t in enumerate(d["in.timestamps"][0]):
        got = gaussians.at(t)
        ulp = lambda x: torch.finfo(x.dtype).eps * x.abs().clamp(min=1e-30)  # noqa: E731
        ref = d["rast.means3D"][:, i]
        assert ((got.means - ref).abs() <= ulp(ref)).all()
        assert torch.equal(got.scales, d["rast.scales"])
        assert torch.equal(got.rotations, d["rast.rotations"])
        assert torch.equal(got.colors, d["rast.colors_precomp"])
        ref = d["rast.opacities"][:, i]
        assert ((got.opacities - ref).abs() <= ulp(ref)).all()
