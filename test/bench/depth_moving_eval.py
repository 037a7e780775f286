"""Depth on moving objects beside depth on the static scene: generated validation scenes with exactly known moving
boxes and spheres (:mod:`nut_ros.train.object_scenes`, seeds from ``VALIDATION_SEED0``, the camera always moving),
through the streaming pipeline without a depth image: RGB only (depth from motion, relative) and RGB + odometry
(the true camera poses, metric).

Per key frame the newest rendered depth is scored against the exact depth on the pixels of moving objects and on the
rest (room and static boxes), each under the pipeline run's alignments (metric with odometry; median scale and
disparity scale+shift always, fitted per frame on all valid pixels so both groups share one alignment), beside a
constant depth (scaled like the rendered depth) on the same pixels. Frames without rendered depth (no depth input
yet) are counted, not scored.

    .venv/bin/python test/bench/depth_moving_eval.py --seeds 10000-10009 [--model tiny]
"""
from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone

import sys
from pathlib import Path

import numpy as np
import torch

from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.depth import resize_depth
from nut_ros.pipeline.metrics import depth_errors, disparity_affine, median_scale
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig
from nut_ros.train.object_scenes import ObjectSceneConfig, ObjectSceneGenerator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_tune import seed_range  # noqa: E402

MODES = {"rgb": False, "odometry": True}  # mode -> frames carry their camera pose


def aligned(pred: np.ndarray, gt: np.ndarray, ok: np.ndarray, protocol: str) -> np.ndarray:
    """``pred`` aligned to ``gt`` over the pixels ``ok`` (all groups together): metric (as is), median scale, or
    disparity scale+shift."""
    if protocol == "metric":
        return pred
    if protocol == "median":
        return pred * median_scale(pred, gt, ok)
    s, t = disparity_affine(pred[ok], gt[ok])
    disp = s / np.maximum(pred, 1e-12) + t
    return np.where(disp > 0, 1.0 / np.maximum(disp, 1e-12), np.inf)


def frame_scores(pred: np.ndarray, gt: np.ndarray, moving: np.ndarray, metric: bool) -> dict[str, float]:
    ok = np.isfinite(pred) & (pred > 0) & np.isfinite(gt) & (gt > 0)
    out = {}
    if not ok.any():
        return out
    constant = np.full_like(pred, np.median(pred[ok]))
    for protocol in (("metric",) if metric else ()) + ("median", "scale+shift"):
        for name, depth in (("rendered", pred), ("constant", constant)):
            a = aligned(depth, gt, ok, protocol)
            for group, mask in (("moving", ok & moving), ("static", ok & ~moving)):
                if mask.any():
                    out[f"{protocol}/{group}/{name}"] = depth_errors(a, gt, valid=mask)["abs_rel"]
    return out


def run(seeds: list[int], model: str, camera_speed: float) -> dict:
    gen = ObjectSceneGenerator(ObjectSceneConfig(camera_speed=camera_speed))
    rows = {mode: [] for mode in MODES}
    unscored = {mode: 0 for mode in MODES}
    pipe = StreamingPipeline(make_backend("torch", model), PipelineConfig(render_times=(1.0,)))
    for seed in seeds:
        frames = gen.scene(seed, moving=True, camera_motion=True)
        moving_ids = {o.oid for o in frames[0].objects if o.moving}
        for mode, with_pose in MODES.items():
            pipe.reset()
            for f in frames:
                res = pipe.push(Frame(f.rgb, f.stamp_ns, intrinsics=f.intrinsics,
                                      camera_pose=f.camera_pose if with_pose else None))
                if res is None:
                    continue
                h, w = res.newest.depth.shape
                gt = _resize_nearest(f.depth_m, h, w)
                moving = np.isin(_resize_nearest(f.ids, h, w), list(moving_ids))
                scores = frame_scores(res.newest.depth.astype(np.float64), gt.astype(np.float64), moving, res.metric)
                if scores:
                    rows[mode].append(scores)
                else:
                    unscored[mode] += 1
    summary = {}
    for mode, mode_rows in rows.items():
        keys = sorted({k for r in mode_rows for k in r})
        summary[mode] = {"frames_scored": len(mode_rows), "frames_without_depth": unscored[mode],
                         **{k: float(np.mean([r[k] for r in mode_rows if k in r])) for k in keys}}
    return summary


def _resize_nearest(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """``a`` at the rendered size, by the nearest-neighbour resize the pipeline and its evaluator use."""
    return resize_depth(torch.from_numpy(a.astype(np.float32))[None, None], h, w)[0, 0].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="10000-10009")
    p.add_argument("--model", default="tiny")
    p.add_argument("--camera-speed", type=float, default=ObjectSceneConfig.camera_speed,
                   help="largest camera speed, m/s (the obstacle scenes' default moves too little for depth from "
                        "motion in many scenes)")
    args = p.parse_args()
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
           "machine": platform.processor() or platform.machine(),
           "model": args.model, "seeds": args.seeds, "camera_speed": args.camera_speed,
           "results": run(seed_range(args.seeds), args.model, args.camera_speed)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
