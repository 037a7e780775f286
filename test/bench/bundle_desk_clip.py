"""Write ``nut_ros/data/desk/``, the demo's moving-camera clip, from TUM RGB-D fr1_rpy (``../shared/data/train_rgbd``,
CC BY 4.0; its training part, frames 100-158, every 2nd): colour undistorted at 640x480 and resized to 320x240 (JPEG
q85), the motion-capture poses at the colour stamps (camera optical frame to world, 16 numbers per line, one line per
frame) and the Kinect depth undistorted at 320x240 (uint16 millimetres, 0 unknown), which the demo shows beside its
own depth but never gives the node.

    .venv/bin/python test/bench/bundle_desk_clip.py --shared ../shared
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from nut_ros.pipeline.sequences import tum
from nut_ros.tools.demo import DESK_DIR, DESK_SIZE, DESK_START, DESK_STRIDE, DESK_FRAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    args = ap.parse_args()
    (DESK_DIR / "rgb").mkdir(parents=True, exist_ok=True)
    (DESK_DIR / "kinect").mkdir(parents=True, exist_ok=True)
    indices = range(DESK_START, DESK_START + DESK_STRIDE * DESK_FRAMES, DESK_STRIDE)
    poses = []
    for n, sf in enumerate(tum(args.shared / "data" / "train_rgbd" / "tum_fr1_rpy", indices)):
        rgb = cv2.resize(sf.frame.rgb, DESK_SIZE, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(DESK_DIR / "rgb" / f"{n:03d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 85])
        depth = cv2.resize(np.nan_to_num(sf.depth_m), DESK_SIZE, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(DESK_DIR / "kinect" / f"{n:03d}.png"), np.round(depth * 1000).astype(np.uint16))
        poses.append(" ".join(f"{v:.9g}" for v in sf.frame.camera_pose.reshape(-1)))
    (DESK_DIR / "poses.txt").write_text("\n".join(poses) + "\n")
    print(f"{len(poses)} frames in {DESK_DIR}")


if __name__ == "__main__":
    main()
