"""Stop signals of the node process: SIGINT, SIGTERM and SIGHUP raise :class:`Stop` in the main thread, whatever it
is doing (``nut_ros.ros.node`` installs :func:`on_signal` before anything heavy is imported), and what arrived is
remembered for the code that catches every ``Exception`` (:func:`stop_requested`)."""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """Raised in the main thread by a stop signal (a BaseException, so no ``except Exception`` swallows it)."""


_stop_signals: list[int] = []  # the stop signal received, once one has arrived


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
    one, raise :class:`Stop`."""
    for sig in STOP_SIGNALS:  # a second signal during the clean-up must not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    _stop_signals.append(signum)
    raise Stop(signum)
