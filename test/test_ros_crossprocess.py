"""Two Python processes exchange an Image and 150k-Gaussian GaussianSets over DDS (loopback only, own domain)."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parent / "fixtures" / "ros_xproc_peer.py"


@pytest.mark.ros
@pytest.mark.parametrize("transport", ["default", "shm_profile"])
def test_image_and_gaussians_cross_process(tmp_path, transport):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(tmp_path / "log"),
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 100)), PYTHONUNBUFFERED="1")
    # A private domain per transport so the two parametrisations cannot see each other.
    env["ROS_DOMAIN_ID"] = str((int(env["ROS_DOMAIN_ID"]) + (transport == "shm_profile")) % 101 + 1)
    if transport == "shm_profile":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm_large.xml")
    peers = {role: subprocess.Popen([sys.executable, str(PEER), role], env=env, cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for role in ("sub", "pub")}
    try:
        out = {role: p.communicate(timeout=90) for role, p in peers.items()}
    finally:
        for p in peers.values():
            p.kill()
    for role, p in peers.items():
        assert p.returncode == 0, f"{role} failed:\n{out[role][1][-3000:]}"
    result = json.loads(out["sub"][0].strip().splitlines()[-1])
    assert result["image"] == [[i, True] for i in range(3)]
    assert result["gaussians"] == [[i, True] for i in range(3)]
    assert "Error" not in out["pub"][1] + out["sub"][1], "Fast DDS reported an error (XML profile?)"
