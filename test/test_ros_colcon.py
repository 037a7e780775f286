"""The colcon route for full ROS installs: ``colcon build --paths . nut_ros_msgs`` builds both packages (slow)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.skipif(shutil.which("colcon", path=str(Path(sys.executable).parent)) is None,
                    reason="colcon not installed (make colcon-check installs it)")
def test_colcon_builds_both_packages(tmp_path):
    prefix = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), PATH=f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}")
    build = subprocess.run(
        ["colcon", "--log-base", str(tmp_path / "log"), "build", "--paths", ".", "nut_ros_msgs",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--cmake-args", "-DBUILD_TESTING=OFF"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "2 packages finished" in build.stdout
    install = tmp_path / "install"
    assert (install / "nut_ros_msgs" / "share" / "nut_ros_msgs" / "msg" / "GaussianSet.msg").is_file()
    assert (install / "nut_ros" / "share" / "nut_ros" / "package.xml").is_file()
    # The overlay shadows the venv's copy once sourced (AMENT_PREFIX_PATH must keep the venv: it has no setup.bash).
    probe = ("import nut_ros_msgs.msg, ament_index_python as a; from nut_ros_msgs.msg import GaussianSet; "
             "from rclpy.serialization import serialize_message; serialize_message(GaussianSet()); "
             "print(nut_ros_msgs.msg.__file__); print(a.get_package_share_directory('nut_ros'))")
    run = subprocess.run(["bash", "-c", f"source {install}/setup.bash && python -c \"{probe}\""],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    msg_module, nut_share = run.stdout.split()
    assert msg_module.startswith(str(install)) and nut_share.startswith(str(install))
