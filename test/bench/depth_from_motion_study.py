"""Depth from motion alone (no network) on an RGB-D sequence with poses: semi-dense and dense inverse depth against
the ground truth at the working resolution, per frame, with scale+shift (disparity) and median alignment, and metric
when the poses are used. For tuning ``MotionDepthConfig`` on the training sequences (never on 7-Scenes).

    .venv/bin/python test/bench/depth_from_motion_study.py tum --step 3 [--poses] [--stop 0.8] [--json rows.json]
        [--focal-scale 1.13]  # a camera model whose focal length is 13 % too long (as a depth camera's K on RGB)
        [--pipeline tiny]     # through the streaming pipeline and the evaluator instead: rendered depth, the
                              # motion input (dense) and its semi-dense part, every alignment, on the same pixels

Frames with depth count those whose depth is the fused map carried without a measurement of its own ("held") too;
the errors are over the frames with depth, each beside a constant and a vertical ramp on the same pixels. The dense
fill's own cost (:func:`nut_ros.geometry.densify.densify`, one call per frame with depth) is printed apart, with the
load average: the machine may be shared.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.core.rotations import quaternion_pose
from nut_ros.train.rgbd_pairs import NED_FROM_OPTICAL
from nut_ros.pipeline.types import Frame
from nut_ros.geometry import depth_from_motion
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig
from nut_ros.pipeline.metrics import constant_depth, depth_errors, ramp_depth
from nut_ros.pipeline import sequences

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def tartanair(folder: Path, indices, fps: float = 10.0):
    """TartanAir frames (``pose_left.txt`` NED camera-to-world; fx = fy = 320 at 640x480)."""
    folder = Path(folder)
    poses = np.loadtxt(folder / "pose_left.txt")
    for i in indices:
        rgb = sequences.read_rgb(folder / "rgb" / f"{i:06d}.jpg")
        T = quaternion_pose(poses[i, :3], poses[i, 3:7])
        T[:3, :3] = T[:3, :3] @ NED_FROM_OPTICAL
        k = Intrinsics(320.0, 320.0, 320.0, 240.0, rgb.shape[1], rgb.shape[0])
        depth = sequences.depth_mm(folder / "depth" / f"{i:06d}.png")
        yield sequences.SequenceFrame(Frame(rgb, round(i * 1e9 / fps), intrinsics=k, camera_pose=T), depth)


def frames(name: str, step: int, start: float, stop: float):
    if name == "tum":
        folder = SHARED / "train_rgbd" / "tum_fr1_rpy"
        n = sequences.tum_frame_count(folder)
        return sequences.tum(folder, range(int(start * n), int(stop * n), step))
    if name == "tartanair":
        folder = SHARED / "train_rgbd" / "tartanair_traj"
        n = len(list((folder / "rgb").glob("*.jpg")))
        return tartanair(folder, range(int(start * n), int(stop * n), step))
    if name == "cups":  # bundled, a mostly still camera, no depth: cost only
        import nut_ros
        paths = sorted((Path(nut_ros.__file__).parent / "data" / "cups").glob("*.jpg"))
        return (sequences.SequenceFrame(Frame(cv2.cvtColor(cv2.imread(str(q)), cv2.COLOR_BGR2RGB), i,
                                              intrinsics=Intrinsics.from_fov(512, 288)), np.full((288, 512), np.nan))
                for i, q in enumerate(paths))
    if name == "7scenes":  # measuring only
        return sequences.seven_scenes(SHARED / "sevenscenes_redkitchen", range(0, 150, step))
    raise ValueError(name)


def given_intrinsics(frame: Frame, args) -> Intrinsics:
    k = frame.intrinsics
    return dataclasses.replace(k, fx=k.fx * args.focal_scale, fy=k.fy * args.focal_scale)


def through_pipeline(args) -> None:
    """The frames through ``StreamingPipeline`` (depth from motion, the chosen model) and ``StreamEvaluator``."""
    import torch

    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.evaluation import DEPTH_PREDICTORS, DEPTH_PROTOCOLS, StreamEvaluator
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig

    torch.manual_seed(0)
    pipeline = StreamingPipeline(make_backend("torch", args.pipeline), PipelineConfig())
    evaluator = StreamEvaluator(pipeline, stride=1)
    total = 0
    with torch.no_grad():
        for sf in frames(args.sequence, args.step, args.start, args.stop):
            f, total = sf.frame, total + 1
            evaluator.add(Frame(f.rgb, f.stamp_ns, intrinsics=given_intrinsics(f, args),
                                camera_pose=f.camera_pose if args.poses else None), sf.depth_m)
    d = evaluator.summary()["depth"]
    print(f"{args.sequence} step {args.step} poses={args.poses} {args.pipeline}: sources {d['sources']} of {total}")
    for proto, proto_name in DEPTH_PROTOCOLS.items():
        values = {name: d.get(f"depth_abs_rel{proto}{key}") for key, name in DEPTH_PREDICTORS.items()}
        cells = [f"{name} {np.nan if v is None else v:.3f}" for name, v in values.items()]  # None: not scored
        print(f"  {proto_name:12s} " + " | ".join(cells))


def timing_fill(cpu_ms: list, wall_ms: list):
    """Depth from motion's dense fill, timed: each call's CPU (this thread) and wall milliseconds appended."""
    fill = depth_from_motion.densify

    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fill(*args, **kwargs)
        cpu_ms.append((time.thread_time() - c0) * 1e3)
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        return out
    return timed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("sequence", choices=("tum", "tartanair", "7scenes", "cups"))
    p.add_argument("--step", type=int, default=3)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--stop", type=float, default=1.0)
    p.add_argument("--poses", action="store_true", help="use the ground-truth poses (metric)")
    p.add_argument("--set", nargs="*", default=[], help="MotionDepthConfig overrides key=value")
    p.add_argument("--json", type=Path, help="write the per-frame rows (with their stamps) to this file")
    p.add_argument("--focal-scale", type=float, default=1.0,
                   help="give the estimator intrinsics with fx, fy times this (a wrong camera model)")
    p.add_argument("--pipeline", metavar="MODEL", help="run the streaming pipeline with this model (torch, CPU)")
    args = p.parse_args()
    if args.pipeline:
        return through_pipeline(args)
    cfg = MotionDepthConfig()
    for kv in args.set:
        k, v = kv.split("=")
        kind = type(getattr(cfg, k))
        cfg = dataclasses.replace(cfg, **{k: v in ("1", "true", "True") if kind is bool else kind(v)})
    dfm = DepthFromMotion(cfg)
    cv2.setNumThreads(1)  # the CPU time below is then this thread's
    fill_cpu_ms, fill_ms = [], []
    depth_from_motion.densify = timing_fill(fill_cpu_ms, fill_ms)
    rows, reasons, ms, cpu_ms, total = [], collections.Counter(), [], [], 0
    for sf in frames(args.sequence, args.step, args.start, args.stop):
        f = sf.frame
        total += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        md = dfm.estimate(f.rgb, f.stamp_ns, given_intrinsics(f, args), f.camera_pose if args.poses else None)
        ms.append((time.perf_counter() - t0) * 1e3)
        cpu_ms.append((time.thread_time() - c0) * 1e3)
        if md is None:
            reasons[dfm.last_reason] += 1
            continue
        h, w = md.dense.shape
        gt = cv2.resize(np.nan_to_num(sf.depth_m), (w, h), interpolation=cv2.INTER_NEAREST)
        valid = gt > 0
        row = {"stamp_ns": f.stamp_ns, "held": md.held_frames, "coverage": md.coverage, "parallax": md.parallax_px,
               "focal_scale": md.focal_scale}
        dense = 1.0 / md.dense
        for name, d in (("sparse", 1.0 / np.where(np.isfinite(md.inv_depth), md.inv_depth, np.nan)),
                        ("dense", dense), ("constant", constant_depth((h, w))), ("ramp", ramp_depth((h, w)))):
            row[f"{name}_affine"] = depth_errors(d, gt, valid=valid, align_disparity=True)["abs_rel"]
            row[f"{name}_median"] = depth_errors(d, gt, valid=valid, align_median=True)["abs_rel"]
            if md.metric and name in ("sparse", "dense"):
                row[f"{name}_metric"] = depth_errors(d, gt, valid=valid)["abs_rel"]
        rows.append(row)
    held = sum(r["held"] > 0 for r in rows)
    print(f"{args.sequence} step {args.step} poses={args.poses}: {len(rows)} of {total} frames with depth "
          f"({held} held), no depth {dict(reasons)}")
    print(f"ms per frame: wall p50 {np.percentile(ms, 50):.1f} p90 {np.percentile(ms, 90):.1f}; "
          f"CPU (one thread) p50 {np.percentile(cpu_ms, 50):.1f} p90 {np.percentile(cpu_ms, 90):.1f} "
          f"mean {np.mean(cpu_ms):.1f}")
    if fill_ms:
        print(f"dense fill ms per call ({len(fill_ms)} calls): CPU p50 {np.percentile(fill_cpu_ms, 50):.2f} "
              f"p90 {np.percentile(fill_cpu_ms, 90):.2f}, wall p50 {np.percentile(fill_ms, 50):.2f}; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(rows))
    for k in list(rows[0])[1:] if rows else []:
        v = np.array([r[k] for r in rows], float)
        print(f"  {k:16s} mean {np.nanmean(v):.3f} median {np.nanmedian(v):.3f}")


if __name__ == "__main__":
    main()
