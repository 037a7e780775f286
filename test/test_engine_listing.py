"""Engine listings and export manifests on the CPU: partial builds and exports merge, the listing's relative manifest
path, the precision an engine is built at, the TensorRT backend's construction-time refusals and the freeing of its
buffers. TensorRT and pycuda are not installed here: the builder and pycuda's driver are stand-ins that record calls
(``build`` and ``_Buffers`` take them as the real modules)."""
import json
import shutil
import sys
import threading
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from engine.build_engine import build_all, sidecar_path

GPU = "nvidia-h100-80gb-hbm3-sm90"
CONFIG = {"name": "tiny", "image_size": [48, 96]}


def fake_tensorrt(fp16: bool = True) -> ModuleType:
    """The parts of the TensorRT 10 Python API that ``engine.build_engine.build`` calls; ``fp16=False`` is
    TensorRT-RTX's strongly typed bindings (no ``BuilderFlag.FP16``). ``trt.flags`` records the flags set."""
    trt = ModuleType("tensorrt")
    trt.__version__, trt.flags = "10.13.0", []
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.get_plugin_registry = lambda: SimpleNamespace(load_library=lambda path: None)
    trt.BuilderFlag = SimpleNamespace(FP16="FP16") if fp16 else SimpleNamespace()
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    config = SimpleNamespace(set_memory_pool_limit=lambda pool, size: None, set_flag=trt.flags.append)
    network = SimpleNamespace(num_layers=3)
    trt.Builder = lambda logger: SimpleNamespace(create_network=lambda flags: network,
                                                 create_builder_config=lambda: config,
                                                 build_serialized_network=lambda net, cfg: b"serialized")
    trt.OnnxParser = lambda net, logger: SimpleNamespace(parse_from_file=lambda path: True)
    return trt


