"""Input matching for the node, free of ROS: stamp-keyed bounded buffers and a newest-only hand-off slot.

``StampMatcher`` pairs each image with the depth image and CameraInfo of the same stamp (within a tolerance).
``LatestSlot`` hands the newest matched frame to the worker thread; an unconsumed frame is replaced, never queued.
``LossCounter`` counts images lost before they arrived, from publication sequence numbers (or stamp gaps).
All are bounded whatever the input rate.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Matched:
    """An image message with its depth (or None) and CameraInfo (or None); ``stamp_ns`` is the image's."""

    stamp_ns: int
    image: Any
    depth: Any = None
    info: Any = None


class StampMatcher:
    """Match images to depth and CameraInfo by header stamp.

    depth_mode: ``none`` never waits for depth; ``topic`` holds each image until a depth message within
    ``tolerance_ns`` arrives; ``auto`` behaves like ``topic`` while depth messages keep arriving (one seen within
    ``timeout_s``) and like ``none`` otherwise; after a pause of both streams (depth had come within ``timeout_s`` of
    the image before, and the newest image came more than ``timeout_s`` after that one) the newest image waits for
    its depth for ``timeout_s`` (released by the next message or by :meth:`poll`), so that a stream resuming does not
    start without depth for one frame. CameraInfo is taken at the image's stamp when one is buffered,
    else the newest one (intrinsics rarely change); until a first CameraInfo arrives images are held for at most
    ``info_timeout_s`` (default ``timeout_s``) after the first image, then used without one. Each buffer keeps at most
    ``capacity`` messages; held images that are superseded or evicted are counted in ``unmatched``.
    """

    def __init__(self, depth_mode: str, tolerance_ns: int, capacity: int, timeout_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, info_timeout_s: float | None = None):
        if depth_mode not in ("auto", "topic", "none"):
            raise ValueError(f"depth_mode must be auto, topic or none, got {depth_mode!r}")
        self.depth_mode, self.tolerance_ns, self.timeout_s = depth_mode, tolerance_ns, timeout_s
        self.info_timeout_s = timeout_s if info_timeout_s is None else info_timeout_s
        self._clock = clock
        self._images: deque[tuple[int, Any]] = deque()
        self._depths: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self._infos: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self._capacity = capacity
        self._last_depth_arrival: float | None = None
        self._first_image_arrival: float | None = None
        self._image_arrivals: tuple[float | None, float | None] = (None, None)  # (the one before the newest, newest)
        self.unmatched = 0

    @property
    def waits_for_depth(self) -> bool:
        if self.depth_mode == "auto":
            seen, (before, newest) = self._last_depth_arrival, self._image_arrivals
            if seen is None:
                return False
            now, timeout = self._clock(), self.timeout_s
            if now - seen <= timeout:
                return True
            return before is not None and before - seen <= timeout < newest - before and now - newest <= timeout
        return self.depth_mode == "topic"

    @property
    def pending(self) -> int:
        """Images held, waiting for their depth or a first CameraInfo."""
        return len(self._images)

    def add_image(self, stamp_ns: int, image: Any) -> Matched | None:
        """Buffer an image; return the newest matched image, if any."""
        now = self._clock()
        if self._first_image_arrival is None:
            self._first_image_arrival = now
        self._image_arrivals = (self._image_arrivals[1], now)
        self._images.append((stamp_ns, image))
        if len(self._images) > self._capacity:
            self._images.popleft()
            self.unmatched += 1
        return self._match()

    def add_depth(self, stamp_ns: int, depth: Any) -> Matched | None:
        """Buffer a depth image; return the newest image it completes, if any."""
        if self.depth_mode == "none":
            return None
        self._last_depth_arrival = self._clock()
        self._depths.append((stamp_ns, depth))
        return self._match()

    def add_info(self, stamp_ns: int, info: Any) -> Matched | None:
        """Buffer a CameraInfo; return an image that was waiting for a first one, if any."""
        self._infos.append((stamp_ns, info))
        return self._match()

    def poll(self) -> Matched | None:
        """The newest held image whose wait has ended since the last message (see the class), if any: called on a
        timer, so that no image waits on a message that does not come."""
        return self._match()

    def _match(self) -> Matched | None:
        """The newest held image that is complete; older held images are superseded (the worker takes the newest)."""
        if not self._images:
            return None
        if not self._infos and self._clock() - self._first_image_arrival < self.info_timeout_s:
            return None  # wait (briefly) for the first CameraInfo
        need_depth = self.waits_for_depth
        for i in range(len(self._images) - 1, -1, -1):
            stamp, image = self._images[i]
            depth = self._nearest(self._depths, stamp) if need_depth else None
            if need_depth and depth is None:
                continue
            self.unmatched += i
            for _ in range(i + 1):
                self._images.popleft()
            return Matched(stamp, image, depth, self._info_for(stamp))
        return None

    def _info_for(self, stamp_ns: int) -> Any:
        info = self._nearest(self._infos, stamp_ns)
        if info is None and self._infos:
            info = self._infos[-1][1]
        return info

    def _nearest(self, buffer: deque[tuple[int, Any]], stamp_ns: int) -> Any:
        best, best_dt = None, self.tolerance_ns + 1
        for stamp, item in buffer:
            dt = abs(stamp - stamp_ns)
            if dt < best_dt:
                best, best_dt = item, dt
        return best


