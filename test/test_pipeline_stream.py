"""StreamingPipeline with a real (randomly initialised, shrunken) tiny model: pairing, caching, memory, times,
depth-source flags and bad input."""
import copy
import dataclasses
import gc
import weakref

import numpy as np
import pytest
import torch

from nut_ros.core.geometry import Intrinsics
from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.stream import StreamingPipeline, window_times
from nut_ros.pipeline.types import Frame, PipelineConfig

MS = 1_000_000
H, W = 60, 80  # input frames; the model runs at 48x96


class CountingBackend(TorchBackend):
    """The torch backend, recording every encode/decode call and the handles it saw."""

    def __init__(self, model):
        super().__init__(model)
        self.encoded, self.decoded = [], []

    def encode(self, rgb, disp):
        handle = super().encode(rgb, disp)
        self.encoded.append((tuple(rgb.shape), tuple(disp.shape), disp.clone()))
        return handle

    def decode(self, prev, cur):
        self.decoded.append((id(prev), id(cur)))
        return super().decode(prev, cur)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny", image_size=(48, 96))


@pytest.fixture
def backend(model):
    return CountingBackend(model)


def frame(i, stamp_ns=None, depth=None, k=None, seed=None):
    rng = np.random.default_rng(i if seed is None else seed)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return Frame(rgb, i * 33 * MS if stamp_ns is None else stamp_ns, depth_m=depth, intrinsics=k)


