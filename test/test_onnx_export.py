"""ONNX export (engine/export_onnx.py) and the ONNX Runtime backend, on a reduced tiny configuration (CPU)."""
import json

import onnx
import pytest
import torch

from engine.export_onnx import OPSET, export, sha256, verify
from engine.plugins.ortho_raster_plugin import ONNX_DOMAIN, PLUGIN_NAME, RasterAttributes
from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend

pytest.importorskip("onnxruntime")
SIZE = (96, 192)  # tiny's architecture at a quarter of its pixels: 4,608 Gaussians per frame


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("tiny", image_size=SIZE).eval()
    manifest = export(model, tmp_path_factory.mktemp("onnx"), rasterizer=False)
    return model, manifest


def test_graphs_are_static_opset17_and_match_pytorch(exported):
    model, manifest_path = exported
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["graphs"]) == {"encoder", "decoder", "state"}
    for info in manifest["graphs"].values():
        path = manifest_path.parent / info["file"]
        assert info["sha256"] == sha256(path)
        graph = onnx.load(str(path))
        assert {o.domain: o.version for o in graph.opset_import}[""] == OPSET
        assert all(d > 0 for shape in (*info["inputs"].values(), *info["outputs"].values()) for d in shape)
    assert manifest["graphs"]["decoder"]["outputs"]["xyz"] == [1, 2 * 48 * 96, 3]
    errors = verify(model, manifest_path)
    assert set(errors) == {"encoder", "decoder", "state"}
    worst = {part: max(e.values()) for part, e in errors.items()}
    assert max(worst.values()) < 1e-4, errors


def test_render_graph_carries_the_rasterizer_node(tmp_path):
    torch.manual_seed(1)
    model = build_model("tiny", image_size=SIZE, raster_lowpass=0.1).eval()
    manifest_path = export(model, tmp_path, max_pairs_per_gaussian=8, background=(0.0, 0.25, 1.0), parts=("state",))
    info = json.loads(manifest_path.read_text())["graphs"]["state"]
    assert info["file"] == "tiny.render.onnx" and info["custom_node"]
    graph = onnx.load(str(tmp_path / info["file"]))
    onnx.checker.check_model(graph)
    assert {o.domain for o in graph.opset_import} >= {"", ONNX_DOMAIN}
    (node,) = [n for n in graph.graph.node if n.domain == ONNX_DOMAIN]
    assert node.op_type == PLUGIN_NAME and len(node.input) == 5 and list(node.output) == ["rgb", "depth", "alpha"]
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert values["plugin_version"] == b"1" and values["plugin_namespace"] == b"nut_ros"
    attrs = RasterAttributes.from_fields(values)
    assert attrs == RasterAttributes(*SIZE, (0.0, 0.25, 1.0), lowpass=0.1, max_pairs_per_gaussian=8)
    assert attrs.lowpass == pytest.approx(0.1) and RasterAttributes(*SIZE).lowpass == pytest.approx(0.3)
    assert info["outputs"] == {"rgb": [1, 3, *SIZE], "depth": [1, 1, *SIZE], "alpha": [1, 1, *SIZE]}


def test_onnx_backend_matches_torch_backend(exported):
    from nut_ros.pipeline.onnx_backend import OnnxBackend

    model, manifest_path = exported
    onnx_backend = OnnxBackend(manifest_path.parent, threads=2)
    torch_backend = TorchBackend(model, "cpu", raster_impl="torch")
    assert onnx_backend.model_config == model.config and onnx_backend.name == "onnxruntime"
    g = torch.Generator().manual_seed(3)
    frames = [(torch.rand(1, 3, *SIZE, generator=g), torch.rand(1, 2, *SIZE, generator=g)) for _ in range(2)]
    handles = {b.name: [b.encode(*f) for f in frames] for b in (onnx_backend, torch_backend)}
    gs = {b.name: b.decode(*handles[b.name]) for b in (onnx_backend, torch_backend)}
    for name in ("xyz", "velocity", "rgb", "opacity", "scale", "gamma", "t0"):
        a, b = getattr(gs["onnxruntime"], name), getattr(gs["torch"], name)
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4, name
    static = onnx_backend.static(handles["onnxruntime"][1])
    assert static.count == 48 * 96 and torch.all(static.t0 == 1) and torch.all(static.velocity == 0)
    renders = [b.render(gs[b.name], 0.5) for b in (onnx_backend, torch_backend)]
    for a, b in zip(*renders):
        assert (a - b).abs().max() < 1e-3


def test_onnx_backend_refuses_missing_manifest(tmp_path):
    from nut_ros.pipeline.onnx_backend import OnnxBackend

    with pytest.raises(FileNotFoundError, match="manifest"):
        OnnxBackend(tmp_path)


def test_onnx_backend_cannot_leave_out_an_exported_learned_flow(tmp_path):
    from nut_ros.pipeline.onnx_backend import OnnxBackend

    model = build_model("tiny", image_size=SIZE, motion_prior="learned").eval()
    backend = OnnxBackend(export(model, tmp_path, parts=("encoder", "decoder")))
    backend.use_learned_motion(True)
    with pytest.raises(ValueError, match="includes the learned flow"):
        backend.use_learned_motion(False)
