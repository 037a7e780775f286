"""The node process's stop signals (no ROS needed)."""
import os
import signal
import time

import pytest

from nut_ros.ros import stop_signals
from nut_ros.ros.stop_signals import STOP_SIGNALS, Stop, deferred, on_signal


def test_a_stop_signal_inside_deferred_arrives_once_the_block_is_done(monkeypatch):
    """A signal that lands while an executor is being built must not cut its constructor short: ``deferred`` holds
    the :class:`Stop` back until the block is done."""
    monkeypatch.setattr(stop_signals, "_stop_signals", [])
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, on_signal)
    finished = []
    try:
        with pytest.raises(Stop):
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # (the handler runs here)
                finished.append(True)
        assert finished == [True] and stop_signals.signal_received() == signal.SIGTERM
        with pytest.raises(Stop):  # outside the block a signal stops at once
            monkeypatch.setattr(stop_signals, "_stop_signals", [])
            on_signal(signal.SIGTERM, None)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_stop_python_cannot_raise_is_not_printed_other_errors_are(monkeypatch):
    """``on_unraisable``: a Stop raised inside a ``__del__`` is kept quiet (the signal is remembered where it was
    received); any other exception there still reaches Python's default hook."""
    import sys

    seen = []
    monkeypatch.setattr(sys, "__unraisablehook__", seen.append)
    monkeypatch.setattr(sys, "unraisablehook", stop_signals.on_unraisable)

    class Raises:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    Raises(Stop(signal.SIGTERM))
    assert seen == []
    Raises(RuntimeError("a real error"))
    assert len(seen) == 1 and isinstance(seen[0].exc_value, RuntimeError)

