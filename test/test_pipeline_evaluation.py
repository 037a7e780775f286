"""StreamEvaluator: key/held-out bookkeeping, pair times from stamps and the frame-blending baseline."""
import numpy as np
import pytest
import torch

from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.evaluation import StreamEvaluator
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

MS = 1_000_000


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    return StreamingPipeline(TorchBackend(build_model("tiny", image_size=(48, 96))), PipelineConfig())


def test_cross_fade_is_matched_exactly_by_the_blend_baseline(pipeline):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (48, 96, 3))
    b = rng.uniform(0, 255, (48, 96, 3))
    stamps = [0, 25, 100, 130, 200]  # uneven: held-out frames sit at pair times 0.25 and 0.3
    weights = [0.0, 0.25, 1.0, 0.3, 1.0]  # key frames a, b, a; the held-out frames are exact linear fades
    ev = StreamEvaluator(pipeline, stride=2)
    pipeline.reset()
    for s, w in zip(stamps, weights):
        src = (1 - w) * a + w * b if s <= 100 else (1 - w) * b + w * a
        ev.add(Frame(np.rint(src).astype(np.uint8), 10**9 + s * MS))
    interp = [r for r in ev.records if r["kind"] == "interp"]
    assert [r["index"] for r in interp] == [1, 3]
    assert [r["pair_time"] for r in interp] == pytest.approx([0.25, 0.3])
    assert all(r["blend_psnr"] > 45 for r in interp)  # only uint8 rounding separates blend and truth
    s = ev.summary()
    assert (s["key_frames"], s["interp_frames"], s["interp_skipped"]) == (3, 2, 0)
    assert s["blend"]["psnr"] > s["interp"]["psnr"]  # an untrained model does worse than blending
    assert s["blend"]["ssim"] > s["interp"]["ssim"] and 0 < s["flow_warp"]["ssim_256"] <= 1  # baselines: SSIM too
    assert s["copy"]["ssim"] == pytest.approx(1.0) and s["copy"]["psnr"] > s["key"]["psnr"]  # the input, copied
    flow = ["flow"] if pipeline.motion_prior == "flow" else []  # the classical flow's own stage
    assert list(s["latency_ms"]) == ["preprocess", "encode", "decode", *flow, "render", "postprocess", "total"]
    assert "depth" not in s


def test_held_out_frames_survive_a_dropped_key_frame_but_not_a_reset(pipeline):
    pipeline.reset()
    ev = StreamEvaluator(pipeline, stride=2)
    img = np.zeros((48, 96, 3), np.uint8)
    for s in (0, 10, 0, 30, 40, 50, 5000):  # key stamp 0 repeated: dropped; 5000: a gap that resets the stream
        ev.add(Frame(img, 10**9 + s * MS))
    interp = [r for r in ev.records if r["kind"] == "interp"]
    assert [r["pair_time"] for r in interp] == pytest.approx([0.25, 0.75])
    assert ev.summary()["interp_skipped"] == 1 and pipeline.stats.resets["gap"] == 1
    with pytest.raises(ValueError):
        StreamEvaluator(pipeline, stride=0)


def test_an_exact_match_scores_the_8_bit_rounding_limit_not_infinity():
    """A frame equal to its truth (a frozen camera's blend) counts in the means at the PSNR of 8-bit rounding noise
    (10·log10(12·255²) = 58.9 dB) instead of being left out of them as ∞."""
    from nut_ros.pipeline.evaluation import EXACT_PSNR_DB, image_scores

    frame = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    exact = image_scores(frame, frame, with_ssim=False)
    assert exact["psnr"] == exact["psnr_256"] == EXACT_PSNR_DB == pytest.approx(58.92, abs=0.01)
    off = frame.copy()
    off[0, 0, 0] ^= 1  # one grey level in one value: less error than rounding every value, so the limit too
    assert image_scores(frame, off, with_ssim=False)["psnr"] == EXACT_PSNR_DB
    noisy = np.clip(frame.astype(int) + 3, 0, 255).astype(np.uint8)
    assert 30 < image_scores(frame, noisy, with_ssim=False)["psnr"] < EXACT_PSNR_DB
