"""What the false alarms are: each reported obstacle that matches no counted moving object (obstacle_eval's rule and
"don't care" objects), on generated TRAINING scenes (seeds below ``VALIDATION_SEED0``), sorted into

* ``duplicate``: within ``--near`` metres of a counted object that another obstacle matched (one mover split in
  two, or a stale track beside the live one);
* ``box off``: within ``--near`` of a counted object that no obstacle matched (the box or centre misses it: a part
  of it, or it merged with a neighbour);
* ``beside don't care``: within ``--near`` of a moving object too small or far to count;
* ``static``: no moving object within ``--near`` (structure or noise read as motion);

with each category's obstacles' median speed, size and age (frames since the track's first report).

    .venv/bin/python test/bench/obstacle_false_alarms.py --seeds 0-19 [--mode odometry] [--set FIELD=VALUE ...]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import SceneRunner  # noqa: E402
from obstacle_eval import MATCH_DIST, MATCH_IOU, MODES, counted_truth, iou_3d  # noqa: E402
from obstacle_tune import param_overrides, seed_range  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from nut_ros.perception import PerceptionProcessor  # noqa: E402
from nut_ros.train.object_scenes import VALIDATION_SEED0  # noqa: E402


def matches(d, g) -> bool:
    return float(np.linalg.norm(d.position - g[1])) <= MATCH_DIST or iou_3d(d.position, d.size, g[1], g[2]) >= MATCH_IOU


def classify(dets, gts, dont_care, near: float) -> list[tuple[int, str]]:
    """(index, category) of each false alarm among ``dets``."""
    cost = np.full((len(dets), len(gts)), 1e9)
    for i, d in enumerate(dets):
        for j, g in enumerate(gts):
            if matches(d, g):
                cost[i, j] = float(np.linalg.norm(d.position - g[1]))
    rows, cols = linear_sum_assignment(cost) if cost.size else ([], [])
    hit = {(i, j) for i, j in zip(rows, cols) if cost[i, j] < 1e9}
    matched_d, matched_g = {i for i, _ in hit}, {j for _, j in hit}
    out = []
    for i, d in enumerate(dets):
        if i in matched_d or any(matches(d, g) for g in dont_care):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-19", help="training scenes with moving objects (range a-b)")
    ap.add_argument("--mode", default="odometry", choices=["odometry", "no-odometry"])
    ap.add_argument("--near", type=float, default=1.0,
                    help="metres from a moving object's centre that count as beside it")
    ap.add_argument("--min-visible", type=int, default=300)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--motion-prior", default="auto")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ObstacleParams overrides")
    args = ap.parse_args()
    seeds = seed_range(args.seeds)
    if max(seeds) >= VALIDATION_SEED0:
        sys.exit(f"tuning seeds must be < {VALIDATION_SEED0}")
    depth, pose_source, overrides = MODES[args.mode]
    params = replace(param_overrides(args.set), **overrides)
    runner = SceneRunner(args.model, motion_prior=args.motion_prior)
    counts: Counter = Counter()
    traits: dict[str, list] = defaultdict(list)
    total = 0
    for seed in seeds:
        proc = PerceptionProcessor(params, seed=seed)
        first_seen: dict[int, int] = {}
        for n, (frame, res) in enumerate(runner.results(seed, depth)):
            out = proc.update(res, frame.camera_pose if pose_source == "true" else None)
            dets = out.obstacles.obstacles
            for d in dets:
                first_seen.setdefault(d.id, n)
            total += len(dets)
            gts, dont_care = counted_truth(frame, args.min_visible, proc.op.max_range)
            for i, category in classify(dets, gts, dont_care, args.near):
                d = dets[i]
                counts[category] += 1
                traits[category].append((float(np.linalg.norm(d.velocity)), float(np.max(d.size)),
                                         n - first_seen[d.id]))
    print(f"# {args.mode}, seeds {args.seeds}, settings {args.set or 'defaults'}: {total} reported obstacles, "
          f"{sum(counts.values())} false alarms")
    for category, count in counts.most_common():
        speed, size, age = np.median(np.array(traits[category]), axis=0)
        print(f"{category:18s} {count:4d}   median speed {speed:.2f} m/s, largest side {size:.2f} m, "
              f"frames since first report {age:.0f}")


if __name__ == "__main__":
    main()
