"""Soak of the persistent local map: thousands of frames of a camera driving down a long corridor.

Each frame offers the map ``MapParams.candidates`` static Gaussians sampled on the floor, the walls and the ceiling
in front of the camera (up to ``max_range``), as the perception stage does with a frame's static Gaussians. The
corridor is long enough that the map must prune: the check is that its count never exceeds the budget, that its
memory and the process's resident memory stop growing once it is full, and what inserting and taking a snapshot
cost per frame (all frames, and those after the map first filled its budget). No network and no ROS: what is
measured is the map itself.

    .venv/bin/python test/bench/map_soak.py --frames 5000
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np

from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams

HALF_WIDTH, HEIGHT = 2.0, 2.5  # corridor cross-section (m)


def corridor_points(rng: np.random.Generator, x0: float, reach: float, n: int) -> np.ndarray:
    """``n`` points on the corridor's four surfaces between ``x0`` and ``x0 + reach``."""
    x = x0 + reach * rng.random(n)
    side = rng.integers(0, 4, n)  # floor, ceiling, left wall, right wall
    u = rng.random(n)
    y = np.where(side < 2, (2 * u - 1) * HALF_WIDTH, np.where(side == 2, -HALF_WIDTH, HALF_WIDTH))
    z = np.where(side == 0, 0.0, np.where(side == 1, HEIGHT, u * HEIGHT))
    return np.stack([x, y, z], axis=1).astype(np.float32)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--step", type=float, default=0.05, help="metres the camera advances per frame")
    ap.add_argument("--sample-every", type=int, default=500)
    args = ap.parse_args(argv)
    params = MapParams()
    rng = np.random.default_rng(0)
    local_map = LocalMap(params)
    n = params.candidates
    scales = np.full((n, 3), params.voxel / 2, np.float32)
    opacities = np.ones(n, np.float32)
    rotation = np.eye(3)
    insert_ms, full_ms, snapshot_ms, samples, max_count = [], [], [], [], 0
    for i in range(args.frames):
        cam = np.array([i * args.step, 0.0, 1.2])
        points = corridor_points(rng, cam[0], params.max_range, n)
        colors = rng.random((n, 3), dtype=np.float32)
        tick = time.perf_counter()
        local_map.insert(points, colors, scales, opacities, rotation, cam)
        insert_ms.append((time.perf_counter() - tick) * 1e3)
        if local_map.dropped:  # the map has been full (pruned) at least once
            full_ms.append(insert_ms[-1])
        max_count = max(max_count, local_map.count)
        if i % 10 == 0:  # the node publishes the map about once a second
            tick = time.perf_counter()
            local_map.snapshot()
            snapshot_ms.append((time.perf_counter() - tick) * 1e3)
        if i % args.sample_every == 0 or i == args.frames - 1:
            samples.append({"frame": i, "count": local_map.count, "map_mib": round(local_map.nbytes / 2**20, 2),
                            "rss_mib": round(rss_mib(), 1), "dropped": local_map.dropped})
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 3)  # noqa: E731
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": platform.node(),
              "frames": args.frames, "budget": params.budget, "candidates": n, "voxel": params.voxel,
              "max_count": max_count, "under_budget": max_count <= params.budget,
              "insert_ms": {"p50": pct(insert_ms, 50), "p99": pct(insert_ms, 99), "max": pct(insert_ms, 100)},
              "insert_full_map_ms": {"frames": len(full_ms), **({"p50": pct(full_ms, 50), "p95": pct(full_ms, 95),
                                                                  "p99": pct(full_ms, 99)} if full_ms else {})},
              "snapshot_ms": {"p50": pct(snapshot_ms, 50), "p99": pct(snapshot_ms, 99)}, "samples": samples}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
