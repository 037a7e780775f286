"""Local-map memory and publish cost versus its size, and the obstacle messages' cost.

For maps of N Gaussians (filled through :meth:`LocalMap.insert`, ``candidates`` at a time, one per voxel): the map's
memory, the time of ``snapshot()``, of converting it to ``PointCloud2`` + ``GaussianSet``
(:func:`nut_ros.ros.obstacle_msgs.map_messages`) and of serialising both to CDR (what a publisher does), and the
serialised size. Then ObstacleArray + MarkerArray for 10 obstacles. Uses rclpy messages when available (as the
node), else rosbags'.

    .venv/bin/python test/bench/map_publish_cost.py --sizes 10000,50000,100000,200000
"""
from __future__ import annotations

import argparse
import platform
import time
import uuid
from datetime import datetime, timezone

import numpy as np

from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams
from nut_ros.perception.types import Obstacle, ObstacleList
from nut_ros.ros.cdr import serialize
from nut_ros.ros.msg_types import resolve_flavor
from nut_ros.ros.obstacle_msgs import map_messages, obstacle_markers, obstacles_to_msg


def best_ms(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times), out


def filled_map(n: int) -> LocalMap:
    m = LocalMap(MapParams(voxel=0.05, budget=max(n, 1)))
    rng = np.random.default_rng(0)
    side = int(np.ceil(n ** (1 / 3))) + 1
    cells = np.stack(np.unravel_index(rng.permutation(side ** 3)[:n], (side,) * 3), 1)
    pts = ((cells + 0.5) * 0.05).astype(np.float32)
    colors = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    for at in range(0, n, m.p.candidates):  # a frame offers at most ``candidates``
        part = slice(at, at + m.p.candidates)
        k = len(pts[part])
        m.insert(pts[part], colors[part], np.full((k, 3), 0.01, np.float32), np.ones(k, np.float32), np.eye(3),
                 np.zeros(3))
    assert m.count == n
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,50000,100000,200000")
    ap.add_argument("--flavor", default="auto")
    args = ap.parse_args()
    flavor = resolve_flavor(args.flavor)
    print(f"# map_publish_cost {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {flavor} messages; best of 5")
    print("| Gaussians | map memory MB | snapshot ms | to messages ms | serialise ms | wire MB |")
    print("|---|---|---|---|---|---|")
    for n in map(int, args.sizes.split(",")):
        m = filled_map(n)
        t_snap, cloud = best_ms(m.snapshot)
        t_conv, msgs = best_ms(lambda: map_messages(cloud, 1_000_000_000, "odom", "topic", flavor))
        t_ser, data = best_ms(lambda: [serialize(x) for x in msgs])
        print(f"| {n} | {m.nbytes / 1e6:.1f} | {t_snap:.2f} | {t_conv:.2f} | {t_ser:.2f} | "
              f"{sum(len(d) for d in data) / 1e6:.1f} |")
    rng = np.random.default_rng(1)
    obs = ObstacleList(1_000_000_000, "camera_optical_frame", True, [
        Obstacle(uuid.uuid4(), rng.normal(size=3), rng.normal(size=3), np.ones(3), np.eye(3) * 0.01,
                 np.eye(3) * 0.04, 1.0, 10) for _ in range(10)])
    t_obs, _ = best_ms(lambda: serialize(obstacles_to_msg(obs, flavor)))
    t_mark, _ = best_ms(lambda: serialize(obstacle_markers(obs, 2.0, flavor=flavor)))
    print(f"10 obstacles: ObstacleArray {t_obs:.2f} ms, MarkerArray {t_mark:.2f} ms (build + serialise)")


if __name__ == "__main__":
    main()
