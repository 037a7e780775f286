"""The CUDA rasterizer (one kernel source, three launch paths) against the torch rasterizer and the reference outputs.

Paths: the PyTorch extension (``nut_ros.render._cuda``), the pycuda-compiled kernels launched on a given stream with
raw pointers (``engine.plugins.raster_launcher`` / ``engine.trt_backend.PycudaRenderer``) and the TensorRT Python
plugin's ``enqueue``.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render._torch_impl import rasterize_torch
from nut_ros.render.projection import LOWPASS
from bench.scenes import grid_scene

pytestmark = pytest.mark.gpu
FIXTURES = Path(__file__).parent / "fixtures"
FIELDS = ("means", "scales", "rotations", "opacities", "colors")
# float32 reordering only (FMA contraction, summation order): observed max errors are ~1e-5
TOL = 1e-4
BG = (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def cuda_ext():
    try:
        from nut_ros.render import _cuda
    except ImportError as err:
        pytest.skip(str(err))
    return _cuda


def _max_err(got, want):
    return {name: (g.cpu() - w.cpu()).abs().max().item() for name, g, w in zip(("color", "depth", "alpha"), got, want)}


def _batched_scene(batch=2, n=6000, height=72, width=128, random_rotations=True):
    scenes = [grid_scene(n, height, width, seed=s, device="cuda", random_rotations=random_rotations)
              for s in range(batch)]
    return RasterInputs(*(torch.cat(parts, 0) for parts in zip(*scenes)))


@pytest.mark.parametrize("random_rotations,lowpass", [(False, 0.3), (True, 0.3), (True, 0.1)])
def test_extension_matches_torch(cuda_ext, random_rotations, lowpass):
    inputs = _batched_scene(random_rotations=random_rotations)
    inputs = inputs._replace(means=inputs.means.clone())
    inputs.means[0, :50, 1] = -1.0  # culled: behind the camera
    inputs.means[1, :50, 0] = 3.0  # off-screen: zero tiles
    bg = torch.tensor(BG, device="cuda")
    got = cuda_ext.rasterize_forward(*inputs, 72, 128, bg, lowpass)
    want = rasterize_torch(*inputs, 72, 128, bg, lowpass)
    errors = _max_err(got[:3], want)
    assert max(errors.values()) <= TOL, errors
    assert got[3] > 0


def test_extension_matches_reference_oracle(cuda_ext):
    tensors = load_file(FIXTURES / "render_raster_oracle.safetensors", device="cuda")
    meta = json.loads((FIXTURES / "render_raster_oracle.json").read_text())
    bg = torch.tensor(BG, device="cuda")
    for info in meta["scenes"]:
        key = info["key"]
        inputs = [tensors[f"{key}.in.{f}"][None].contiguous() for f in FIELDS]
        color, depth, alpha, pairs = cuda_ext.rasterize_forward(*inputs, info["H"], info["W"], bg, LOWPASS)
        assert pairs == info["num_rendered"], key
        errors = _max_err((color[0], depth[0], alpha[0]),
                          (tensors[f"{key}.out.color"], tensors[f"{key}.out.depth"], tensors[f"{key}.out.alpha"]))
        assert max(errors.values()) <= TOL, (key, errors)


def test_backward_with_constant_shapes(cuda_ext):
    """Only means and colours require gradients (frozen shapes, as in stage-2 training)."""
    from nut_ros.render import rasterize

    inputs = _gradient_scene(False)
    grads = []
    for impl in ("cuda", "torch"):
        means, colors = inputs.means.clone().requires_grad_(True), inputs.colors.clone().requires_grad_(True)
        out = rasterize(inputs._replace(means=means, colors=colors), 40, 64, impl=impl, lowpass=LOWPASS)
        grads.append(torch.autograd.grad(out.color.square().sum() + out.depth.sum(), [means, colors]))
    for g, w in zip(*grads):
        assert (g - w).abs().max().item() <= 1e-3 * w.abs().max().item() + 1e-5


def _gradient_scene(opaque: bool):
    inputs = _batched_scene(batch=2, n=1500, height=40, width=64)
    means, opacities = inputs.means.clone(), inputs.opacities.clone()
    means[0, :20, 1] = -1.0  # culled
    if opaque:  # saturated alphas (the 0.99 clamp) and early termination (T < 1e-4) in most pixels
        opacities = 0.9 + 0.1 * opacities
    return inputs._replace(means=means, opacities=opacities)


@pytest.mark.parametrize("opaque,lowpass", [(False, 0.3), (True, 0.3), (False, 0.1)])
def test_backward_kernel_matches_torch_gradients(cuda_ext, opaque, lowpass):
    from nut_ros.render import rasterize

    inputs = _gradient_scene(opaque)
    bg = torch.tensor(BG, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(1)
    weights = [torch.randn(2, c, 40, 64, device="cuda", generator=gen) for c in (3, 1, 1)]

    def grads(impl):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        background = bg.clone().requires_grad_(True)
        out = rasterize(RasterInputs(*leaves), 40, 64, background, impl=impl, lowpass=lowpass)
        loss = sum((o * w).sum() for o, w in zip(out, weights)) + out.color.square().sum()
        return out, torch.autograd.grad(loss, leaves + [background])

    out, got = grads("cuda")
    ref, want = grads("torch")
    assert max(_max_err(out, ref).values()) <= TOL
    for name, g, w in zip(FIELDS + ("background",), got, want):
        scale = w.abs().max().item()
        assert scale > 0, name
        assert (g - w).abs().max().item() <= 1e-3 * scale + 1e-5, (name, (g - w).abs().max().item(), scale)


def test_everything_culled_gives_background(cuda_ext):
    inputs = _batched_scene(batch=1, n=100)
    inputs = inputs._replace(means=inputs.means * torch.tensor([1.0, -1.0, 1.0], device="cuda"))
    color, depth, alpha, pairs = cuda_ext.rasterize_forward(*inputs, 72, 128, torch.tensor([0.1, 0.2, 0.3]),
                                                            LOWPASS)
    assert pairs == 0 and alpha.abs().max() == 0 and depth.abs().max() == 0
    assert torch.allclose(color[0, :, 0, 0].cpu(), torch.tensor([0.1, 0.2, 0.3]))


def test_non_finite_gaussians_are_culled_as_by_the_torch_path(cuda_ext):
    """NaN position (x or depth), opacity or scale: culled, as the torch path culls them (before, the kernel drew
    such a Gaussian as an opaque 16x16 tile, or wrote NaN depth)."""
    inputs = _batched_scene(batch=1, n=400, height=144, width=256)
    means, scales, opacities = inputs.means.clone(), inputs.scales.clone(), inputs.opacities.clone()
    means[0, 0, 0], means[0, 1, 1], opacities[0, 2, 0], scales[0, 3, 0] = (float("nan"),) * 4
    inputs = inputs._replace(means=means, scales=scales, opacities=opacities)
    bg = torch.tensor(BG, device="cuda")
    got = cuda_ext.rasterize_forward(*inputs, 144, 256, bg, LOWPASS)
    want = rasterize_torch(*RasterInputs(*(t[:, 4:] for t in inputs)), 144, 256, bg, LOWPASS)  # without the four
    assert all(torch.isfinite(t).all() for t in got[:3])
    errors = _max_err(got[:3], want)
    assert max(errors.values()) <= TOL, errors


def test_pair_budget_renders_without_reading_the_count_and_flags_a_short_buffer(cuda_ext):
    from nut_ros.render import PairBudget, rasterize

    inputs = _batched_scene(batch=1)
    exact = rasterize(inputs, 72, 128, BG, impl="cuda", lowpass=LOWPASS)  # buffer sized from the count
    budget = PairBudget()
    first = rasterize(inputs, 72, 128, BG, impl="cuda", lowpass=LOWPASS, pair_budget=budget)  # exact: no budget yet
    assert not budget.overflowed() and budget.capacity(inputs.means.shape[1]) > 0
    ahead = rasterize(inputs, 72, 128, BG, impl="cuda", lowpass=LOWPASS, pair_budget=budget)  # sized ahead
    assert not budget.overflowed()
    for out in (first, ahead):
        assert all(torch.equal(g, w) for g, w in zip(out, exact))
    budget.pairs_per_gaussian = 0.01  # far too small: pairs are dropped, and the check says so and raises it
    short = rasterize(inputs, 72, 128, BG, impl="cuda", lowpass=LOWPASS, pair_budget=budget)
    assert not torch.equal(short.alpha, exact.alpha)
    assert budget.overflowed() and budget.pairs_per_gaussian > 0.01
    again = rasterize(inputs, 72, 128, BG, impl="cuda", lowpass=LOWPASS, pair_budget=budget)
    assert not budget.overflowed() and all(torch.equal(g, w) for g, w in zip(again, exact))


def test_pipeline_renders_a_frame_again_when_its_pair_budget_was_short(cuda_ext):
    import numpy as np

    from nut_ros.core.checkpoint import load_checkpoint
    from nut_ros.pipeline.backends import TorchBackend
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import Frame, PipelineConfig
    import cv2

    root = Path(__file__).resolve().parents[1]
    model = load_checkpoint(root / "nut_ros" / "weights" / "tiny.safetensors")
    frames = [Frame(cv2.imread(str(root / "nut_ros" / "data" / "cups" / f"{i:03d}.jpg"))[..., ::-1].copy(),
                    i * 66_000_000) for i in range(3)]
    views = []
    for short in (False, True):
        pipe = StreamingPipeline(TorchBackend(model, "cuda"), PipelineConfig(render_times=(0.5, 1.0)))
        got = [pipe.push(frames[0]), pipe.push(frames[1])]
        if short:
            pipe.backend._pairs.pairs_per_gaussian = 1e-3
        got.append(pipe.push(frames[2]))
        views.append(got[-1].views)
        assert pipe.stats.rerenders == int(short)
    for a, b in zip(*views):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.alpha, b.alpha)
        assert np.array_equal(np.nan_to_num(a.depth, nan=-1), np.nan_to_num(b.depth, nan=-1))


def test_pycuda_launcher_on_torch_stream():
    pytest.importorskip("pycuda")
    from engine.plugins.ortho_raster_plugin import raster_kernels
    from engine.plugins.raster_launcher import Workspace

    inputs = _batched_scene()
    b, n = inputs.means.shape[:2]
    outputs = [torch.empty(b, c, 72, 128, device="cuda") for c in (3, 1, 1)]
    ws = Workspace.layout(b, n, 72, 128, b * n * 16)
    workspace = torch.empty(ws.nbytes, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    kernels = raster_kernels()
    kernels.enqueue(*(t.data_ptr() for t in inputs), *(t.data_ptr() for t in outputs), workspace.data_ptr(), ws,
                    b, n, 72, 128, BG, stream.cuda_stream, 0.1)
    assert 0 < kernels.pairs(workspace.data_ptr(), ws, stream.cuda_stream) <= ws.capacity
    want = rasterize_torch(*inputs, 72, 128, torch.tensor(BG, device="cuda"), 0.1)
    errors = _max_err(outputs, want)
    assert max(errors.values()) <= TOL, errors


def test_pycuda_renderer_buffers_and_regrowth(monkeypatch):
    pytest.importorskip("pycuda")
    from engine import trt_backend

    monkeypatch.setattr(trt_backend, "PAIRS_PER_GAUSSIAN", 1)  # too small on purpose: must grow and re-render
    renderer = trt_backend.PycudaRenderer(72, 128, lowpass=0.1)
    inputs = _batched_scene()
    out = renderer.render(RasterInputs(*(t.cpu() for t in inputs)), BG)
    assert renderer.pairs > inputs.means.shape[0] * inputs.means.shape[1]
    want = rasterize_torch(*inputs, 72, 128, torch.tensor(BG, device="cuda"), 0.1)
    errors = _max_err(out, want)
    assert max(errors.values()) <= TOL, errors


def test_tensorrt_python_plugin_enqueue():
    from engine.plugins import ortho_raster_plugin as op

    try:
        trt = op.import_tensorrt()
    except ImportError as err:
        pytest.skip(str(err))
    pytest.importorskip("pycuda")
    creator = op.register_plugin(trt)
    attrs = op.RasterAttributes(72, 128, BG, lowpass=0.15)
    fields = trt.PluginFieldCollection([trt.PluginField(k, v, trt.PluginFieldType.INT32 if v.dtype.kind == "i"
                                                        else trt.PluginFieldType.FLOAT32)
                                        for k, v in attrs.fields().items()])
    plugin = creator.create_plugin(op.PLUGIN_NAME, fields, trt.TensorRTPhase.RUNTIME)
    assert {f.name for f in plugin.get_fields_to_serialize()} == set(attrs.fields())
    plugin = plugin.clone()

    inputs = _batched_scene()
    b, n = inputs.means.shape[:2]
    outputs = [torch.empty(b, c, 72, 128, device="cuda") for c in (3, 1, 1)]

    def desc(shape):
        d = trt.PluginTensorDesc()
        d.dims = trt.Dims(list(shape))
        d.type = trt.DataType.FLOAT
        d.format = trt.TensorFormat.LINEAR
        return d

    dyn = trt.DynamicPluginTensorDesc()
    dyn.desc, dyn.min, dyn.opt, dyn.max = desc(inputs.means.shape), *(trt.Dims(list(inputs.means.shape)),) * 3
    workspace = torch.empty(plugin.get_workspace_size([dyn], []), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    plugin.enqueue([desc(t.shape) for t in inputs], [desc(t.shape) for t in outputs], [t.data_ptr() for t in inputs],
                   [t.data_ptr() for t in outputs], workspace.data_ptr(), stream.cuda_stream)
    stream.synchronize()
    want = rasterize_torch(*inputs, 72, 128, torch.tensor(BG, device="cuda"))
    errors = _max_err(outputs, want)
    assert max(errors.values()) <= TOL, errors
