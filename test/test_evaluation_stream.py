"""StreamEvaluator on streams the node accepts but that are awkward to score: render times without pair time 1,
key frames that keep being dropped, and the pipeline's own throughput beside the evaluation's work."""
import dataclasses

import numpy as np
import pytest
import torch

from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.evaluation import StreamEvaluator, image_scores
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

MS = 1_000_000
T0 = 10**9


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return TorchBackend(build_model("tiny", image_size=(48, 96)))


def frames(n: int) -> list[Frame]:
    """``n`` random frames 50 ms apart."""
    return at_stamps([T0 + 50 * MS * i for i in range(n)])


def at_stamps(stamps: list[int]) -> list[Frame]:
    rng = np.random.default_rng(0)
    return [Frame(rng.integers(0, 256, (48, 96, 3), dtype=np.uint8), s) for s in stamps]


def evaluate_with_depth(backend, render_times) -> StreamEvaluator:
    """Three frames (key, held out, key) with a 2 m depth plane as input and truth through an evaluator; the steps'
    views' pair times are checked against ``render_times`` (a stream's first frame renders pair time 1 alone)."""
    ev = StreamEvaluator(StreamingPipeline(backend, PipelineConfig(render_times=render_times, motion_prior="none")))
    plane = np.full((48, 96), 2.0, np.float32)
    plane[:4] = np.nan  # holes: the view at pair time 1 leaves them out of the rendered depth
    steps = [ev.add(dataclasses.replace(f, depth_m=plane), plane) for f in frames(3)]
    assert [[v.pair_time for v in r.views] for r in steps if r is not None] == [[1.0], list(render_times)]
    return ev


@pytest.fixture(scope="module")
def at_pair_time_1(backend):
    return evaluate_with_depth(backend, (1.0,))


@pytest.mark.parametrize("render_times", [(0.5,), (1.5,)])
def test_key_frames_are_scored_at_pair_time_1_whatever_the_node_renders(backend, at_pair_time_1, render_times):
    """render_times without 1.0 are valid for the node: the evaluator renders pair time 1 for itself, the view the
    node would publish with render_times [1.0], and leaves the step's views (what the node publishes) as asked."""
    ev = evaluate_with_depth(backend, render_times)
    keys, expected = ([r for r in e.records if r["kind"] == "key"] for e in (ev, at_pair_time_1))
    assert [r["index"] for r in keys] == [0, 2] and ev.summary()["interp_frames"] == 1
    assert keys[1]["depth_abs_rel"] < 0.06
    for k in ("psnr", "ssim", "depth_coverage", "depth_abs_rel", "depth_delta1"):
        assert [r[k] for r in keys] == pytest.approx([r[k] for r in expected]), k


def test_held_out_frames_stay_bounded_when_every_key_frame_is_dropped(backend):
    """A camera that stamps every image alike: after the first key frame the pipeline drops every key frame as a
    duplicate, so the held-out frames never get a pair; at most max_held of them wait (float32), the rest are
    counted as skipped."""
    pipeline = StreamingPipeline(backend, PipelineConfig())
    ev = StreamEvaluator(pipeline, stride=2)
    n = 2 * (ev.max_held + 20)
    img = np.zeros((48, 96, 3), np.uint8)
    waiting = []
    for _ in range(n):
        ev.add(Frame(img, T0))
        waiting.append(len(ev._held))
    assert max(waiting) == ev.max_held and pipeline.stats.drops["stamp_duplicate"] == n // 2 - 1
    assert all(h.rgb.dtype == np.float32 and h.rgb.shape == (48, 96, 3) for h in ev._held)
    s = ev.summary()
    assert (s["key_frames"], s["interp_frames"], s["interp_skipped"]) == (1, 0, n // 2)


def test_held_out_frames_beyond_the_pipeline_s_gap_are_skipped_at_once(backend):
    """Key frames dropped (their stamps repeat the first's) while the held-out frames' stamps run on: once a held-out
    frame lies more than max_gap_s after the last key frame, the next key frame would start a new stream, so it is not
    kept."""
    pipeline = StreamingPipeline(backend, PipelineConfig())
    ev = StreamEvaluator(pipeline, stride=2)
    gap_ms = pipeline.config.max_gap_s * 1e3
    stamps = [T0 + (500 if i % 2 == 0 else 500 + 50 * i) * MS for i in range(60)]
    for f in at_stamps(stamps):
        ev.add(f)
    kept = [h.index for h in ev._held]
    assert kept == [i for i in range(1, 60, 2) if 50 * i <= gap_ms]
    assert ev.summary()["interp_skipped"] == 30 and pipeline.stats.drops["stamp_duplicate"] == 29


def test_the_pipeline_s_throughput_leaves_the_evaluation_out(backend):
    pipeline = StreamingPipeline(backend, PipelineConfig())
    ev = StreamEvaluator(pipeline, stride=2)
    for f in frames(5):
        ev.add(f)
    s = ev.summary()
    totals = [r["latency_ms"]["total"] for r in ev.records if r["kind"] == "key"]
    assert s["pipeline_fps"] == pytest.approx(1e3 * len(totals) / sum(totals))
    with pytest.raises(ValueError, match="max_held"):
        dataclasses.replace(ev, max_held=0)


def test_a_held_out_frame_stamped_outside_its_pair_is_scored_against_the_nearest_key_frame(backend):
    """A held-out frame stamped before its pair's first key frame (an out-of-order bag; within max_gap_s) has a pair
    time below 0: the network renders it there, but both baselines interpolate the key frames, never extrapolate
    them: the blend and the flow warp both give the first key frame."""
    ev = StreamEvaluator(StreamingPipeline(backend, PipelineConfig(motion_prior="none")))
    clip = at_stamps([T0, T0 - 20 * MS, T0 + 100 * MS])
    for f in clip:
        ev.add(f)
    [held] = [r for r in ev.records if r["kind"] == "interp"]
    assert held["pair_time"] == pytest.approx(-0.2)
    first = image_scores(ev._model_rgb(clip[0].rgb), ev._model_rgb(clip[1].rgb).astype(np.float32))
    assert held["blend_psnr"] == pytest.approx(first["psnr"]) and held["blend_ssim"] == pytest.approx(first["ssim"])
    assert held["flow_warp_psnr"] == pytest.approx(first["psnr"], abs=0.05)