def write_export(folder, config=CONFIG, batch=1, parts=("encoder", "decoder", "state")):
    """A manifest and stand-in ONNX files (the fake parser does not read them)."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for part in parts:
        (folder / f"tiny.{part}.onnx").write_bytes(f"{part} graph".encode())
        graphs[part] = {"file": f"tiny.{part}.onnx", "custom_node": False}
    manifest = folder / "tiny.manifest.json"
    manifest.write_text(json.dumps({"config": config, "batch": batch, "graphs": graphs}))
    return manifest


def build(manifest, out, parts=None, fp16=True, gpu=GPU):
    trt = fake_tensorrt(fp16)
    path = build_all(manifest, out, parts, trt=trt, gpu=gpu, python_plugin=False, precision="fp16")
    return json.loads(path.read_text()), trt


def test_a_partial_build_keeps_the_engines_of_the_other_parts(tmp_path):
    manifest = write_export(tmp_path / "onnx")
    build(manifest, tmp_path / "engines", ("encoder",))
    listing, _ = build(manifest, tmp_path / "engines", ("decoder",))
    assert set(listing["engines"]) == {"encoder", "decoder"}
    assert listing["engines"]["encoder"]["file"] == f"tiny.encoder.fp16.{GPU}.trt10.13.0.engine"
    write_export(tmp_path / "onnx", config={**CONFIG, "image_size": [96, 192]})  # another model: a new listing
    listing, _ = build(manifest, tmp_path / "engines", ("state",))
    assert set(listing["engines"]) == {"state"}
    listing, _ = build(manifest, tmp_path / "engines", ("decoder",), gpu="nvidia-h200-sm90")  # another GPU
    assert set(listing["engines"]) == {"decoder"} and listing["gpu"] == "nvidia-h200-sm90", "no engines of two GPUs"


def test_the_listing_names_the_manifest_relative_to_its_folder(tmp_path):
    from engine.trt_backend import read_listing, read_manifest

    build(write_export(tmp_path / "deploy" / "onnx"), tmp_path / "deploy" / "engines")
    listing_path = tmp_path / "deploy" / "engines" / "tiny.engines.json"
    assert json.loads(listing_path.read_text())["manifest"] == "../onnx/tiny.manifest.json"
    shutil.move(tmp_path / "deploy", tmp_path / "moved")  # the folder moved: the manifest is still found
    assert read_manifest(*read_listing(tmp_path / "moved" / "engines"))["config"] == CONFIG
    listing = json.loads((tmp_path / "moved" / "engines" / "tiny.engines.json").read_text())
    listing["manifest"] = str(tmp_path / "moved" / "onnx" / "tiny.manifest.json")  # older listings: absolute
    assert read_manifest(tmp_path / "moved" / "engines" / "tiny.engines.json", listing)["batch"] == 1


@pytest.mark.parametrize("fp16", [True, False])
def test_the_engine_is_named_and_recorded_at_the_precision_it_was_built_at(tmp_path, fp16):
    listing, trt = build(write_export(tmp_path / "onnx"), tmp_path / "engines", ("decoder",), fp16=fp16)
    precision = "fp16" if fp16 else "fp32"  # TensorRT-RTX: no FP16 flag, the ONNX graph's fp32
    entry = listing["engines"]["decoder"]
    assert entry["file"] == f"tiny.decoder.{precision}.{GPU}.trt10.13.0.engine" and entry["precision"] == precision
    assert json.loads(sidecar_path(tmp_path / "engines" / entry["file"]).read_text())["precision"] == precision
    assert trt.flags == (["FP16"] if fp16 else [])


def test_the_state_graph_is_built_at_fp32_whatever_the_precision_asked(tmp_path, capsys):
    """``Gaussians.at(t)`` (positions moved by velocity x time, opacities faded with time) stays fp32."""
    from engine.build_engine import main

    listing, trt = build(write_export(tmp_path / "onnx"), tmp_path / "engines")
    assert {part: entry["precision"] for part, entry in listing["engines"].items()} == {
        "encoder": "fp16", "decoder": "fp16", "state": "fp32"}
    assert listing["engines"]["state"]["file"] == f"tiny.state.fp32.{GPU}.trt10.13.0.engine"
    assert trt.flags == ["FP16", "FP16"]  # the encoder's and the decoder's builds only
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "always built at fp32" in " ".join(capsys.readouterr().out.split())


def test_the_tensorrt_backend_refuses_what_it_cannot_run_before_touching_the_gpu(tmp_path):
    from engine.trt_backend import TensorRTBackend

    build(write_export(tmp_path / "onnx", parts=("encoder", "state")), tmp_path / "engines")
    with pytest.raises(ValueError, match="default CUDA device only"):
        TensorRTBackend(tmp_path / "engines", device="cuda:1")
    with pytest.raises(ValueError, match="has no decoder"):
        TensorRTBackend(tmp_path / "engines")
    write_export(tmp_path / "onnx", batch=2)
    with pytest.raises(ValueError, match="batch 1, got 2"):
        TensorRTBackend(tmp_path / "engines")
    (tmp_path / "onnx" / "tiny.manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="tiny.engines.json names the export manifest .*tiny.manifest.json"):
        TensorRTBackend(tmp_path / "engines")


def test_buffers_are_freed_in_their_context_by_whichever_thread_drops_them(monkeypatch):
    """The last reference is dropped on another thread (the node's worker), where no context is current."""
    freed = []

    class Context:
        pushed = False

        def __enter__(self):
            Context.pushed = True

        def __exit__(self, *exc):
            Context.pushed = False

    class Allocation:
        def free(self):
            freed.append(("device", Context.pushed, threading.current_thread().name))

    class Pinned(bytearray):
        def free(self):
            freed.append(("host", Context.pushed, threading.current_thread().name))

    def pagelocked_empty(shape, dtype):
        return np.ndarray(shape, dtype, buffer=Pinned(4 * int(np.prod(shape))))  # base: the allocation, as pycuda

    driver = SimpleNamespace(mem_alloc=lambda nbytes: Allocation(), pagelocked_empty=pagelocked_empty)
    monkeypatch.setitem(sys.modules, "pycuda", SimpleNamespace(driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    from engine.trt_backend import _Buffers

    held = [_Buffers({"xyz": (1, 4, 3), "rgb": (1, 4, 3)}, Context())]
    held[0].host("xyz")
    worker = threading.Thread(target=held.clear, name="worker")
    worker.start()
    worker.join()
    assert sorted(freed) == [("device", True, "worker")] * 2 + [("host", True, "worker")]


def test_export_of_some_parts_keeps_the_others_of_the_same_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from engine.export_onnx import export
    from nut_ros.core.model import build_model
    from nut_ros.pipeline.onnx_backend import OnnxBackend

    torch.manual_seed(0)
    model = build_model("tiny", image_size=(48, 96)).eval()
    manifest = export(model, tmp_path, rasterizer=False, parts=("encoder",))
    with pytest.raises(ValueError, match="has no decoder"):
        OnnxBackend(manifest)
    export(model, tmp_path, rasterizer=False, parts=("decoder",))
    assert set(json.loads(manifest.read_text())["graphs"]) == {"encoder", "decoder"}
    OnnxBackend(manifest)
    other = build_model("tiny", image_size=(48, 96)).eval()  # other weights: a new manifest
    export(other, tmp_path, rasterizer=False, parts=("state",))
    assert set(json.loads(manifest.read_text())["graphs"]) == {"state"}
