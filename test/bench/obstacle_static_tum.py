"""False obstacles on real training footage: TUM fr1_rpy's training part (the first 80 %) is a static desk filmed by
a handheld Kinect, with depth registered to the colour camera and motion-capture poses. Every reported obstacle is a
false alarm, so the fraction of frames with none is the static-scene figure on real data (the generated static
scenes are the other half of that goal). Training data: thresholds may be tuned here.

    .venv/bin/python test/bench/obstacle_static_tum.py --frames 100 --step 2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from nut_ros.perception import PerceptionProcessor
from nut_ros.pipeline import sequences
from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

TUM = Path(__file__).resolve().parents[3] / "shared" / "data" / "train_rgbd" / "tum_fr1_rpy"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tum", type=Path, default=TUM)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--step", type=int, default=2, help="every n-th frame (30 Hz / n)")
    args = ap.parse_args(argv)
    train = int(0.8 * sequences.tum_frame_count(args.tum))  # the validation part (last 20 %) is never read
    pipe = StreamingPipeline(make_backend("torch", args.model, None, "cpu"), PipelineConfig())
    results = []
    for sf in sequences.tum(args.tum, list(range(0, train, args.step))[:args.frames]):
        f = sf.frame
        depth = cv2.resize(sf.depth_m.astype(np.float32), (f.rgb.shape[1], f.rgb.shape[0]),
                           interpolation=cv2.INTER_NEAREST)
        result = pipe.push(Frame(f.rgb, f.stamp_ns, depth_m=depth, intrinsics=f.intrinsics))
        if result is not None:
            results.append((result, f.camera_pose))
    for odometry in (True, False):
        proc = PerceptionProcessor(seed=0)
        empty, moving = 0, []
        for result, pose in results:
            out = proc.update(result, pose if odometry else None)
            empty += len(out.obstacles) == 0
            moving.append(out.moving_gaussians)
        print(f"TUM fr1_rpy train (static), {'odometry' if odometry else 'no odometry'}: frames with no obstacle "
              f"{empty}/{len(results)} = {empty / len(results):.3f}; moving Gaussians per frame p50 "
              f"{np.median(moving):.0f}")


if __name__ == "__main__":
    main()