def test_each_frame_encoded_once_and_paired_with_previous(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    handles = []
    for i in range(4):
        res = pipe.push(frame(i))
        handles.append(id(pipe._prev.handle))
        assert res.paired == (i > 0)
        assert res.gaussians.count > 0
    assert len(backend.encoded) == 4
    assert backend.decoded == [(handles[0], handles[1]), (handles[1], handles[2]), (handles[2], handles[3])]
    n = backend.model_config.gaussians_per_frame
    assert pipe.live_gaussians == 2 * n
    t0 = pipe._live.gaussians.t0[0]
    assert torch.all(t0[:n] == 0) and torch.all(t0[n:] == 1)
    assert backend.encoded[0][0] == (1, 3, 48, 96) and backend.encoded[0][1] == (1, 2, 48, 96)


def test_first_frame_renders_static_gaussians(backend):
    res = StreamingPipeline(backend, PipelineConfig(render_times=(0.5, 1.0))).push(frame(0))
    assert not res.paired and res.pair_interval_s is None
    assert [v.pair_time for v in res.views] == [1.0]
    assert res.gaussians.count == backend.model_config.gaussians_per_frame
    assert np.all(res.gaussians.velocities == 0)
    assert res.newest.rgb.shape == (48, 96, 3) and res.newest.rgb.dtype == np.uint8


def test_only_previous_frame_cache_is_kept(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    refs = []
    for i in range(12):
        pipe.push(frame(i))
        refs.append(weakref.ref(pipe._prev.handle.tokens))
    backend.encoded.clear()
    gc.collect()
    alive = [r() is not None for r in refs]
    assert alive == [False] * 11 + [True]
    assert len(pipe.stats.latency_ms["total"]) == 12


def test_interpolation_and_prediction_times(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(0.0, 0.5, 1.0, 1.5)))
    pipe.push(frame(0, stamp_ns=1000 * MS))
    res = pipe.push(frame(1, stamp_ns=1100 * MS))
    assert [v.pair_time for v in res.views] == [0.0, 0.5, 1.0, 1.5]
    assert [v.stamp_ns for v in res.views] == [1000 * MS, 1050 * MS, 1100 * MS, 1150 * MS]
    assert res.pair_interval_s == pytest.approx(0.1)
    assert pipe.pair_time(1025 * MS) == pytest.approx(0.25)
    # the views differ in time: motion and fading make the t=0 and t=1.5 renders different from t=1
    assert not np.array_equal(res.views[0].rgb, res.views[2].rgb)
    assert not np.array_equal(res.views[3].rgb, res.views[2].rgb)
    # an extra render at an arbitrary time uses the same live map
    [mid] = pipe.render([0.5])
    np.testing.assert_array_equal(mid.rgb, res.views[1].rgb)


def test_a_frame_without_intrinsics_gets_square_pixels_of_its_own_image(backend):
    """The default camera (``default_hfov_deg``) has square pixels in the input image (4:3 here), whatever the
    model's aspect (2:1): in the model's image the focal lengths differ as the resize stretches it."""
    res = StreamingPipeline(backend, PipelineConfig(render_times=())).push(frame(0))
    assert res.intrinsics == Intrinsics.from_fov(W, H, 60.0).scaled(96, 48)
    assert res.intrinsics.fy / res.intrinsics.fx == pytest.approx((48 / H) / (96 / W))


def test_depth_source_flags_and_inputs(backend):
    k = Intrinsics(100.0, 100.0, 39.5, 29.5, W, H)
    depth = np.full((H, W), 2.0, np.float32)
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    rel = pipe.push(frame(0, k=k))
    assert (rel.metric, rel.depth_source, rel.gaussians.metric) == (False, "none", False)
    assert torch.all(backend.encoded[-1][2] == 0)  # no depth: disparity and mask all zero
    met = pipe.push(frame(1, depth=depth, k=k))
    assert (met.metric, met.depth_source, met.gaussians.metric) == (True, "topic", True)
    assert pipe.stats.resets["input_changed"] == 1 and not met.paired
    disp = backend.encoded[-1][2]
    assert torch.allclose(disp[:, 0], torch.full_like(disp[:, 0], 0.5)) and torch.all(disp[:, 1] == 1)
    met2 = pipe.push(frame(2, depth=depth, k=k))
    assert met2.paired and met2.intrinsics == k.scaled(96, 48)
    # a constant 2 m plane maps all of ŷ in [0, 1] into [1.905, 2.105] m: metric outputs must sit there
    d = met2.newest.depth[np.isfinite(met2.newest.depth)]
    assert d.size > 0 and np.all((d > 1.9) & (d < 2.11))
    z = met2.gaussians.positions[:, 2]
    assert np.all((z > 1.9) & (z < 2.11))
    assert np.all(np.isfinite(met2.gaussians.velocities))
    # the model-size input depth on the host and as the pipeline left it on its device (the perception stage reads it
    # there), the same metres; none without a depth input
    assert met2.input_depth.shape == (48, 96) and np.all(met2.input_depth == 2.0)
    assert met2.device_depth.device.type == "cpu" and np.array_equal(met2.device_depth.numpy(), met2.input_depth)
    assert rel.input_depth is None and rel.device_depth is None


def test_bad_stamps_are_dropped_or_reset(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,), max_gap_s=1.0))
    assert pipe.push(frame(0, stamp_ns=5000 * MS)) is not None
    assert pipe.push(frame(1, stamp_ns=5000 * MS)) is None
    assert pipe.push(frame(2, stamp_ns=4900 * MS)) is None
    assert dict(pipe.stats.drops) == {"stamp_duplicate": 1, "stamp_backwards": 1}
    assert len(backend.encoded) == 1  # dropped frames are never encoded
    res = pipe.push(frame(3, stamp_ns=9000 * MS))  # 4 s gap: new stream
    assert not res.paired and pipe.stats.resets["gap"] == 1
    res = pipe.push(frame(4, stamp_ns=1000 * MS))  # looped bag: new stream
    assert not res.paired and pipe.stats.resets["backwards_jump"] == 1
    assert pipe.push(frame(5, stamp_ns=1033 * MS)).paired
    assert (pipe.stats.frames_in, pipe.stats.frames_processed, pipe.stats.frames_dropped) == (6, 4, 2)


