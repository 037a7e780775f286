"""Warnings throttled per kind of message, where rclpy throttles per call site.

One call site logs many kinds of problem (each dropped frame's reason, each adaptation of an input): throttled per
call site, the first kind to recur would hide every other one for good. A kind is the message with its numbers
masked, so "frame at 1 ns dropped: stamp_duplicate" and "... at 2 ns ..." are one kind, an unsupported encoding and
a short data field two.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class KindThrottle:
    """Whether a message may be logged now: at most once per ``period_s`` per kind; the ``max_kinds`` most recent
    kinds are remembered (a stream of ever new kinds is logged, in bounded memory). Thread-safe."""

    def __init__(self, period_s: float, max_kinds: int = 64):
        self.period_s, self.max_kinds = period_s, max_kinds
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def ready(self, message: str, now: float | None = None) -> bool:
        kind = _NUMBER.sub("#", message)
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period_s:
                return False
            self._last[kind] = now
            self._last.move_to_end(kind)
            while len(self._last) > self.max_kinds:
                self._last.popitem(last=False)
        return True
