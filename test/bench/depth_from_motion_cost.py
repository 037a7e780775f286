"""Per-frame CPU cost of depth from motion inside the streaming pipeline: the same frames through ``tiny`` with
``depth_from_motion`` "auto" and "off", per-stage p50 latency (depth from motion runs in "preprocess").

    OMP_NUM_THREADS=2 .venv/bin/python test/bench/depth_from_motion_cost.py [--frames 60]

Frames: the bundled cups clip (a mostly still camera: the cheap path, tracks only) and TUM fr1_rpy's first frames
every 3rd (a moving camera: the full estimate) with their motion-capture poses as odometry and without, all with
their intrinsics or the assumed FOV.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import nut_ros
from nut_ros.pipeline import sequences
from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def clips(n: int):
    cups = sorted((Path(nut_ros.__file__).parent / "data" / "cups").glob("*.jpg"))[:n]
    yield "cups (bundled, 512x288)", [Frame(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), 10**9 + i * 66_666_667)
                                      for i, p in enumerate(cups)]
    tum = SHARED / "train_rgbd" / "tum_fr1_rpy"
    if tum.is_dir():
        frames = [sf.frame for sf in sequences.tum(tum, range(0, 3 * n, 3))]
        yield "TUM fr1_rpy with odometry (mocap poses; 640x480, every 3rd)", frames
        yield "TUM fr1_rpy (640x480, every 3rd)", [dataclasses.replace(f, camera_pose=None) for f in frames]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=60)
    args = p.parse_args()
    torch.set_num_threads(2)
    backend = make_backend("torch", "tiny")
    for name, frames in clips(args.frames):
        for mode in ("off", "auto"):
            pipe = StreamingPipeline(backend, PipelineConfig(depth_from_motion=mode))
            lat, sources = [], {}
            start = time.perf_counter()
            with torch.no_grad():
                for f in frames:
                    r = pipe.push(f)
                    lat.append(r.latency_ms)
                    sources[r.depth_source] = sources.get(r.depth_source, 0) + 1
            wall = time.perf_counter() - start
            p50 = {k: np.median([x[k] for x in lat[1:] if k in x]) for k in lat[-1]}
            print(f"{name}, depth_from_motion={mode}: {len(frames) / wall:.2f} frames/s; p50 ms "
                  + ", ".join(f"{k} {v:.1f}" for k, v in p50.items()) + f"; sources {sources}")


if __name__ == "__main__":
    main()