def test_one_frame_stamped_ahead_costs_two_frames_not_max_gap(backend):
    """A driver's glitch: one frame stamped 0.9 s ahead. The frames after it are dropped until BACKWARDS_RUN of
    them in a row say the glitch was that frame: the stream starts again there, not once the stamps catch up."""
    from nut_ros.pipeline.stream import BACKWARDS_RUN

    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,), max_gap_s=1.0))
    stamps = [1000, 1100, 2000] + [1200 + 100 * i for i in range(8)]  # (ms) the third frame is the glitch
    kept = [pipe.push(frame(i, stamp_ns=t * MS)) is not None for i, t in enumerate(stamps)]
    assert kept == [True] * 3 + [False] * (BACKWARDS_RUN - 1) + [True] * (8 - BACKWARDS_RUN + 1)
    assert pipe.stats.drops["stamp_backwards"] == BACKWARDS_RUN - 1 and pipe.stats.resets["backwards_run"] == 1
    assert pipe.push(frame(11, stamp_ns=2000 * MS)).paired, "the stream goes on from the new one"
    assert pipe.push(frame(12, stamp_ns=1950 * MS)) is None, "one late frame alone is still dropped"
    for k in range(BACKWARDS_RUN):  # re-stamped near-duplicates jittering back by under MIN_INTERVAL_S
        assert pipe.push(frame(13 + k, stamp_ns=2000 * MS - 100_000)) is None
    assert pipe.stats.drops["stamp_duplicate"] == BACKWARDS_RUN and pipe.stats.resets["backwards_run"] == 1


