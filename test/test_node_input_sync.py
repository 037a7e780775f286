"""Stamp matching of image/depth/CameraInfo and the newest-only hand-off slot (ROS-free)."""
import threading
import time

import pytest

from nut_ros.ros.input_sync import LatestSlot, StampMatcher

MS = 1_000_000


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def matcher(mode="topic", capacity=4, timeout=1.0):
    clock = Clock()
    m = StampMatcher(mode, tolerance_ns=10 * MS, capacity=capacity, timeout_s=timeout, clock=clock)
    m.add_info(0, "info0")
    return m, clock


def test_depth_mode_topic_waits_for_depth_in_either_order():
    m, _ = matcher("topic")
    assert m.add_image(100 * MS, "img1") is None
    got = m.add_depth(105 * MS, "d1")
    assert (got.stamp_ns, got.image, got.depth, got.info) == (100 * MS, "img1", "d1", "info0")
    assert m.add_depth(200 * MS, "d2") is None
    got = m.add_image(195 * MS, "img2")
    assert (got.image, got.depth) == ("img2", "d2")
    assert m.unmatched == 0 and m.pending == 0


def test_depth_outside_tolerance_never_matches_and_older_images_are_superseded():
    m, _ = matcher("topic")
    m.add_image(100 * MS, "img1")
    assert m.add_depth(120 * MS, "far") is None, "20 ms apart, tolerance 10 ms"
    m.add_image(200 * MS, "img2")
    got = m.add_depth(201 * MS, "d2")
    assert got.image == "img2" and m.unmatched == 1 and m.pending == 0


def test_buffers_stay_bounded_without_depth():
    m, _ = matcher("topic", capacity=4)
    for i in range(100):
        assert m.add_image(i * 100 * MS, f"img{i}") is None
    assert m.pending == 4 and m.unmatched == 96


def test_depth_mode_none_ignores_depth():
    m, _ = matcher("none")
    assert m.add_depth(100 * MS, "d") is None
    got = m.add_image(100 * MS, "img")
    assert got.depth is None and got.image == "img"


def test_auto_mode_waits_only_while_depth_keeps_arriving():
    m, clock = matcher("auto", timeout=1.0)
    assert m.add_image(0, "a").depth is None, "no depth seen yet: images go alone"
    m.add_depth(100 * MS, "d")
    assert m.add_image(300 * MS, "b") is None, "depth is alive: wait for the matching one"
    assert m.add_depth(300 * MS, "d3").image == "b"
    clock.t = 0.5
    assert m.add_image(350 * MS, "b2") is None and m.add_depth(350 * MS, "d4").image == "b2"
    clock.t = 1.7  # both streams paused for 1.2 s
    assert m.add_image(400 * MS, "c") is None, "the first image after a pause of both streams waits for its depth"
    clock.t = 2.6
    assert m.poll() is None, "for the timeout at most"
    clock.t = 2.8
    got = m.poll()
    assert (got.image, got.depth) == ("c", None), "no depth came: it goes alone, released without a new message"
    clock.t = 2.85
    assert m.add_image(450 * MS, "c2").depth is None, "depth stopped for longer than the timeout"
    assert m.unmatched == 0 and m.pending == 0


def test_after_a_pause_of_both_streams_the_first_image_keeps_its_depth():
    """Camera and depth pause together (a driver restart, a gap in a bag); the first image comes back just before its
    depth image: it waits for it instead of starting an RGB-only stream for one frame."""
    m, clock = matcher("auto", timeout=1.0)
    for i in range(3):
        clock.t = 0.1 * i
        m.add_depth(i * 100 * MS, f"d{i}")
        assert m.add_image(i * 100 * MS, f"img{i}").depth == f"d{i}"
    clock.t = 2.7
    assert m.add_image(2_700 * MS, "after") is None
    clock.t = 2.71
    got = m.add_depth(2_700 * MS, "d_after")
    assert (got.image, got.depth) == ("after", "d_after") and m.unmatched == 0


def test_camera_info_at_the_stamp_else_newest():
    m, _ = matcher("none")
    m.add_info(100 * MS, "info100")
    m.add_info(200 * MS, "info200")
    assert m.add_image(101 * MS, "img").info == "info100"
    assert m.add_image(500 * MS, "img").info == "info200"


def test_images_wait_briefly_for_a_first_camera_info():
    clock = Clock()
    m = StampMatcher("none", 10 * MS, 4, timeout_s=1.0, clock=clock)
    assert m.add_image(0, "a") is None
    got = m.add_info(0, "info")
    assert (got.image, got.info) == ("a", "info"), "the held image is released with its CameraInfo"

    m = StampMatcher("none", 10 * MS, 4, timeout_s=1.0, clock=clock)
    assert m.add_image(0, "a") is None
    clock.t = 1.5
    got = m.add_image(100 * MS, "b")
    assert (got.image, got.info) == ("b", None) and m.unmatched == 1, "no CameraInfo at all: go on without"


def test_rejects_unknown_depth_mode():
    with pytest.raises(ValueError, match="depth_mode"):
        StampMatcher("sometimes", 0, 1)


def test_latest_slot_keeps_only_the_newest_and_counts_replacements():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.get(timeout=0) == 2
    assert slot.get(timeout=0.01) is None


def test_latest_slot_close_wakes_a_waiting_consumer():
    slot = LatestSlot()
    woke = []
    consumer = threading.Thread(target=lambda: woke.append(slot.get(timeout=10)))
    consumer.start()
    time.sleep(0.05)
    slot.close()
    consumer.join(timeout=2)
    assert not consumer.is_alive() and woke == [None]
