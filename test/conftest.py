"""Shared pytest configuration: markers for tests that need a GPU, ../shared data or ROS 2."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUT_ROS_SHARED", REPO.parent / "shared"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _has_ros() -> bool:
    try:
        import rclpy  # noqa: F401
        import nut_ros_msgs.msg  # noqa: F401

        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skips = {
        "gpu": (not _has_cuda(), "needs a CUDA GPU"),
        "shared": (not SHARED.is_dir(), f"needs the shared data folder ({SHARED})"),
        "ros": (not _has_ros(), "needs rclpy and the built nut_ros_msgs"),
    }
    for item in items:
        for name, (skip, why) in skips.items():
            if skip and name in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def shared_dir() -> Path:
    return SHARED
