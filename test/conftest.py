"""Shared pytest configuration: markers for tests that need a GPU, ../shared data, ROS 2 or the real ROS 2 tools."""
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


def _importable(*modules: str) -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


ROS_TOOLS = ("launch", "launch_ros", "launch_testing", "launch_testing_ros", "ros2cli", "ros2lifecycle",
             "sensor_msgs_py", "message_filters")
TOOLS_WHY = ("needs the real ROS 2 tools (ros2 CLI, launch, launch_testing, sensor_msgs_py, message_filters): "
             "`make ros-tools` installs them from ../shared/ros2_tools")


def pytest_configure(config):
    config.addinivalue_line("markers", "ros_tools: needs the real ROS 2 tools installed by `make ros-tools`")
    config.addinivalue_line("markers", "cv_bridge: needs cv_bridge (`make ros-tools` with its apt build packages)")


def pytest_collection_modifyitems(config, items):
    skips = {
        "gpu": (not _has_cuda(), "needs a CUDA GPU"),
        "shared": (not SHARED.is_dir(), f"needs the shared data folder ({SHARED})"),
        "ros": (not _has_ros(), "needs rclpy and the built nut_ros_msgs"),
        "ros_tools": (not (_has_ros() and _importable(*ROS_TOOLS)), TOOLS_WHY),
        "cv_bridge": (not _importable("cv_bridge"), "needs cv_bridge, built by `make ros-tools` only when "
                      "libboost-python-dev and libopencv-{core,imgproc,imgcodecs}-dev are installed"),
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
