"""Evaluate moving-obstacle detection and tracking on generated VALIDATION scenes with exact ground truth.

Each scene (``nut_ros.train.object_scenes``, seeds from ``VALIDATION_SEED0``) goes through the real pipeline
(shipped weights, CPU by default; cached by obstacle_common) and then through
:class:`~nut_ros.perception.processor.PerceptionProcessor` in several modes:

* ``odometry``: metric depth input + the true camera poses (what a robot with odometry gives);
* ``no-odometry``: metric depth input, camera motion fitted from the Gaussians;
* ``static-camera`` (baseline): metric depth, the camera assumed still (identity poses): no motion compensation;
* ``no-tracking`` (baseline): metric depth + odometry, every frame's clusters reported as they are (new ids);
* ``rgb`` (with ``--rgb``): RGB only, camera motion fitted; relative units, so scored in the image only;
* ``rgb-odometry`` (with ``--rgb``): RGB + the true camera poses as odometry: metric depth from motion.

Scoring per frame, against the moving objects with at least ``--min-visible`` visible pixels whose centre is within
the detector's range (``ObstacleParams.max_range``, camera z); other moving objects are "don't care" (a detection
on them is neither a hit nor a false alarm): Hungarian matching on centre
distance; a match needs 3-D IoU >= 0.3 or centre within 0.3 m (``3d``), or 2-D box IoU >= 0.3 of the projected
obstacle box and the object's visible pixels (``2d``, scale-free, used for RGB only). Reported: precision, recall,
median position and velocity error of the matches (m, m/s, ground velocity in camera axes), identity switches
(a ground-truth object matched to a different track id than at its previous match). Static scenes with a moving
camera: the fraction of frames with no obstacle. Cost: the processor's time per frame.

    .venv/bin/python test/bench/obstacle_eval.py --seeds 10000-10019 --static-seeds 10100-10109 --rgb
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import SceneRunner, add_flow_args  # noqa: E402
from obstacle_tune import seed_range  # noqa: E402

from nut_ros.perception import ObstacleParams, PerceptionProcessor  # noqa: E402
from nut_ros.train.object_scenes import VALIDATION_SEED0  # noqa: E402

MATCH_IOU, MATCH_DIST = 0.3, 0.3
MODES = {  # name: (depth input, pose source, obstacle params)
    "odometry": ("topic", "true", {}),
    "no-odometry": ("topic", None, {}),
    "static-camera": ("topic", "identity", {}),
    "no-tracking": ("topic", "true", {"confirm_hits": 1, "max_misses": 0, "gate": 1e-9, "min_travel": 0.0,
                                      "min_agreement": -1.0}),
    "rgb": ("motion", None, {}),
    "rgb-odometry": ("odometry", "true", {}),
}


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0
    empty_frames: int = 0
    switches: int = 0
    pos_err: list = field(default_factory=list)
    vel_err: list = field(default_factory=list)
    cost_ms: list = field(default_factory=list)

    def summary(self) -> dict:
        med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
        return {"precision": self.tp / max(self.tp + self.fp, 1), "recall": self.tp / max(self.tp + self.fn, 1),
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "id_switches": self.switches,
                "position_error_m": med(self.pos_err), "velocity_error_mps": med(self.vel_err),
                "frames": self.frames, "zero_obstacle_frames": self.empty_frames / max(self.frames, 1),
                "cost_ms_p50": med(self.cost_ms),
                "cost_ms_p95": float(np.percentile(self.cost_ms, 95)) if self.cost_ms else float("nan")}


def iou_3d(c1, s1, c2, s2) -> float:
    lo, hi = np.maximum(c1 - s1 / 2, c2 - s2 / 2), np.minimum(c1 + s1 / 2, c2 + s2 / 2)
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / (np.prod(s1) + np.prod(s2) - inter))


def box_2d(centre, size, k) -> np.ndarray | None:
    """Image bounding box (u0, v0, u1, v1) of a camera-frame box (None when behind the camera)."""
    corners = centre + size / 2 * np.array([[i, j, l] for i in (-1, 1) for j in (-1, 1) for l in (-1, 1)])
    if np.any(corners[:, 2] <= 1e-3):
        return None
    u, v = k.fx * corners[:, 0] / corners[:, 2] + k.cx, k.fy * corners[:, 1] / corners[:, 2] + k.cy
    return np.array([u.min(), v.min(), u.max(), v.max()])


def iou_2d(a, b) -> float:
    if a is None or b is None:
        return 0.0
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def counted_truth(frame, min_visible: int, max_range: float) -> tuple[list, list]:
    """The frame's moving objects that count (at least ``min_visible`` visible pixels, centre within
    ``max_range``) and the "don't care" ones (visible, but not enough): each (truth, centre, size, velocity, pixel
    box), camera frame."""
    rot, trans = frame.camera_pose[:3, :3], frame.camera_pose[:3, 3]
    gts, dont_care = [], []
    for o in frame.objects:
        if not o.moving or o.visible_px == 0:
            continue
        vs, us = np.nonzero(frame.ids == o.oid)
        truth = (o, rot.T @ (o.center - trans), np.abs(rot.T) @ o.size, rot.T @ o.velocity,
                 np.array([us.min() - 0.5, vs.min() - 0.5, us.max() + 0.5, vs.max() + 0.5]))
        counts = o.visible_px >= min_visible and truth[1][2] <= max_range
        (gts if counts else dont_care).append(truth)
    return gts, dont_care


def assign(dets, gts, match) -> list[tuple[int, int]]:
    """``(detection, truth)`` index pairs of the optimal one-to-one assignment on centre distance among the pairs
    ``match(d, g) -> (ok, distance)`` accepts."""
    cost = np.full((len(dets), len(gts)), 1e9)
    for i, d in enumerate(dets):
        for j, g in enumerate(gts):
            ok, dist = match(d, g)
            if ok:
                cost[i, j] = dist
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.zeros(0, int), np.zeros(0, int))
    return [(i, j) for i, j in zip(rows, cols) if cost[i, j] < 1e9]


def score_frame(score: Score, frame, obstacles, criterion: str, min_visible: int, last_match: dict,
                max_range: float) -> None:
    k = frame.intrinsics
    gts, dont_care = counted_truth(frame, min_visible, max_range)
    dets = obstacles.obstacles
    score.frames += 1
    score.empty_frames += len(dets) == 0

    def match(d, g) -> tuple[bool, float]:
        dist = float(np.linalg.norm(d.position - g[1]))
        if criterion == "2d":
            return iou_2d(box_2d(d.position, d.size, k), g[4]) >= MATCH_IOU, dist
        return dist <= MATCH_DIST or iou_3d(d.position, d.size, g[1], g[2]) >= MATCH_IOU, dist

    hits = assign(dets, gts, match)
    matched_d = {i for i, _ in hits}
    for i, j in hits:
        d, g = dets[i], gts[j]
        score.tp += 1
        score.pos_err.append(float(np.linalg.norm(d.position - g[1])))
        score.vel_err.append(float(np.linalg.norm(d.velocity - g[3])))
        oid = g[0].oid
        if oid in last_match and last_match[oid] != d.id:
            score.switches += 1
        last_match[oid] = d.id
    score.fn += len(gts) - len(hits)
    for i, d in enumerate(dets):
        if i not in matched_d and not any(match(d, g)[0] for g in dont_care):
            score.fp += 1


def run_mode(runner: SceneRunner, mode: str, seeds: list[int], moving: bool, min_visible: int,
             params: ObstacleParams = ObstacleParams()) -> Score:
    depth, pose_source, overrides = MODES[mode]
    criterion = "2d" if depth == "motion" else "3d"  # relative depth: scored in the image
    score = Score()
    for seed in seeds:
        proc = PerceptionProcessor(replace(params, **overrides), seed=seed)
        last_match: dict = {}
        for frame, res in runner.results(seed, depth, moving=moving, camera_motion=None if moving else True):
            pose = {"true": frame.camera_pose, "identity": np.eye(4), None: None}[pose_source]
            out = proc.update(res, pose)
            score.cost_ms.append(sum(out.latency_ms.values()))
            score_frame(score, frame, out.obstacles, criterion, min_visible, last_match, proc.op.max_range)
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="10000-10019", help="validation scenes with moving objects")
    ap.add_argument("--static-seeds", default="10100-10109", help="validation scenes without moving objects")
    ap.add_argument("--modes", default="odometry,no-odometry,static-camera,no-tracking")
    ap.add_argument("--rgb", action="store_true", help="also evaluate RGB-only input (image-plane criterion)")
    ap.add_argument("--min-visible", type=int, default=300, help="pixels of 320x180 a moving object needs to count")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--motion-prior", default="auto", help="PipelineConfig.motion_prior (auto: the model's)")
    add_flow_args(ap)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seeds, static_seeds = seed_range(args.seeds), seed_range(args.static_seeds)
    if min(seeds + static_seeds) < VALIDATION_SEED0:
        sys.exit(f"evaluation seeds must be >= {VALIDATION_SEED0} (below are for tuning)")
    modes = args.modes.split(",") + (["rgb", "rgb-odometry"] if args.rgb else [])
    runner = SceneRunner(args.model, motion_prior=args.motion_prior, flow_preset=args.flow_preset,
                         flow_check=args.flow_check)
    pipe = runner.pipe()
    print(f"# obstacle_eval {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()} "
          f"({platform.processor() or platform.machine()}), model {args.model} on CPU, velocities: "
          f"{pipe.motion_prior} prior, flow {pipe.flow_settings}; seeds {args.seeds}, "
          f"static {args.static_seeds}, min visible {args.min_visible} px")
    report = {}
    print("| mode | precision | recall | pos err m | vel err m/s | id switches | static scenes: frames with 0 "
          "obstacles | cost ms p50 / p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in modes:
        moving = run_mode(runner, mode, seeds, True, args.min_visible).summary()
        static = run_mode(runner, mode, static_seeds, False, args.min_visible).summary()
        report[mode] = {"moving": moving, "static": static}
        print(f"| {mode} | {moving['precision']:.3f} | {moving['recall']:.3f} | {moving['position_error_m']:.3f} | "
              f"{moving['velocity_error_mps']:.3f} | {moving['id_switches']} | {static['zero_obstacle_frames']:.3f} "
              f"({static['frames']} frames) | {moving['cost_ms_p50']:.2f} / {moving['cost_ms_p95']:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
