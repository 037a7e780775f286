"""test/bench/bench_pipeline.py's bookkeeping (its pipeline replaced by one whose n-th frame takes n ms): every
timed frame in the percentiles, the first timed frames' totals, and a warm-up that leaves nothing to time."""
from types import SimpleNamespace

import numpy as np
import pytest
from bench import bench_pipeline

from nut_ros.pipeline.stats import StreamStats
from nut_ros.pipeline.types import Frame

CLIP = 100  # frames of the stand-in clip


class CountingPipeline:
    """The n-th pushed frame's total latency is n ms."""

    motion_prior = flow_settings = "none"

    def __init__(self, backend, config):
        self.stats = StreamStats()

    def push(self, frame):
        total = float(self.stats.frames_in)
        self.stats.frames_in += 1
        self.stats.record({"total": total})
        return SimpleNamespace(latency_ms={"total": total})


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.setattr(bench_pipeline, "clip_frames", lambda: [Frame(np.zeros((8, 8, 3), np.uint8), 0)] * CLIP)
    monkeypatch.setattr(bench_pipeline, "load_torch_model", lambda *args: None)
    monkeypatch.setattr(bench_pipeline, "TorchBackend", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench_pipeline, "StreamingPipeline", CountingPipeline)
    return bench_pipeline.main


@pytest.mark.parametrize("warmup", [0, 100])
def test_more_than_a_thousand_timed_frames_are_all_in_the_percentiles(bench, warmup):
    report = bench(["--repeat", "12", "--warmup", str(warmup)])
    timed = np.arange(warmup, 12 * CLIP, dtype=float)
    assert report["frames"] == len(timed) > 1000
    total = report["latency_ms"]["total"]
    assert total == {"p50": round(np.percentile(timed, 50), 2), "p90": round(np.percentile(timed, 90), 2),
                     "p99": round(np.percentile(timed, 99), 2), "max": timed[-1]}
    assert report["first_frames_ms"] == [warmup, warmup + 1.0, warmup + 2.0]


@pytest.mark.parametrize("warmup", ["200", "201", "-1"])
def test_a_warm_up_that_leaves_no_frame_to_time_is_refused(bench, capsys, warmup):
    with pytest.raises(SystemExit) as exit_:
        bench(["--repeat", "2", "--warmup", warmup])
    assert exit_.value.code == 2
    assert f"--warmup must be at least 0 and fewer than the 200 frames played (2 x the clip), got {warmup}" in (
        capsys.readouterr().err)