def test_invalid_depth_and_malformed_frames(backend):
    pipe = StreamingPipeline(backend)
    bad = np.zeros((H, W), np.float32)
    bad[: H // 2] = np.nan
    bad[H // 2:, : W // 2] = np.inf
    res = pipe.push(frame(0, depth=bad))  # a blinded depth camera: the frame goes on RGB only, counted
    assert res.depth_source == "none" and not res.metric and res.input_depth is None
    assert pipe.stats.depth_unusable == 1 and pipe.stats.frames_dropped == 0
    assert not backend.encoded[-1][2].any()  # no depth channels
    partly = np.full((H, W), 1.5, np.float32)
    partly[::2] = np.nan
    res = pipe.push(frame(1, depth=partly))
    assert res.metric and np.all(np.isfinite(res.gaussians.positions))
    # the mask marks the invalid rows: the model's row i samples input row floor((i + 0.5)·60/48) (nearest), and
    # the input's even rows are NaN; a constant depth normalises to the middle of the canonical range
    disp, mask = backend.encoded[-1][2][0].numpy()
    rows = np.floor((np.arange(48) + 0.5) * H / 48).astype(int)
    np.testing.assert_array_equal(mask.astype(bool), np.broadcast_to((rows % 2 == 1)[:, None], (48, 96)))
    assert np.all(disp[mask == 0] == 0) and np.allclose(disp[mask == 1], 0.5)
    # within a stream with depth a blinded frame is dropped, so the stream keeps its metric depth frame
    assert pipe.push(frame(2, depth=bad)) is None and pipe.stats.drops["depth_invalid"] == 1
    res = pipe.push(frame(3, depth=partly))
    assert res.paired and res.metric and pipe.stats.depth_unusable == 1
    # blinded for longer than max_gap_s: the stream ends and the new one goes on RGB only
    res = pipe.push(frame(4, stamp_ns=res.stamp_ns + int(1.5e9), depth=bad))
    assert res.depth_source == "none" and not res.paired and pipe.stats.resets["gap"] == 1
    assert pipe.stats.depth_unusable == 2 and pipe.stats.drops["depth_invalid"] == 1
    with pytest.raises(ValueError, match="uint8"):
        pipe.push(Frame(np.zeros((H, W, 3), np.float32), 0))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        pipe.push(Frame(np.zeros((H, W), np.uint8), 0))
    with pytest.raises(ValueError, match="aligned"):
        pipe.push(frame(2, depth=np.ones((H + 1, W), np.float32)))
    with pytest.raises(ValueError, match="millimetres"):
        pipe.push(frame(2, depth=np.ones((H, W), np.uint16)))
    with pytest.raises(ValueError, match="intrinsics"):
        pipe.push(frame(2, k=Intrinsics(1, 1, 0, 0, W * 2, H * 2)))


def test_reset_starts_a_new_stream(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    pipe.push(frame(0))
    pipe.reset()
    assert pipe.live_gaussians == 0
    with pytest.raises(RuntimeError):
        pipe.render([1.0])
    assert not pipe.push(frame(1)).paired


def test_warm_up_decodes_pairs_then_leaves_a_fresh_stream_and_the_counters_as_they_were(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    pipe.push(frame(0))
    before = (pipe.stats.frames_in, pipe.stats.frames_processed, dict(pipe.stats.drops))
    assert pipe.warm_up() > 0
    assert len(backend.encoded) == 5 and len(backend.decoded) >= 1  # the warm-up's pairs, not with frame 0
    assert (pipe.stats.frames_in, pipe.stats.frames_processed, dict(pipe.stats.drops)) == before
    assert pipe.live_gaussians == 0
    assert not pipe.push(frame(1, stamp_ns=1)).paired  # a new stream: an early stamp is not "backwards"


def test_gaussians_only_mode_renders_nothing(backend):
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=()))
    assert pipe.push(frame(0)).views == []
    res = pipe.push(frame(1))
    assert res.views == [] and res.paired and res.gaussians.count > 0
    assert pipe.render([0.5])[0].rgb.shape == (48, 96, 3)  # the live map still renders on request


@pytest.mark.parametrize("threads, device, expected", [(0, "cpu", 3), (2, "cpu", 2),
                                                       pytest.param(0, "cuda", 1, marks=pytest.mark.gpu)])
def test_opencv_threads_auto_is_one_thread_beside_a_gpu_and_opencvs_default_on_a_cpu(model, threads, device,
                                                                                       expected):
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)  # stands for OpenCV's default, which auto leaves alone on a CPU
    try:
        StreamingPipeline(TorchBackend(copy.deepcopy(model), device=device), PipelineConfig(opencv_threads=threads))
        assert cv2.getNumThreads() == expected
    finally:
        cv2.setNumThreads(before)
    with pytest.raises(ValueError, match="opencv_threads"):
        StreamingPipeline(TorchBackend(copy.deepcopy(model)), PipelineConfig(opencv_threads=-1))


@pytest.mark.gpu
@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_backend_matches_flags_and_stays_finite(model, bf16):
    backend = TorchBackend(copy.deepcopy(model), device="cuda", bf16=bf16)
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(0.5, 1.0)))
    depth = np.full((H, W), 3.0, np.float32)
    for i in range(3):
        res = pipe.push(frame(i, depth=depth))
    assert res.metric and res.paired and len(res.views) == 2
    assert np.all(np.isfinite(res.gaussians.positions)) and np.all(np.isfinite(res.gaussians.velocities))
    d = res.newest.depth[np.isfinite(res.newest.depth)]
    assert d.size > 0 and np.all((d > 2.8) & (d < 3.2))


@pytest.mark.gpu
@pytest.mark.parametrize("bf16, atol", [(False, 1e-4), (True, 3e-2)])
def test_compiled_cuda_backend_matches_eager(model, bf16, atol):
    """torch.compile with stage-wise upsampler graphs (nut_ros/pipeline/compile.py) decodes what eager decodes."""
    torch.backends.cuda.matmul.allow_tf32 = False
    outs = []
    for compiled in (False, True):
        backend = TorchBackend(copy.deepcopy(model), device="cuda", bf16=bf16, compile=compiled)
        pipe = StreamingPipeline(backend)
        frames = [frame(i) for i in range(2)]
        handles = [backend.encode(*pipe._preprocess(f, pipe._model_intrinsics(f))[:2]) for f in frames]
        outs.append(backend.decode(*handles))
    for name in ("xyz", "velocity", "rgb", "opacity", "scale"):
        torch.testing.assert_close(getattr(outs[1], name), getattr(outs[0], name), atol=atol, rtol=0)


