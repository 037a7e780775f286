"""Backend factory and the torch backend's protocol."""
import importlib

import pytest
import torch

from nut_ros.core.checkpoint import save_checkpoint
from nut_ros.core.model import build_model
from nut_ros.pipeline import backends
from nut_ros.pipeline.backends import Backend, TorchBackend, make_backend


def test_missing_default_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tiny\.safetensors.*random_init"):
        make_backend("torch", "tiny")


def test_factory_choices_and_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("caffe")
    with pytest.raises(ValueError, match="needs its exported files"):
        make_backend("onnxruntime", checkpoint=None)
    with pytest.raises(ValueError, match="only available for the torch"):
        make_backend("tensorrt", random_init=True)
    with pytest.raises(ValueError, match="bf16"):
        TorchBackend(build_model("tiny", image_size=(48, 96)), "cpu", bf16=True)


def test_every_backend_name_resolves_to_its_class():
    """The exported backends are found by name (the TensorRT runtime in ``engine/``, which imports the pipeline)."""
    assert backends.BACKENDS == ("torch", "onnxruntime", "tensorrt")
    for name, target in backends.EXPORTED_BACKENDS.items():
        module, cls = target.split(":")
        assert getattr(importlib.import_module(module), cls).name == name
    assert backends.EXPORTED_BACKENDS["tensorrt"].startswith("engine.")


def test_checkpoint_and_random_init_build_the_same_architecture(tmp_path):
    torch.manual_seed(1)
    model = build_model("tiny", image_size=(48, 96))
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = make_backend("torch", "tiny", checkpoint=path)
    assert isinstance(loaded, Backend) and loaded.name == "torch" and loaded.device == "cpu"
    assert loaded.model_config.image_size == (48, 96)
    saved, restored = model.state_dict(), loaded.model.state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    fresh = make_backend("torch", "tiny", random_init=True)
    assert fresh.model_config.image_size == (144, 256) and not fresh.model.training


def test_static_and_pair_gaussians_from_the_torch_backend():
    torch.manual_seed(0)
    be = TorchBackend(build_model("tiny", image_size=(48, 96)))
    rgb, disp = torch.rand(1, 3, 48, 96), torch.zeros(1, 2, 48, 96)
    a, b = be.encode(rgb, disp), be.encode(rgb.flip(-1), disp)
    static = be.static(b)
    n = be.model_config.gaussians_per_frame
    assert static.count == n and torch.all(static.t0 == 1) and torch.all(static.velocity == 0)
    pair = be.decode(a, b)
    assert pair.count == 2 * n and pair.xyz.dtype == torch.float32
    torch.testing.assert_close(pair.xyz[:, n:], static.xyz)  # the newer frame's static part is its own
    out = be.render(pair, 0.5)
    assert out.color.shape == (1, 3, 48, 96) and torch.isfinite(out.depth).all()


def test_an_authors_checkpoint_is_imported_for_the_named_model(tmp_path):
    """A file without nut_ros metadata is the authors' checkpoint of the backend's model (strict import)."""
    torch.manual_seed(2)
    model = build_model("tiny")
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()}}, tmp_path / "ref.pth")
    loaded = make_backend("torch", "tiny", checkpoint=tmp_path / "ref.pth")
    assert loaded.model_config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="does not match NutModel"):  # another configuration's weights
        make_backend("torch", "small", checkpoint=tmp_path / "ref.pth")


def test_the_learned_flow_can_be_left_out_of_decode():
    """A pipeline with another motion prior turns the learned flow off; the rest of decode is unchanged."""
    torch.manual_seed(3)
    be = TorchBackend(build_model("tiny", image_size=(48, 96), motion_prior="learned"))
    rgb, disp = torch.rand(1, 3, 48, 96), torch.zeros(1, 2, 48, 96)
    a, b = be.encode(rgb, disp), be.encode(rgb.roll(6, -1), disp)
    with_flow = be.decode(a, b)
    be.use_learned_motion(False)
    without = be.decode(a, b)
    assert not torch.equal(with_flow.velocity, without.velocity)
    torch.testing.assert_close(with_flow.xyz, without.xyz)
    be.use_learned_motion(True)
    torch.testing.assert_close(be.decode(a, b).velocity, with_flow.velocity)


def test_cuda_graphs_need_cuda_and_a_compile_mode_without_graphs_of_its_own():
    model = build_model("tiny")
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        TorchBackend(model, "cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="brings its own CUDA graphs"):
        TorchBackend(model, "cuda", compile=True, compile_mode="reduce-overhead", cuda_graphs=True)


def test_the_compiled_cpu_network_compiles_at_warm_up_only_and_matches_eager():
    """compile on a CPU (Inductor's C++ kernels): after the pipeline's warm-up, live frames compile nothing more,
    whether resized from a camera's size, at the model's size (a permuted view of the image) or with depth, and
    the Gaussians published equal the eager pipeline's within float32 rounding."""
    import copy

    import numpy as np
    from torch._dynamo.utils import counters

    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import Frame, PipelineConfig

    torch.manual_seed(0)
    model = build_model("tiny", image_size=(48, 96), encoder_layers=1, decoder_layers=1)
    config = PipelineConfig(depth_from_motion="off")
    eager = StreamingPipeline(TorchBackend(copy.deepcopy(model), "cpu"), config)
    compiled = StreamingPipeline(TorchBackend(model, "cpu", compile=True), config)
    compiled.warm_up()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0  # (compiled at all)
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (108, 232, 3), np.uint8)
    frames = [Frame(np.ascontiguousarray(scene[:, 4 * k:4 * k + 192]), (k + 1) * 50_000_000) for k in range(3)]
    frames += [Frame(np.ascontiguousarray(scene[:48, 4 * k:4 * k + 96]), (k + 4) * 50_000_000) for k in range(3)]
    frames += [Frame(np.ascontiguousarray(scene[:48, 4 * k:4 * k + 96]), (k + 7) * 50_000_000,
                     depth_m=np.full((48, 96), 2.0 + k, np.float32)) for k in range(3)]
    for frame in frames:
        want, got = eager.push(frame), compiled.push(frame)
        assert got is not None and want is not None
        for name in ("positions", "opacities", "colors", "velocities"):
            np.testing.assert_allclose(getattr(got.gaussians, name), getattr(want.gaussians, name), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == graphs
