"""package.xml is a valid format-3 manifest that names what the node and the launch files need at run time, so that
``rosdep install`` on a robot installs it."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_dependencies() -> set[str]:
    catkin_pkg = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg comes with requirements-ros.txt")
    package = catkin_pkg.parse_package(str(REPO / "package.xml"))
    package.validate()  # raises InvalidPackage
    assert package.package_format == 3
    return {d.name for d in package.exec_depends}


def test_every_message_package_the_node_uses_is_a_run_dependency():
    """Every ``pkg/msg/Name`` the node's code names (publishers, subscriptions, messages it builds)."""
    source = "\n".join(p.read_text() for p in (REPO / "nut_ros" / "ros").glob("*.py"))
    used = set(re.findall(r'"([a-z_]+)/msg/[A-Z]\w*"', source)) - {"pkg"}  # (a docstring's placeholder)
    assert {"visualization_msgs", "nav_msgs", "geometry_msgs", "unique_identifier_msgs"} <= used
    assert used - run_dependencies() == set()


def test_the_launch_files_and_optional_imports_are_run_dependencies():
    launch_files = "\n".join(p.read_text() for p in (REPO / "launch").glob("*.launch.py"))
    assert "from launch_ros" in launch_files and '"ros2", "bag", "play"' in launch_files
    assert "import tf2_ros" in (REPO / "nut_ros" / "ros" / "lifecycle_node.py").read_text()
    needed = {"launch", "launch_ros", "ros2launch", "ros2bag", "tf2_ros_py", "rcl_interfaces", "python3-yaml"}
    assert needed - run_dependencies() == set()
