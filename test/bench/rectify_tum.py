"""Raw images of a distorting lens through the node's frame building, rectified (``rectify``) or not: TUM fr1_rpy
(training part) as its camera records it, with its calibration in the CameraInfo, RGB + the motion-capture poses as
odometry, depth from motion. Scores each run's rendered depth (metric, and scale+shift) against the Kinect depth in
the same geometry as the run's images: undistorted for the rectified run, raw for the other. Prints one JSON line
per run.

    .venv/bin/python test/bench/rectify_tum.py --shared ../shared --frames 90 --stride 3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.rectify import Rectifier
from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.evaluation import StreamEvaluator
from nut_ros.pipeline.sequences import TUM_FR1, depth_mm, read_rgb, tum_depth, tum_groundtruth, tum_pose_at, tum_rows
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import PipelineConfig
from nut_ros.ros.camera_info import intrinsics_to_camera_info
from nut_ros.ros.conversions import numpy_to_image
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.inputs import frame_from_messages

FLAVOR = "rosbags"
KEYS = ("depth_abs_rel", "depth_abs_rel_input", "depth_abs_rel_affine", "depth_abs_rel_affine_input",
        "depth_abs_rel_constant", "depth_abs_rel_ramp", "depth_abs_rel_affine_constant", "depth_abs_rel_affine_ramp")


def camera_info(stamp_ns: int, width: int, height: int):
    """TUM fr1's colour camera as its CameraInfo: K, plumb_bob ``d``, P = K (rectified onto the same camera)."""
    (fx, fy, cx, cy), d = TUM_FR1
    msg = intrinsics_to_camera_info(Intrinsics(fx, fy, cx, cy, width, height), stamp_ns, "cam", FLAVOR)
    msg.d = np.array(d)
    return msg


def run(folder: Path, indices, rectify: bool, model: str) -> dict:
    rows, gt = tum_rows(folder), tum_groundtruth(folder)
    torch.manual_seed(0)
    pipeline = StreamingPipeline(make_backend("torch", model, None, "cpu"), PipelineConfig())
    evaluator = StreamEvaluator(pipeline, stride=1)
    rectifier = Rectifier() if rectify else None
    notes = set()
    with torch.no_grad():
        for i in indices:
            index, stamp = rows[i][0], float(rows[i][1])
            stamp_ns = round(stamp * 1e9)
            rgb = read_rgb(folder / "rgb" / f"{index}.jpg")
            h, w = rgb.shape[:2]
            image = numpy_to_image(rgb, "rgb8", stamp_ns, "cam", FLAVOR)
            built = frame_from_messages(Matched(stamp_ns, image, None, camera_info(stamp_ns, w, h)), 1e-3,
                                        camera_pose=tum_pose_at(gt, stamp), rectifier=rectifier)
            notes.update(built.notes)
            # the truth in the geometry of the run's images
            depth = tum_depth(folder, index) if rectify else depth_mm(folder / "depth" / f"{index}.png")
            evaluator.add(built.frame, depth)
    summary = evaluator.summary()["depth"]
    return {"rectify": rectify, **{k: summary.get(k) for k in KEYS},
            "frames": summary["frames"].get("depth_abs_rel"), "notes": sorted(notes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--start", type=int, default=0, help="first frame (the training part is frames 0-554)")
    ap.add_argument("--frames", type=int, default=90, help="frames read (every --stride-th from --start)")
    ap.add_argument("--stride", type=int, default=3)
    args = ap.parse_args()
    folder = Path(args.shared) / "data" / "train_rgbd" / "tum_fr1_rpy"
    indices = range(args.start, args.start + args.frames * args.stride, args.stride)
    for rectify in (True, False):
        print(json.dumps(run(folder, indices, rectify, args.model)), flush=True)


if __name__ == "__main__":
    main()
