"""Per-frame CPU cost of depth from motion: inside the streaming pipeline (the same frames through ``tiny`` with
``depth_from_motion`` "auto" and "off", per-stage p50 latency; depth from motion runs in "preprocess"), or with
``--estimate-only`` :meth:`DepthFromMotion.estimate` alone, every clip ``--repeats`` times from a fresh estimator
(per-frame wall p50 over all runs and of each frame's fastest run, the load average beside), optionally profiled.

    OMP_NUM_THREADS=2 .venv/bin/python test/bench/depth_from_motion_cost.py [--frames 60]
    OMP_NUM_THREADS=1 .venv/bin/python test/bench/depth_from_motion_cost.py --estimate-only [--repeats 5]
        [--cv-threads 1] [--profile 25]  # cProfile of estimate: the 25 costliest functions by own time

Frames: the bundled cups clip (a mostly still camera: the cheap path, tracks only; also with odometry that says
the camera stands still, a robot at rest) and TUM fr1_rpy's first frames
every 3rd (a moving camera: the full estimate) with their motion-capture poses as odometry and without, all with
their intrinsics or the assumed FOV.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import time
from pathlib import Path

import cv2
import numpy as np

import nut_ros
from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.depth_from_motion import DepthFromMotion
from nut_ros.pipeline import sequences
from nut_ros.pipeline.types import Frame, PipelineConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def clips(n: int):
    cups = sorted((Path(nut_ros.__file__).parent / "data" / "cups").glob("*.jpg"))[:n]
    still = [Frame(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), 10**9 + i * 66_666_667)
             for i, p in enumerate(cups)]
    yield "cups (bundled, 512x288)", still
    yield "cups with still odometry (identity poses)", [dataclasses.replace(f, camera_pose=np.eye(4)) for f in still]
    tum = SHARED / "train_rgbd" / "tum_fr1_rpy"
    if tum.is_dir():
        frames = [sf.frame for sf in sequences.tum(tum, range(0, 3 * n, 3))]
        yield "TUM fr1_rpy with odometry (mocap poses; 640x480, every 3rd)", frames
        yield "TUM fr1_rpy (640x480, every 3rd)", [dataclasses.replace(f, camera_pose=None) for f in frames]


def in_pipeline(args) -> None:
    import torch

    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.stream import StreamingPipeline

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


def estimate_only(args) -> None:
    """:meth:`DepthFromMotion.estimate` alone, at the pipeline's working width."""
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    width = PipelineConfig().motion_depth_width
    print(f"estimate alone, max_width {width}, cv2 threads {cv2.getNumThreads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    for name, frames in clips(args.frames):
        ks = [f.intrinsics or Intrinsics.from_fov(f.rgb.shape[1], f.rgb.shape[0]) for f in frames]
        ms = np.zeros((args.repeats, len(frames)))
        profile = cProfile.Profile() if args.profile else None
        with_depth = 0
        for r in range(args.repeats):
            dfm = DepthFromMotion(dataclasses.replace(DepthFromMotion().config, max_width=width))
            for i, (f, k) in enumerate(zip(frames, ks)):
                t0 = time.perf_counter()
                if profile is not None:
                    profile.enable()
                out = dfm.estimate(f.rgb, f.stamp_ns, k, f.camera_pose)
                if profile is not None:
                    profile.disable()
                ms[r, i] = (time.perf_counter() - t0) * 1e3
                with_depth += out is not None
        print(f"{name}: {len(frames)} frames x {args.repeats}, {with_depth / args.repeats:.0f} with depth; wall ms "
              f"p50 {np.median(ms[:, 1:]):.2f} p90 {np.percentile(ms[:, 1:], 90):.2f}, per-frame best p50 "
              f"{np.median(ms[:, 1:].min(0)):.2f}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--estimate-only", action="store_true", help="time DepthFromMotion.estimate alone")
    p.add_argument("--repeats", type=int, default=5, help="with --estimate-only: runs of every clip")
    p.add_argument("--cv-threads", type=int, help="with --estimate-only: cv2.setNumThreads (default: OpenCV's)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="with --estimate-only: print the N costliest functions (cProfile, own time)")
    args = p.parse_args()
    (estimate_only if args.estimate_only else in_pipeline)(args)


if __name__ == "__main__":
    main()