class LatestSlot(Generic[T]):
    """A queue of depth one between threads: ``put`` replaces an item not yet taken, ``get`` waits for one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced (dropped) an item the consumer had not taken."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` seconds; None on time-out or after ``close``."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting ``get`` for good (used at shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LossCounter:
    """Images lost on the way, per publisher: gaps in publication sequence numbers, else in header stamps.

    With sequence numbers (DDS gives them to rclpy callbacks) a gap of ``g`` means ``g - 1`` lost samples. Without
    them (bags), a stamp interval longer than 1.5 times the median of the recent intervals counts the frames that
    would fit in it; a backwards or very long jump (> ``max_gap_ns``) is a new stream, not a loss. Intervals under
    ``min_period_ns`` (a driver flushing buffered frames, stamps repeated) are a burst, not a frame rate: left out
    of the median, so they cannot turn the next ordinary interval into thousands of losses. (A camera that lowers
    its frame rate reads as losses until the median has followed, about half a window.)
    """

    #: publishers whose last sequence number is kept (the most recent ones; a camera driver restarted again and again
    #: is a new publisher each time)
    MAX_PUBLISHERS = 16

    def __init__(self, window: int = 31, max_gap_ns: int = 1_000_000_000, min_period_ns: int = 1_000_000):
        self.lost = 0
        self.max_gap_ns = max_gap_ns
        self.min_period_ns = min_period_ns
        self._last_seq: OrderedDict[Any, int] = OrderedDict()
        self._last_stamp: int | None = None
        self._intervals: deque[int] = deque(maxlen=window)
        self._unstamped = 0  # images with an unreadable stamp since the last stamp (they filled slots of the gap)

    def add(self, stamp_ns: int | None, seq: int | None = None, publisher: Any = None) -> int:
        """Record one received image; return how many were lost just before it. ``stamp_ns`` None: its stamp is
        unreadable (the image is dropped), but it arrived: its sequence number still counts."""
        lost = 0
        if seq is not None and seq > 0:
            last = self._last_seq.pop(publisher, None)
            if last is not None and seq > last:
                lost = seq - last - 1
            self._last_seq[publisher] = seq  # (now the most recent)
            if len(self._last_seq) > self.MAX_PUBLISHERS:
                self._last_seq.popitem(last=False)
        elif stamp_ns is None:
            self._unstamped += 1
        elif self._last_stamp is not None:
            dt = stamp_ns - self._last_stamp
            if self.min_period_ns <= dt <= self.max_gap_ns:
                if len(self._intervals) >= 3:
                    period = sorted(self._intervals)[len(self._intervals) // 2]
                    if dt > 1.5 * period:
                        lost = max(0, round(dt / period) - 1 - self._unstamped)
                if not self._unstamped:  # (an interval with unstamped images in it is not a frame period)
                    self._intervals.append(dt)
        if stamp_ns is not None:
            self._last_stamp, self._unstamped = stamp_ns, 0
        self.lost += lost
        return lost

    def restart(self) -> None:
        """Forget the sequence numbers, stamps and intervals the next image is compared with, keeping the count: the
        next image starts a fresh baseline (the images published while nobody was subscribed were not lost)."""
        self._last_seq.clear()
        self._last_stamp, self._unstamped = None, 0
        self._intervals.clear()
