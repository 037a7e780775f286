"""Engine naming, stale-engine refusal (engine/build_engine.py) and the plugin's attribute/workspace contract."""
import json

import numpy as np
import pytest

from engine.build_engine import StaleEngineError, check_engine, engine_path, sidecar_path
from engine.plugins.ortho_raster_plugin import RasterAttributes
from engine.plugins.raster_launcher import Workspace
from nut_ros.render.kernel_config import CONFIG

GPU = "nvidia-h100-80gb-hbm3-sm90"


def _fake_build(tmp_path, onnx_bytes=b"graph-v1", trt_version="10.13.0", gpu=GPU):
    onnx_path = tmp_path / "tiny.decoder.onnx"
    onnx_path.write_bytes(onnx_bytes)
    engine = engine_path(tmp_path, "tiny", "decoder", "fp16", gpu, trt_version)
    engine.write_bytes(b"serialized")
    from engine.build_engine import sha256

    sidecar_path(engine).write_text(json.dumps({"onnx_sha256": sha256(onnx_path), "trt_version": trt_version,
                                                "gpu": gpu}))
    return onnx_path, engine


def test_engine_name_carries_config_part_precision_gpu_and_version(tmp_path):
    path = engine_path(tmp_path, "small", "encoder", "fp16", GPU, "10.13.0")
    assert path.name == f"small.encoder.fp16.{GPU}.trt10.13.0.engine"
    assert sidecar_path(path).name == f"small.encoder.fp16.{GPU}.trt10.13.0.json"


def test_matching_engine_is_accepted(tmp_path):
    onnx_path, engine = _fake_build(tmp_path)
    assert check_engine(engine, onnx_path, "10.13.0", GPU)["gpu"] == GPU


@pytest.mark.parametrize("change, message", [
    ("onnx", "onnx_sha256"), ("trt", "trt_version: engine built for '10.13.0', now '10.14.1'"), ("gpu", "gpu")])
def test_stale_engine_is_refused(tmp_path, change, message):
    onnx_path, engine = _fake_build(tmp_path)
    if change == "onnx":
        onnx_path.write_bytes(b"graph-v2")
    with pytest.raises(StaleEngineError, match=message):
        check_engine(engine, onnx_path, "10.14.1" if change == "trt" else "10.13.0",
                     "nvidia-a100-sm80" if change == "gpu" else GPU)


def test_missing_sidecar_is_refused(tmp_path):
    onnx_path, engine = _fake_build(tmp_path)
    sidecar_path(engine).unlink()
    with pytest.raises(StaleEngineError, match="missing"):
        check_engine(engine, onnx_path, "10.13.0", GPU)


def test_plugin_attributes_round_trip_and_validate():
    attrs = RasterAttributes(288, 512, (0.1, 0.2, 0.3), lowpass=0.1, max_pairs_per_gaussian=4)
    fields = attrs.fields()
    assert {k: v.dtype for k, v in fields.items()} == {
        "height": np.int32, "width": np.int32, "tile_size": np.int32, "background": np.float32,
        "lowpass": np.float32, "max_pairs_per_gaussian": np.int32}
    again = RasterAttributes.from_fields(fields)
    assert again.height == 288 and again.width == 512 and again.max_pairs_per_gaussian == 4
    assert again.lowpass == attrs.lowpass == pytest.approx(0.1)
    del fields["lowpass"]  # engines exported before the field existed render with the reference's 0.3
    assert RasterAttributes.from_fields(fields).lowpass == pytest.approx(0.3)
    assert np.allclose(again.background, (0.1, 0.2, 0.3))
    assert attrs.capacity(2, 1000) == 8000 and attrs.capacity(1, 2**30) == 2**31 - 1
    with pytest.raises(ValueError, match="tile_size"):
        RasterAttributes(288, 512, tile_size=32)
    with pytest.raises(ValueError, match="invalid"):
        RasterAttributes(288, 512, lowpass=-0.1)


def test_workspace_layout_matches_the_kernel_configuration():
    assert CONFIG["ORTHO_TILE"] == 16 and CONFIG["ORTHO_BLOCK"] == 256
    ws = Workspace.layout(2, 1000, 288, 512, 5000)
    assert ws.tiles == 2 * 32 * 18 and ws.capacity == 5000
    offsets = [ws.xy, ws.depth, ws.conic, ws.rect, ws.tile_count, ws.tile_start, ws.tile_cursor, ws.total, ws.keys]
    assert offsets == sorted(offsets) and all(o % CONFIG["ORTHO_ALIGN"] == 0 for o in offsets)
    assert ws.depth - ws.xy >= 2000 * 8 and ws.rect - ws.conic >= 2000 * 16 and ws.nbytes - ws.keys >= 5000 * 8


def test_the_tensorrt_render_engine_takes_only_its_own_gaussian_count_and_background():
    """The render engine is built for a pair's Gaussians (a fixed 2N) and its own background: a stream's first frame
    (N alone), a backend without a render engine and another background go through the rasterizer's kernels
    launched directly (pycuda and TensorRT are not installed here; the routing is TensorRTBackend.render's)."""
    from engine.trt_backend import render_route

    grey = np.full(3, 0.5, np.float32)
    assert render_route(8, grey, 8, (0.5, 0.5, 0.5)) == "engine"  # a pair
    assert render_route(8, grey, 4, (0.5, 0.5, 0.5)) == "direct"  # a first frame: N = 4
    assert render_route(None, None, 8, (0.5, 0.5, 0.5)) == "direct"  # no render engine
    assert render_route(8, grey, 8, (0.0, 0.0, 0.0)) == "direct, other background"
    assert render_route(8, grey, 8, np.full(3, 0.5, np.float64)) == "engine"  # compared as float32, as built


def test_the_gpu_tag_is_pycudas_reading_and_only_the_builder_asks_for_gpu(monkeypatch, tmp_path):
    """The tag comes from pycuda's driver (what the TensorRT backend has; torch here is a CPU build); without any
    CUDA device the builder's error names its --gpu option, the tag's own error (the backend's) no option."""
    import sys
    from types import ModuleType, SimpleNamespace

    import torch

    from engine.build_engine import build_all, gpu_tag

    driver = ModuleType("pycuda.driver")
    driver.init, driver.Error = lambda: None, RuntimeError
    driver.Device = lambda index: SimpleNamespace(name=lambda: "NVIDIA H100 80GB HBM3",
                                                  compute_capability=lambda: (9, 0))
    monkeypatch.setitem(sys.modules, "pycuda", SimpleNamespace(driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    assert gpu_tag() == GPU
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)  # pycuda not installed: torch's reading, here none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device") as error:
        gpu_tag()
    assert "--gpu" not in str(error.value)
    manifest = tmp_path / "tiny.manifest.json"
    manifest.write_text(json.dumps({"config": {"name": "tiny"}, "graphs": {}}))
    with pytest.raises(RuntimeError, match="no CUDA device.*--gpu <tag>"):
        build_all(manifest, trt=SimpleNamespace(__version__="10.13.0"))
