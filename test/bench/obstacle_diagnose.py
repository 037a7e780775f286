"""Where each missed moving object is lost: per counted ground-truth object and frame (obstacle_eval's rule), the
first stage of the perception stage that fails it, on generated TRAINING scenes (seeds below ``VALIDATION_SEED0``).

The processor runs as in obstacle_eval (odometry mode by default); this tool only watches it (a subclass that keeps
each frame's moving test and detections). Stages, in order, for an object the reported obstacles do not match:

* ``first frame``: no pair yet (the stream's first frame), so no velocities;
* ``few Gaussians``: fewer opaque in-range Gaussians lie on the object's surface than a cluster at its depth needs
  (``fewest_members``: ``min_cluster_gaussians``, fewer beyond ``min_cluster_depth``);
* ``depth rate unknown``: most of its Gaussians have no depth rate from geometry (the moving test skips them);
* ``below moving test``: fewer than that pass the moving test;
* ``cluster dropped``: they pass, but no detection survives the clustering's filters near the object (too small
  after the depth band, merged with structure into a box over ``max_size``, a sliver under ``min_width``);
* ``detection box off``: a detection holds the object's moving Gaussians but fails the match criterion (box cut or
  too big, centre off);
* ``track unconfirmed``: a matching detection exists but its track is not reported yet (fewer than
  ``confirm_hits`` detections, or less than ``min_travel`` of travel);
* ``track slow``: confirmed but slower than ``min_speed``;
* ``track off``: reported, but the track's box or centre fails the criterion (smoothed size, lag);
* ``other``.

Then the false alarms: each reported obstacle that matches no counted object (and no "don't care" one), sorted
into ``duplicate`` (within ``--near`` metres of a counted object another obstacle matched: one mover split in two,
or a stale track beside the live one), ``box off`` (near a counted object no obstacle matched: the box or centre
misses it), ``beside don't care`` (near a moving object too small or far to count) and ``static`` (near no moving
object: structure or noise read as motion), with each kind's median speed, size and frames since first report.

    .venv/bin/python test/bench/obstacle_diagnose.py --seeds 0-19 [--mode odometry] [--set FIELD=VALUE ...]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import SceneRunner, add_flow_args, gaussian_truth  # noqa: E402
from obstacle_eval import MATCH_DIST, MATCH_IOU, MODES, assign, counted_truth, iou_3d  # noqa: E402
from obstacle_tune import param_overrides, seed_range  # noqa: E402

from nut_ros.perception import PerceptionProcessor, dense  # noqa: E402
from nut_ros.perception.clustering import cluster_points  # noqa: E402
from nut_ros.perception.processor import fewest_members  # noqa: E402
from nut_ros.train.object_scenes import VALIDATION_SEED0  # noqa: E402

STAGES = ("matched", "first frame", "few Gaussians", "depth rate unknown", "below moving test", "cluster dropped",
          "detection box off", "track unconfirmed", "track slow", "track off", "other")


class WatchedProcessor(PerceptionProcessor):
    """The processor, keeping what its moving test and clustering produced in the last frame (host copies of the
    stage's rows: those it did not select have NaN points, an unknown depth rate and score 0). The moving test is
    watched through ``dense._score`` (CPU: the dense stage runs as called, not as a CUDA graph)."""

    def update(self, result, camera_pose=None):
        self.seen = {"points": None, "score": None, "clusters": None, "known": None}
        score_fn = dense._score

        def watched(points, residual, known, threshold_xy, threshold_z, plan, pixels=None):
            score = score_fn(points, residual, known, threshold_xy, threshold_z, plan, pixels)
            host = lambda t: t.cpu().numpy()  # noqa: E731
            self.seen.update(points=host(points), score=host(score), known=host(known), residual=host(residual))
            return score

        dense._score = watched
        try:
            return super().update(result, camera_pose)
        finally:
            dense._score = score_fn

    def _objects(self, points, residual, weights, k):
        c, founding = super()._objects(points, residual, weights, k)
        self.seen["clusters"] = c
        return c, founding


def matches(center, size, truth) -> bool:
    return (np.linalg.norm(center - truth[1]) <= MATCH_DIST or iou_3d(center, size, truth[1], truth[2]) >= MATCH_IOU)


def false_alarms(dets, gts, dont_care, near: float) -> list[tuple[int, str]]:
    """(index, kind) of each obstacle of ``dets`` that matches no counted object (``gts``, obstacle_eval's optimal
    assignment) and no "don't care" one; kinds as the module docstring says."""
    hits = assign(dets, gts, lambda d, g: (matches(d.position, d.size, g), float(np.linalg.norm(d.position - g[1]))))
    matched_d, matched_g = {i for i, _ in hits}, {j for _, j in hits}
    out = []
    for i, d in enumerate(dets):
        if i in matched_d or any(matches(d.position, d.size, g) for g in dont_care):
            continue
        dist = [float(np.linalg.norm(d.position - g[1])) for g in gts]
        j = int(np.argmin(dist)) if dist else -1
        if j >= 0 and dist[j] <= near:
            out.append((i, "duplicate" if j in matched_g else "box off"))
        elif any(float(np.linalg.norm(d.position - g[1])) <= near for g in dont_care):
            out.append((i, "beside don't care"))
        else:
            out.append((i, "static"))
    return out


def dropped_why(proc: WatchedProcessor, on: np.ndarray) -> str:
    """Why the voxel cluster holding most of an object's moving Gaussians gave no detection (as ``_objects``)."""
    p, seen = proc.op, proc.seen
    moving = np.flatnonzero(seen["score"] > 1)
    pts = seen["points"][moving]
    labels, _ = cluster_points(pts, p.voxel, 1)
    mine = labels[on[moving]]
    comp = np.bincount(mine).argmax()
    member = labels == comp
    z = pts[member, 2]
    if member.sum() < fewest_members(p, np.median(z)):
        return "too few"
    band = np.abs(z - np.median(z)) <= p.depth_band if p.depth_band > 0 else np.ones(z.size, bool)
    if band.sum() < 1:
        return "none in band"
    kept = pts[member][band]
    size = kept.max(0) - kept.min(0) + p.voxel / 2
    purity = np.mean(on[moving][member])
    if size.max() > p.max_size:
        return f"over max_size (object share {'<' if purity < 0.5 else '>='} 0.5)"
    if size[:2].min() < p.min_width:
        return "under min_width"
    return "other"


def diagnose(proc: WatchedProcessor, frame, prev, res, out, truth, extra: dict) -> str:
    """The first failing stage of one counted ground-truth object (see the module docstring)."""
    o = truth[0]
    if any(matches(d.position, d.size, truth) for d in out.obstacles.obstacles):
        return "matched"
    seen, p = proc.seen, proc.op
    if seen["points"] is None or prev is None:
        return "first frame"
    ids, _, _ = gaussian_truth(frame, prev, seen["points"], res.pair_interval_s)
    on = ids == o.oid
    extra["gaussians"].append(int(on.sum()))
    fewest = fewest_members(p, truth[1][2])
    if on.sum() < fewest:
        return "few Gaussians"
    extra["moving_fraction"].append(float(np.mean(seen["score"][on] > 1)))
    if np.mean(seen["known"][on]) < 0.5:
        return "depth rate unknown"
    if np.sum(seen["score"][on] > 1) < fewest:
        return "below moving test"
    c = seen["clusters"]
    rot, trans = proc._pose[:3, :3], proc._pose[:3, 3]
    near = np.zeros(0, bool) if c is None else np.linalg.norm(c.center - truth[1], axis=1) < \
        np.linalg.norm(truth[2]) / 2 + 0.3
    if not near.any():
        extra["dropped_why"].append(dropped_why(proc, on))
        return "cluster dropped"
    if not any(matches(c.center[i], c.size[i], truth) for i in np.flatnonzero(near)):
        i = np.flatnonzero(near)[np.argmin(np.linalg.norm(c.center[near] - truth[1], axis=1))]
        extra["box_ratio"].append((c.size[i] / truth[2]).tolist())
        extra["box_offset"].append((c.center[i] - truth[1]).tolist())
        return "detection box off"
    s = proc.tracker.state
    if not s.mean.shape[0]:
        return "other"
    cam = (s.mean[:, :3] - trans) @ rot  # tracks in the camera frame
    t = int(np.argmin(np.linalg.norm(cam - truth[1], axis=1)))
    if np.linalg.norm(cam[t] - truth[1]) > 0.6:
        return "other"
    if not s.confirmed[t]:
        extra["unconfirmed_hits"].append(int(s.hits[t]))
        return "track unconfirmed"
    if np.linalg.norm(s.mean[t, 3:]) < p.min_speed:
        return "track slow"
    return "track off" if s.misses[t] <= p.report_misses else "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-19", help="training scenes with moving objects (range a-b)")
    ap.add_argument("--mode", default="odometry", choices=[m for m in MODES if m != "rgb"])
    ap.add_argument("--min-visible", type=int, default=300)
    ap.add_argument("--near", type=float, default=1.0,
                    help="false alarms: metres from a moving object's centre that count as beside it")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--motion-prior", default="auto")
    add_flow_args(ap)
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ObstacleParams overrides")
    args = ap.parse_args()
    seeds = seed_range(args.seeds)
    if max(seeds) >= VALIDATION_SEED0:
        sys.exit(f"diagnosis seeds must be below {VALIDATION_SEED0} (validation set)")
    _, pose_source, overrides = MODES[args.mode]
    params = replace(param_overrides(args.set), **overrides)
    runner = SceneRunner(args.model, motion_prior=args.motion_prior, flow_preset=args.flow_preset,
                         flow_check=args.flow_check)
    stages: Counter = Counter()
    by_frame: dict[str, Counter] = {}
    by_depth: dict[str, Counter] = {}
    at_border: Counter = Counter()  # object-frames whose visible pixels touch the image border (box partly out)
    extra = {k: [] for k in ("gaussians", "moving_fraction", "box_ratio", "box_offset", "unconfirmed_hits",
                             "dropped_why")}
    alarms: Counter = Counter()
    alarm_traits: dict[str, list] = defaultdict(list)
    reported = 0
    for seed in seeds:
        proc = WatchedProcessor(params, seed=seed)
        prev = None
        first_report: dict = {}
        for frame, res in runner.results(seed, moving=True):
            pose = {"true": frame.camera_pose, "identity": np.eye(4), None: None}[pose_source]
            out = proc.update(res, pose)
            gts, dont_care = counted_truth(frame, args.min_visible, proc.op.max_range)
            dets = out.obstacles.obstacles
            reported += len(dets)
            for d in dets:
                first_report.setdefault(d.id, frame.index)
            for i, kind in false_alarms(dets, gts, dont_care, args.near):
                alarms[kind] += 1
                alarm_traits[kind].append((float(np.linalg.norm(dets[i].velocity)), float(np.max(dets[i].size)),
                                           frame.index - first_report[dets[i].id]))
            for truth in gts:
                stage = diagnose(proc, frame, prev, res, out, truth, extra)
                stages[stage] += 1
                by_frame.setdefault(stage, Counter())[min(frame.index // 5 * 5, 35)] += 1
                by_depth.setdefault(stage, Counter())[int(truth[1][2])] += 1
                k = frame.intrinsics
                at_border[stage] += bool(truth[4][0] < 0 or truth[4][1] < 0 or truth[4][2] > k.width - 1
                                         or truth[4][3] > k.height - 1)
            prev = frame
    total = sum(stages.values())
    print(f"# obstacle_diagnose seeds {args.seeds}, mode {args.mode}, overrides {args.set}; {total} counted "
          f"object-frames")
    print("| stage | object-frames | share | at the image border | by frame index 0-4/5-9/.../35-39 | "
          "by depth 0-1/1-2/.../4-5 m |")
    print("|---|---|---|---|---|---|")
    for stage in STAGES:
        n = stages[stage]
        frames = "/".join(str(by_frame.get(stage, Counter())[i]) for i in range(0, 40, 5))
        depths = "/".join(str(by_depth.get(stage, Counter())[i]) for i in range(6))
        print(f"| {stage} | {n} | {n / max(total, 1):.3f} | {at_border[stage]} | {frames} | {depths} |")
    print("cluster dropped, why:", dict(Counter(extra.pop("dropped_why"))))
    for key, values in extra.items():
        if values:
            v = np.asarray(values, float)
            print(f"{key}: n {len(v)}, p10 / p50 / p90 {np.percentile(v, 10, 0).round(2)} / "
                  f"{np.percentile(v, 50, 0).round(2)} / {np.percentile(v, 90, 0).round(2)}")
    print(f"false alarms: {sum(alarms.values())} of {reported} reported obstacles")
    for kind, count in alarms.most_common():
        speed, size, age = np.median(np.array(alarm_traits[kind]), axis=0)
        print(f"  {kind:18s} {count:4d}   median speed {speed:.2f} m/s, largest side {size:.2f} m, "
              f"frames since first report {age:.0f}")


if __name__ == "__main__":
    main()
