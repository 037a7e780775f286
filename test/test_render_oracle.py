"""The pure-torch rasterizer against outputs of the reference CUDA rasterizer and its float64 preprocess port."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nut_ros.core.gaussians import Gaussians, RasterInputs
from nut_ros.render import project_gaussians, rasterize
from nut_ros.render.projection import LOWPASS

TOL = 1e-3  # acceptance bound; observed max error is ~2e-5 (depth), ~5e-6 (colour, alpha)
FIELDS = ("means", "scales", "rotations", "opacities", "colors")
FIXTURES = Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "render_projection_cases.json").read_text())["cases"]


@pytest.fixture(scope="module")
def oracle():
    meta = json.loads((FIXTURES / "render_raster_oracle.json").read_text())
    return load_file(FIXTURES / "render_raster_oracle.safetensors"), meta


@pytest.mark.parametrize("scene", range(5))
def test_raster_oracle_scenes(oracle, scene):
    tensors, meta = oracle
    info = meta["scenes"][scene]
    key = info["key"]
    inputs = RasterInputs(*(tensors[f"{key}.in.{f}"][None] for f in FIELDS))
    out = rasterize(inputs, info["H"], info["W"], impl="torch", lowpass=LOWPASS)
    for name in ("color", "depth", "alpha"):
        err = (getattr(out, name)[0] - tensors[f"{key}.out.{name}"]).abs().max().item()
        assert err <= TOL, (name, err)
    proj = project_gaussians(*inputs[:3], info["H"], info["W"])
    assert torch.equal(proj.radius[0], tensors[f"{key}.out.radii"])
    tiles = (proj.rect_max - proj.rect_min).prod(-1)[0]
    assert int(tiles[proj.visible[0]].sum()) == info["num_rendered"]


def test_render_chain_end_to_end():
    """Decoder outputs -> Gaussians.at(t) -> rasterize reproduces the reference renders at 4 times."""
    d = load_file(FIXTURES / "render_chain_small.safetensors")
    pred = {k[len("in.pred_gs."):]: v for k, v in d.items() if k.startswith("in.pred_gs.")}
    gaussians = Gaussians.from_reference(pred, tuple(d["in.anchor_time"].tolist()))
    for i, t in enumerate(d["in.timestamps"][0]):
        out = rasterize(gaussians.at(t), 72, 128, impl="torch", lowpass=LOWPASS)
        for name in ("color", "depth", "alpha"):
            err = (getattr(out, name) - d[f"chain.out.{name}"][:, i]).abs().max().item()
            assert err <= TOL, (i, name, err)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_orthographic_projection_cases(case):
    i, o = case["inputs"], case["outputs"]
    t64 = lambda v: torch.tensor(v, dtype=torch.float64)[None, None]  # noqa: E731
    proj = project_gaussians(t64(i["mean_world"]), t64(i["scale"]), t64(i["rot_wxyz"]), i["H"], i["W"])
    assert bool(proj.visible[0, 0]) == o["rendered"]
    assert int(proj.radius[0, 0]) == o["radius_returned"]
    if o["rect_min"] is not None:
        assert proj.rect_min[0, 0].tolist() == o["rect_min"] and proj.rect_max[0, 0].tolist() == o["rect_max"]
    if o["pixel_center_uv"] is None:
        return
    assert torch.allclose(proj.uv[0, 0], t64(o["pixel_center_uv"])[0, 0], rtol=0, atol=1e-4)
    assert torch.allclose(proj.cov2d[0, 0], t64(o["cov2D_abc"])[0, 0], rtol=1e-5, atol=1e-9)
    assert torch.allclose(proj.conic[0, 0], t64(o["conic_abc"])[0, 0], rtol=1e-5, atol=1e-9)
    # the same preprocess in float32, as the kernel runs it
    p32 = project_gaussians(t64(i["mean_world"]).float(), t64(i["scale"]).float(), t64(i["rot_wxyz"]).float(),
                            i["H"], i["W"])
    assert int(p32.radius[0, 0]) == o["radius_returned"] and bool(p32.visible[0, 0]) == o["rendered"]
    assert torch.allclose(p32.uv[0, 0].double(), t64(o["pixel_center_uv"])[0, 0], rtol=0, atol=1e-4)
