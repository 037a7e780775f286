"""Optical-flow motion prior: flow -> canonical velocities, the pair layout, its use in the pipeline and training."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nut_ros.core.encoder import PatchViT
from nut_ros.core.model import build_model
from nut_ros.core.motion_prior import (FlowPrior, SparseToDenseFlow, batch_priors, choose_flow_preset, grey_u8,
                                       sparse_to_dense_available, with_prior)
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.compile import compile_network, uncompile
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

CUPS = Path(__file__).resolve().parents[1] / "nut_ros" / "data" / "cups"
H, W = 144, 256


def cups_grey() -> np.ndarray:
    rgb = cv2.imread(str(CUPS / "000.jpg"))[..., ::-1]
    return cv2.cvtColor(cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


def test_constant_flow_becomes_canonical_velocity():
    prior = FlowPrior((H, W), (72, 128))
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0  # 4 px right, 2 px up
    v = prior.velocities(flow)
    assert v.shape == (72 * 128, 3)
    torch.testing.assert_close(v, torch.tensor([4 / (W / 2), 0.0, 2 / (H / 2)]).expand_as(v))


def test_pair_of_a_shifted_real_image_moves_both_frames_towards_each_other():
    grey0 = cups_grey()
    dx, dy = 5, 3  # frame 1 is frame 0 moved 5 px right and 3 px down
    grey1 = np.roll(grey0, (dy, dx), axis=(0, 1))
    v = FlowPrior((H, W), (72, 128)).pair(grey0, grey1).reshape(2, 72, 128, 3)
    inner = v[:, 8:-8, 8:-8].reshape(2, -1, 3).median(dim=1).values  # away from the wrapped borders
    want = torch.tensor([dx / (W / 2), 0.0, -dy / (H / 2)])
    torch.testing.assert_close(inner[0], want, atol=0.1 / (W / 2) * 5, rtol=0)  # frame 0: forward flow
    torch.testing.assert_close(inner[1], want, atol=0.1 / (W / 2) * 5, rtol=0)  # frame 1: minus backward flow


@pytest.mark.parametrize("factor_size", [(H, W), (288, 512)])
def test_forward_backward_check_keeps_agreeing_flow_and_zeroes_the_rest(factor_size):
    prior = FlowPrior(factor_size, (72, 128), max_width=256, check=True)
    h, w = factor_size[0] // prior.factor, factor_size[1] // prior.factor
    forward = np.zeros((h, w, 2), np.float32)
    forward[..., 0] = 8.0  # 8 model pixels to the right everywhere
    backward = -forward.copy()
    backward[:, w // 2:] = 0.0  # the right half's matches do not come back
    kept = prior.consistent(forward, backward)
    # a pixel keeps its flow when the backward flow where it lands brings it back: left of w/2 - 8 model pixels
    land = w // 2 - 8 // prior.factor
    np.testing.assert_array_equal(kept[:, : land - 1], forward[:, : land - 1])
    np.testing.assert_array_equal(kept[:, land + 1:], 0.0)


def test_flow_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="two grey images"):
        FlowPrior((H, W), (72, 128)).flow(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="unknown flow preset 'slowest'"):
        FlowPrior((H, W), (72, 128), preset="slowest")


needs_contrib = pytest.mark.skipif(not sparse_to_dense_available(), reason="OpenCV without contrib modules")


@needs_contrib
def test_sparse_to_dense_preset_follows_a_shift_in_both_directions():
    grey0 = cups_grey()
    grey1 = np.roll(grey0, (2, 6), axis=(0, 1))  # 6 px right, 2 px down
    prior = FlowPrior((H, W), (72, 128), preset="sparse_to_dense", max_width=512)
    v = prior.pair(grey0, grey1).reshape(2, 72, 128, 3)
    inner = v[:, 12:-12, 12:-12].reshape(2, -1, 3).median(dim=1).values
    want = torch.tensor([6 / (W / 2), 0.0, -2 / (H / 2)])
    torch.testing.assert_close(inner, want.expand(2, 3), atol=0.2 / (W / 2), rtol=0)


@needs_contrib
def test_sparse_to_dense_equals_opencv_and_stays_finite_on_small_frames():
    grey0 = cups_grey()
    grey1 = cv2.cvtColor(cv2.resize(cv2.imread(str(CUPS / "003.jpg")), (W, H), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2GRAY)
    flow = SparseToDenseFlow().calc(grey0, grey1)
    np.testing.assert_array_equal(flow, cv2.optflow.calcOpticalFlowSparseToDense(grey0, grey1))
    assert np.abs(flow).max() > 1.0  # the hands move between these frames
    noise = np.random.default_rng(0).integers(0, 256, (2, 48, 96), dtype=np.uint8)  # 72 grid points < K = 128
    assert np.isfinite(SparseToDenseFlow().calc(*noise)).all()  # OpenCV's own call gives NaN here
    np.testing.assert_array_equal(SparseToDenseFlow().calc(noise[0, :8, :8], noise[1, :8, :8]), 0.0)  # one match


def test_sparse_to_dense_without_opencv_contrib_says_what_to_install(monkeypatch):
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    with pytest.raises(ValueError, match="opencv-contrib-python-headless"):
        FlowPrior((H, W), (72, 128), preset="sparse_to_dense")


def test_batch_priors_equal_per_sample_pairs():
    torch.manual_seed(0)
    rgb0 = torch.rand(3, 3, H, W)
    rgb1 = torch.roll(rgb0, 2, dims=-1)
    got = batch_priors(rgb0, rgb1, (72, 128), workers=2)
    assert got.shape == (3, 2 * 72 * 128, 3)
    prior = FlowPrior((H, W), (72, 128))
    for i in range(3):
        torch.testing.assert_close(got[i], prior.pair(grey_u8(rgb0[i]), grey_u8(rgb1[i])))


def _frames(n: int):
    grey = cups_grey()
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return [Frame(np.ascontiguousarray(np.roll(rgb, 3 * i, axis=1)), i * 33_000_000) for i in range(n)]


def test_pipeline_adds_the_flow_prior_to_the_decoded_velocities():
    """Frames shifted 3 px right per frame, a network whose velocity head outputs 0: with the flow prior the
    published velocities point right (+x in the optical frame) almost everywhere, without it nothing moves."""
    def right_share(setting: str) -> tuple[float, set]:
        torch.manual_seed(0)
        model = build_model("tiny", motion_prior="flow")
        last = model.gs_dynamic_predictor.gs_layer["xyz_dynamic"].layers[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        pipe = StreamingPipeline(TorchBackend(model), PipelineConfig(motion_prior=setting))
        result = [pipe.push(f) for f in _frames(2)][1]
        assert result.motion_prior == pipe.motion_prior  # what made the velocities, for the perception stage
        return float((result.gaussians.velocities[:, 0] > 0).mean()), set(result.latency_ms)

    with_flow, stages = right_share("auto")
    without, stages_none = right_share("none")
    assert "flow" in stages and "flow" not in stages_none
    assert with_flow > 0.9 and without == 0.0


def test_pipeline_falls_back_to_dis_without_opencv_contrib(monkeypatch, caplog):
    backend = TorchBackend(build_model("tiny", motion_prior="flow"))
    assert StreamingPipeline(backend).flow_settings == "medium, 256 px, no check"  # the default
    config = PipelineConfig(flow_preset="sparse_to_dense", flow_check=True)
    if sparse_to_dense_available():
        assert StreamingPipeline(backend, config).flow_settings == "sparse_to_dense, 256 px, check"
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    with caplog.at_level("WARNING"):
        pipe = StreamingPipeline(backend, config)
    assert pipe.flow_settings == "medium, 256 px, check" and "opencv-contrib-python-headless" in caplog.text
    unchecked = PipelineConfig(flow_preset="sparse_to_dense")  # the fallback keeps flow_check as set
    assert StreamingPipeline(backend, unchecked).flow_settings == "medium, 256 px, no check"
    assert pipe.push(_frames(2)[0]) is not None and "flow" in pipe.push(_frames(2)[1]).latency_ms


def test_auto_flow_preset_is_sparse_to_dense_only_for_obstacles(monkeypatch):
    assert choose_flow_preset("fast", obstacles=True) == "fast"
    assert choose_flow_preset("sparse_to_dense", obstacles=False) == "sparse_to_dense"
    assert choose_flow_preset("auto", obstacles=False) == "medium"
    expected = "sparse_to_dense" if sparse_to_dense_available() else "medium"
    assert choose_flow_preset("auto", obstacles=True) == expected
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    assert choose_flow_preset("auto", obstacles=True) == "medium"


def test_pipeline_rejects_an_unknown_prior():
    with pytest.raises(ValueError, match="unknown motion prior"):
        StreamingPipeline(TorchBackend(build_model("tiny")), PipelineConfig(motion_prior="raft"))


def test_with_prior_adds_only_to_velocity():
    model = build_model("tiny", image_size=(48, 96)).eval()
    rgb = torch.rand(1, 2, 3, 48, 96)
    g = model(rgb, torch.zeros(1, 2, 2, 48, 96))
    prior = torch.randn_like(g.velocity)
    out = with_prior(g, prior)
    torch.testing.assert_close(out.velocity, g.velocity + prior)
    assert out.xyz is g.xyz and out.gamma is g.gamma


def test_compile_network_wraps_and_uncompile_restores_the_upsamplers_and_patch_convolutions():
    model = build_model("tiny", image_size=(48, 96))
    ups = [model.gs_predictor.gaussian_upsampler, model.gaussian_upsampler]
    convs = [m.conv for m in model.modules() if isinstance(m, PatchViT)]
    x = torch.rand(1, 3 + model.config.depth_channels, 48, 96)
    seen = []
    convs[0].register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    encode, decode = compile_network(model, upsampler="split")
    assert callable(encode) and callable(decode)
    assert all("forward" in u.__dict__ and all("forward" in c.__dict__ for c in u.children()) for u in ups)
    convs[0](x)  # the hooked convolution gets its input channels-last (token-major tokens out)
    compile_network(model, token_major_patches=False)  # takes the hook away again
    convs[0](x)
    compile_network(model)
    uncompile(model)
    assert not any("forward" in m.__dict__ for u in ups for m in (u, *u.children()))
    convs[0](x)
    assert seen == [False, True, True]
    with pytest.raises(ValueError, match="upsampler must be"):
        compile_network(model, upsampler="whole")


def test_wide_models_flow_at_half_resolution_in_model_pixels():
    grey0 = cv2.resize(cups_grey(), (512, 288))
    grey1 = np.roll(grey0, (4, 6), axis=(0, 1))
    prior = FlowPrior((288, 512), (144, 256))
    assert prior.factor == 2
    flow = prior.flow(grey0, grey1)
    assert flow.shape == (144, 256, 2)
    np.testing.assert_allclose(np.median(flow[16:-16, 16:-16].reshape(-1, 2), axis=0), [6, 4], atol=0.5)
    assert FlowPrior((144, 256), (72, 128)).factor == 1


def test_a_gaussian_per_pixel_gets_the_flow_interpolated_to_its_pixel():
    prior = FlowPrior((H, W), (H, W), max_width=128)  # flow on 72x128, a Gaussian per pixel of 144x256
    flow = np.zeros((H // 2, W // 2, 2), np.float32)
    flow[..., 0] = np.linspace(0, 8, W // 2, dtype=np.float32)  # a horizontal ramp of 0-8 px
    v = prior.velocities(flow).reshape(H, W, 3)
    assert v.shape == (H, W, 3)
    du = v[..., 0] * (W / 2)
    assert torch.all(du[:, 1:] >= du[:, :-1] - 1e-6)  # monotone, interpolated rather than repeated in blocks
    assert len(torch.unique(du[0])) > W // 2
    torch.testing.assert_close(du[:, 2:-2].mean(), torch.tensor(4.0), atol=0.1, rtol=0)


def test_auto_runs_classical_flow_for_a_learned_model_on_a_cpu_torch_backend():
    """The learned head makes a tiny frame 1.8x slower on a CPU (docs/BENCHMARKS.md): there "auto" leaves it out, and
    "learned" asks for it explicitly."""
    model = build_model("tiny", image_size=(48, 96))
    auto = StreamingPipeline(TorchBackend(model), PipelineConfig())
    assert auto.motion_prior == "flow" and not model.learned_motion
    learned = StreamingPipeline(TorchBackend(model), PipelineConfig(motion_prior="learned"))
    assert learned.motion_prior == "learned" and model.learned_motion and learned.flow_prior is None


@pytest.mark.gpu
def test_auto_runs_the_learned_head_on_a_cuda_torch_backend():
    """On a GPU the learned head measures better than classical flow (docs/EVALUATION.md) and needs no CPU flow."""
    model = build_model("tiny", image_size=(48, 96))
    auto = StreamingPipeline(TorchBackend(model, "cuda"), PipelineConfig())
    assert auto.motion_prior == "learned" and model.learned_motion and auto.flow_prior is None
