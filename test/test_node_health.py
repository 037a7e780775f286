"""Node counters -> PipelineStats and /diagnostics levels (ROS-free, rosbags message flavor)."""
import threading

import pytest

from nut_ros.ros.health import ERROR, OK, WARN, NodeHealth, Snapshot, assess, diagnostics_message, stats_message

INFO = {"backend": "torch", "model": "tiny", "depth_source": "topic", "metric": True}


@pytest.mark.parametrize("now, busy, error, level, text", [
    (Snapshot(1.0, 10, 10), None, None, OK, "processing at 10.0 Hz"),
    (Snapshot(1.0, 0, 0), None, None, WARN, "no input images"),
    (Snapshot(1.0, 5, 0), 0.5, None, OK, "processing a frame"),
    (Snapshot(1.0, 5, 0), 45.0, None, WARN, "5 images received, none processed"),
    (Snapshot(1.0, 10, 2, 0, 8), None, None, WARN, "8 of 10 images invalid"),
    # depth at half the colour rate: every other image finds no depth image; the frames that do are processed
    (Snapshot(1.0, 10, 5, 0, 5, unpaired=5), None, None, OK, "processing at 5.0 Hz"),
    (Snapshot(1.0, 10, 2, 0, 8, unpaired=2), None, None, WARN, "6 of 10 images invalid"),
    (Snapshot(1.0, 10, 0, 0, 10, unpaired=10), 45.0, None, WARN, "10 had no depth image"),
    (Snapshot(1.0, 10, 10, depth_unusable=6), None, None, WARN, "6 of 10 frames without depth"),
    (Snapshot(1.0, 10, 10, depth_unusable=2), None, None, OK, "processing at 10.0 Hz"),
    (Snapshot(1.0, 10, 10), None, "FileNotFoundError: no weights", ERROR, "model not loaded: FileNotFoundError"),
])
def test_assess_levels(now, busy, error, level, text):
    got_level, message = assess(Snapshot(0.0), now, error, busy)
    assert got_level == level and text in message


def test_counters_are_thread_safe_and_periods_chain():
    health = NodeHealth()
    threads = [threading.Thread(target=lambda: [health.count(received=1, processed=1) for _ in range(1000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first_last, first_now = health.period()
    assert (first_now.received, first_now.processed) == (4000, 4000)
    second_last, _ = health.period()
    assert second_last == first_now


def test_latency_window_is_bounded_and_averaged():
    health = NodeHealth(window=3)
    for ms in (100.0, 1.0, 2.0, 3.0):
        health.record_latency({"encode": ms, "total": 2 * ms, "preprocess": 9.0})
    assert health.mean_latency("encode") == 2.0 and health.mean_latency("total") == 4.0
    assert health.mean_latency("render") == 0.0


def test_stats_and_diagnostics_messages_mirror_the_counters():
    health = NodeHealth()
    health.count(received=7, processed=5, dropped_queue=1, dropped_invalid=1)
    health.record_latency({"encode": 10.0, "decode": 20.0, "render": 30.0, "total": 70.0})
    last, now = Snapshot(0.0), Snapshot(2.0, 7, 5, 1, 1)
    stats = stats_message(health, last, now, INFO, gaussians_live=18432, stamp_ns=5, flavor="rosbags")
    assert (stats.frames_received, stats.frames_processed, stats.frames_dropped_queue,
            stats.frames_dropped_invalid, stats.gaussians_live) == (7, 5, 1, 1, 18432)
    assert stats.rate_hz == 2.5 and stats.latency_total_ms == 70.0 and stats.metric and stats.backend == "torch"
    diag = diagnostics_message(stats, OK, "fine", "nut_ros: pipeline", "torch/cpu", 5, "rosbags")
    (status,) = diag.status
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == OK and status.name == "nut_ros: pipeline" and status.hardware_id == "torch/cpu"
    assert values["frames_processed"] == "5" and values["metric"] == "true" and values["rate_hz"] == "2.50"
