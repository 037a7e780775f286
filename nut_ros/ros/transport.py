"""DDS transport of the node's inputs: the shared-memory Fast DDS profile and the input reliability.

Measured on one host (2026-12-03, 90 frames of 1280x720 rgb8 at 30 Hz from another process without the profile):
a best-effort subscription receives none of them over Fast DDS's default transports (UDP fragments are lost), a
reliable one all 90; with ``config/fastdds_shm_large.xml`` in both processes best effort receives all 90 too. So the
node subscribes reliably whenever every publisher offers reliability (``input_reliability: auto``), and falls back
to best effort only for best-effort publishers, which then need the profile as well (the loss warning says so).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_FILE = "fastdds_shm_large.xml"
RELIABILITIES = ("auto", "reliable", "best_effort")


def fastdds_profile_path() -> Path:
    """``config/fastdds_shm_large.xml`` of the source tree or of the installed share folder."""
    here = Path(__file__).resolve().parents[2] / "config" / PROFILE_FILE
    for candidate in (here, Path(sys.prefix) / "share" / "nut_ros" / "config" / PROFILE_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{PROFILE_FILE} not found in the source tree or {sys.prefix}/share/nut_ros/config")


def fastdds_profile_env() -> dict[str, str]:
    """``{FASTDDS_DEFAULT_PROFILES_FILE: <profile>}`` unless the environment already names a profile."""
    if os.environ.get(PROFILE_ENV):
        return {PROFILE_ENV: os.environ[PROFILE_ENV]}
    return {PROFILE_ENV: str(fastdds_profile_path())}


def choose_reliability(setting: str, offered: list[str]) -> str:
    """``reliable`` or ``best_effort`` for a subscription, given the reliabilities the publishers offer.

    ``auto``: reliable when there are publishers and every one offers reliability (a reliable subscription
    would not match a best-effort publisher), best effort otherwise (matches anything; with no publisher yet it is
    revised when one appears).
    """
    if setting not in RELIABILITIES:
        raise ValueError(f"input_reliability must be one of {', '.join(RELIABILITIES)}, got {setting!r}")
    if setting != "auto":
        return setting
    return "reliable" if offered and all(r == "reliable" for r in offered) else "best_effort"


def loss_advice(reliability: str, setting: str = "auto") -> str:
    """How to stop losing input frames, for the loss warning: ``reliability`` is the subscription's, ``setting`` the
    ``input_reliability`` parameter that chose it."""
    if reliability == "best_effort" and setting == "best_effort":
        return ("input_reliability is best_effort, so images the network drops are lost: set it to auto or reliable "
                "(with a reliable publisher), or give large images the shared-memory profile "
                f"({PROFILE_ENV}={fastdds_profile_path()}) in the camera's process too")
    if reliability == "best_effort":
        return (f"the subscription is best effort (a publisher offers only best effort): large images need the "
                f"shared-memory profile in the camera's process too ({PROFILE_ENV}={fastdds_profile_path()}), "
                f"or a reliable publisher")
    return ("the node is slower than the camera or the publisher's history is too short: raise the publisher's "
            "queue depth or lower the camera rate (max_rate does not help: it drops after delivery)")