def test_window_times_spread_mid_pair_and_close_at_the_key_frames():
    assert window_times(1.0, 0.8, 5) == [1.0] and window_times(0.0, 0.8, 5) == [0.0]
    assert window_times(1.5, 0.8, 5) == [1.5]  # predictions are not averaged
    assert window_times(0.5, 0.0, 5) == [0.5] and window_times(0.5, 0.8, 1) == [0.5]
    np.testing.assert_allclose(window_times(0.5, 0.8, 5), [0.1, 0.3, 0.5, 0.7, 0.9])
    got = window_times(0.25, 1.0, 3)  # width 4 * 0.25 * 0.75 = 0.75: the first sample is clamped at 0
    np.testing.assert_allclose(got, [0.0, 0.25, 0.625])


def test_interpolated_colour_is_the_mean_render_over_the_window(model):
    pipe = StreamingPipeline(TorchBackend(model), PipelineConfig(render_times=(1.0,), interp_window=0.8,
                                                                  interp_samples=3))
    single = StreamingPipeline(pipe.backend, PipelineConfig(render_times=(1.0,), interp_window=0.0))
    for i in range(2):
        res, ref = pipe.push(frame(i)), single.push(frame(i))
    np.testing.assert_array_equal(res.newest.rgb, ref.newest.rgb)  # key frames are one render
    [mid] = pipe.render([0.5])
    views = single.render(window_times(0.5, 0.8, 3))
    mean = np.mean([v.rgb.astype(np.float64) for v in views], axis=0)
    assert np.abs(mid.rgb - mean).max() <= 1.0  # each view is rounded to uint8 before this mean
    np.testing.assert_array_equal(mid.depth, views[1].depth)  # depth and alpha are those at t
    assert np.abs(mid.rgb.astype(int) - views[1].rgb).max() > 2  # the Gaussians move: the window changes the colour


@pytest.mark.parametrize("network_depth", [False, True])
def test_frames_without_depth_input_render_no_depth_unless_asked(backend, network_depth):
    """RGB only without depth from motion: the depth is the network's guess, NaN unless ``network_depth``; a depth
    image makes it finite again."""
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,), depth_from_motion="off",
                                                     network_depth=network_depth))
    results = [pipe.push(frame(i)) for i in range(2)]
    assert all(r.depth_source == "none" for r in results)
    assert all(np.isfinite(r.newest.depth).any() == network_depth for r in results)
    assert all((r.newest.rgb > 0).any() for r in results)  # the colour is rendered either way
    res = pipe.push(frame(2, depth=np.full((H, W), 2.0, np.float32)))
    assert res.depth_source == "topic" and np.isfinite(res.newest.depth).any()


def test_a_new_camera_starts_a_new_stream(backend):
    """Same image size, other intrinsics (a zoom, a new calibration, a first CameraInfo after the default FOV): the
    older frame was seen through another camera, so it is not paired with the new one."""
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    k = Intrinsics(100.0, 100.0, 39.5, 29.5, W, H)
    assert not pipe.push(frame(0)).paired  # the default FOV
    res = pipe.push(frame(1, k=k))
    assert not res.paired and pipe.stats.resets["input_changed"] == 1
    assert pipe.push(frame(2, k=k)).paired
    zoomed = pipe.push(frame(3, k=dataclasses.replace(k, fx=150.0, fy=150.0)))
    assert not zoomed.paired and pipe.stats.resets["input_changed"] == 2


def test_a_frame_within_a_millisecond_of_the_last_is_a_duplicate(backend):
    """Velocities divide by the pair's interval: a frame re-stamped 1 µs after the last one would make them huge."""
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=(1.0,)))
    assert pipe.push(frame(0, stamp_ns=5000 * MS)) is not None
    assert pipe.push(frame(1, stamp_ns=5000 * MS + 1000)) is None and pipe.stats.drops["stamp_duplicate"] == 1
    res = pipe.push(frame(2, stamp_ns=5000 * MS + 2 * MS))  # 2 ms: a fast camera, paired
    assert res.paired and res.pair_interval_s == pytest.approx(2e-3)
