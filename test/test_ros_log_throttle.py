"""Warnings are throttled per kind of message, so one recurring problem does not hide another."""
from nut_ros.ros.log_throttle import KindThrottle


def test_each_kind_is_throttled_on_its_own():
    t = KindThrottle(5.0)
    assert t.ready("depth is 160x120, resized", now=0.0)
    assert t.ready("depth 1x1 ignored: another aspect ratio", now=0.1)  # another kind: not hidden by the first
    assert not t.ready("depth is 640x480, resized", now=1.0)  # the same kind with other numbers
    assert not t.ready("depth 3x2 ignored: another aspect ratio", now=4.9)
    assert t.ready("depth is 160x120, resized", now=5.0)
    assert t.ready("frame dropped: unsupported encoding 'yuv422'", now=5.0)
    assert t.ready("frame dropped: unsupported encoding 'foo'", now=5.0)


def test_memory_is_bounded_and_the_oldest_kind_is_forgotten():
    t = KindThrottle(5.0, max_kinds=3)
    for name in "abcd":
        assert t.ready(f"problem {name}", now=0.0)
    assert len(t._last) == 3
    assert t.ready("problem a", now=1.0)  # forgotten: logged again
    assert not t.ready("problem d", now=1.0)
