"""The ONNX Runtime backend's construction and feeds (``nut_ros/pipeline/onnx_backend.py``) with a stand-in for
onnxruntime that records its sessions (the CUDA provider is not installed here): the provider and GPU of the device
asked for, encoder inputs fed by name, and one folder holding several configurations' exports. The numerics are
``test/test_onnx_export.py``'s, with the real onnxruntime."""
import json
import sys
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from nut_ros.core.config import get_config
from nut_ros.pipeline.onnx_backend import OnnxBackend

SIZE = (48, 96)


@pytest.fixture
def ort(monkeypatch):
    """onnxruntime with both providers; ``ort.sessions``: every session made (``providers``, ``feeds`` of each
    run, which returns zeros)."""
    ort = ModuleType("onnxruntime")
    ort.sessions = []
    ort.get_available_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    ort.SessionOptions = SimpleNamespace

    class InferenceSession:
        def __init__(self, path, options, providers):
            self.path, self.providers, self.feeds = path, providers, []
            ort.sessions.append(self)

        def run(self, outputs, feeds):
            self.feeds.append(feeds)
            return [np.zeros(1, np.float32) for _ in outputs]

    ort.InferenceSession = InferenceSession
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    return ort


def write_export(folder, name="tiny", encoder_inputs=("input_disp", "input_rgb")):
    """A manifest of configuration ``name`` (the stand-in sessions read no graph) whose encoder lists its inputs in
    the order ``encoder_inputs``."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {"encoder": {"file": f"{name}.encoder.onnx", "inputs": {n: [] for n in encoder_inputs},
                          "outputs": {"xyz": [], "rgb": []}},
              "decoder": {"file": f"{name}.decoder.onnx", "inputs": {"prev_xyz": [], "cur_xyz": []},
                          "outputs": {"xyz": []}}}
    manifest = folder / f"{name}.manifest.json"
    manifest.write_text(json.dumps({"config": get_config(name, image_size=SIZE).to_dict(), "batch": 1,
                                    "graphs": graphs}))
    return manifest


@pytest.mark.parametrize("device, provider", [
    ("cpu", ("CPUExecutionProvider", {})), ("cuda", ("CUDAExecutionProvider", {"device_id": 0})),
    ("cuda:1", ("CUDAExecutionProvider", {"device_id": 1}))])
def test_the_sessions_run_on_the_device_asked_for(ort, tmp_path, device, provider):
    backend = OnnxBackend(write_export(tmp_path), device=device)
    assert backend.device == device and [s.providers for s in ort.sessions] == [[provider]] * 2


@pytest.mark.parametrize("device", ["mps", "graphics"])  # a torch device type; none
def test_other_devices_are_refused(ort, tmp_path, device):
    with pytest.raises(ValueError, match=f"runs on cpu, cuda or cuda:N, not '{device}'"):
        OnnxBackend(write_export(tmp_path), device=device)


def test_encoder_inputs_are_fed_by_name(ort, tmp_path):
    backend = OnnxBackend(write_export(tmp_path))  # the manifest lists input_disp first
    rgb, disp = torch.rand(1, 3, *SIZE), torch.rand(1, 2, *SIZE)
    backend.encode(rgb, disp)
    (feeds,) = ort.sessions[0].feeds
    assert np.array_equal(feeds["input_rgb"], rgb.numpy()) and np.array_equal(feeds["input_disp"], disp.numpy())
    with pytest.raises(ValueError, match=r"inputs are \['image', 'disparity'\].*input_rgb.*--parts encoder"):
        OnnxBackend(write_export(tmp_path / "old", encoder_inputs=("image", "disparity")))


def test_a_folder_of_several_configurations_gives_the_model_asked_for(ort, tmp_path):
    from nut_ros.pipeline.backends import make_backend

    for name in ("tiny", "small"):  # export_onnx's default --out is shared by configurations
        write_export(tmp_path, name)
    assert make_backend("onnxruntime", "small", checkpoint=tmp_path).model_config.name == "small"
    assert make_backend("onnxruntime", "tiny", checkpoint=tmp_path).model_config.name == "tiny"
    with pytest.raises(FileNotFoundError, match="small.manifest.json, tiny.manifest.json and no model configuration"):
        OnnxBackend(tmp_path)
    with pytest.raises(FileNotFoundError, match="none is streamsplat.manifest.json"):
        OnnxBackend(tmp_path, model="streamsplat")
    (tmp_path / "small.manifest.json").unlink()  # one manifest: taken whatever the model (its config says which)
    assert OnnxBackend(tmp_path, model="small").model_config.name == "tiny"
