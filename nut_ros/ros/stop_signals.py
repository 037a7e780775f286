"""Stop signals of the node process: SIGINT, SIGTERM and SIGHUP raise :class:`Stop` in the main thread, whatever it
is doing (``nut_ros.ros.node`` installs :func:`on_signal` before anything heavy is imported), and what arrived is
remembered for the code that catches every ``Exception`` (:func:`stop_requested`)."""
from __future__ import annotations

import contextlib
import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """Raised in the main thread by a stop signal (a BaseException, so no ``except Exception`` swallows it)."""


_stop_signals: list[int] = []  # the stop signal received, once one has arrived
_deferring: list[bool] = []  # inside deferred() blocks (nested): a signal is remembered, Stop raised after them


def stop_requested() -> bool:
    """Whether a stop signal has arrived. Code that catches every ``Exception`` asks before reporting a failure:
    the ``Stop`` a signal raises inside a C extension can come out as another error (torch turns one raised while
    it builds a tensor from loaded weights into "ValueError: could not determine the shape of object type")."""
    return bool(_stop_signals)


def signal_received() -> int | None:
    """The stop signal that arrived, or None."""
    return _stop_signals[0] if _stop_signals else None


def on_signal(signum, frame):
    """The handler of every stop signal: ignore further ones (the clean-up must not be interrupted), remember this
    one, raise :class:`Stop` (after the :func:`deferred` block it arrives in)."""
    for sig in STOP_SIGNALS:  # a second signal during the clean-up must not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    _stop_signals.append(signum)
    if not _deferring:
        raise Stop(signum)


def on_unraisable(unraisable) -> None:
    """``sys.unraisablehook`` of the node process: a :class:`Stop` raised where Python cannot propagate it (the
    handler can run inside a ``__del__``, a weakref callback or a generator being finalized: "Exception ignored in
    ...") is not printed; the signal is remembered all the same, and the node stops on it."""
    if not isinstance(unraisable.exc_value, Stop):
        sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def deferred():
    """Hold :class:`Stop` back while the block runs (a stop signal that arrives in it is remembered, and ``Stop``
    raised right after the block): for constructors a ``Stop`` must not cut short (rclpy's executor, interrupted
    there, prints a traceback from its ``__del__`` when it is collected). A flag, not the signal mask: DDS threads
    would take a signal the main thread blocks, and Python runs the handler in the main thread anyway."""
    arrived = len(_stop_signals)  # (counted first: a signal between the two lines is then raised after the block)
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
        if len(_stop_signals) > arrived and not _deferring:
            raise Stop(_stop_signals[0])
