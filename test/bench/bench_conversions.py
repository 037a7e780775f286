"""Benchmark the ROS conversion layer (median / p95 wall time per call, after warm-up).

    python test/bench/bench_conversions.py [--repeats 50] [--flavor rclpy|rosbags]

Targets (issue 2): 512x288 rgb8 Image to/from message well under 1 ms; 150k-point PointCloud2 under 5 ms;
150k-Gaussian GaussianSet build + serialise under 20 ms.
"""
from __future__ import annotations

import argparse
import platform
import time
from typing import Callable

import numpy as np

from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.compressed import compress_depth, compress_image
from nut_ros.ros.gaussian_cdr import gaussian_set_cdr
from nut_ros.ros.gaussian_msgs import LAYOUT, gaussian_cloud_to_msg, msg_to_gaussian_cloud
from nut_ros.ros.images import image_to_depth_m, image_to_rgb, numpy_to_image
from nut_ros.ros.msg_types import resolve_flavor
from nut_ros.ros.pointcloud import pointcloud2_to_points, points_to_pointcloud2

N_POINTS = 150_000


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, p95) milliseconds of ``fn`` over ``repeats`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples)), float(np.percentile(samples, 95))


def cases(flavor: str):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (288, 512, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 8.0, (288, 512)).astype(np.float32)
    xyz = rng.normal(size=(N_POINTS, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (N_POINTS, 3), dtype=np.uint8)
    cloud = GaussianCloud(metric=True, **{k: rng.random((N_POINTS, w) if w > 1 else N_POINTS, dtype=np.float32)
                                          for k, w in LAYOUT.items()})
    image_msg = numpy_to_image(rgb, "rgb8", 1, "cam", flavor)
    image_wire = deserialize(serialize(image_msg), "sensor_msgs/msg/Image", flavor)
    pc_msg = points_to_pointcloud2(xyz, colors, 1, "cam", flavor)
    pc_wire = deserialize(serialize(pc_msg), "sensor_msgs/msg/PointCloud2", flavor)
    gs_bytes = serialize(gaussian_cloud_to_msg(cloud, 1, "cam", flavor=flavor))
    jpeg = compress_image(rgb, "rgb8", "jpeg", 90, flavor=flavor)
    cdepth = compress_depth(depth, "32FC1", flavor=flavor)
    return {
        "Image 512x288 rgb8: numpy -> msg": lambda: numpy_to_image(rgb, "rgb8", 1, "cam", flavor),
        "Image 512x288 rgb8: msg -> RGB array": lambda: image_to_rgb(image_wire),
        "Image 512x288 rgb8: numpy -> msg -> CDR bytes":
            lambda: serialize(numpy_to_image(rgb, "rgb8", 1, "cam", flavor)),
        "Image 512x288 32FC1: msg -> depth metres":
            lambda: image_to_depth_m(numpy_to_image(depth, "32FC1", 1, "", flavor)),
        "CompressedImage 512x288 jpeg q90: encode": lambda: compress_image(rgb, "rgb8", "jpeg", 90, flavor=flavor),
        "CompressedImage 512x288 jpeg q90: decode to RGB": lambda: image_to_rgb(jpeg),
        "compressedDepth 512x288 32FC1: encode": lambda: compress_depth(depth, "32FC1", flavor=flavor),
        "compressedDepth 512x288 32FC1: decode": lambda: image_to_depth_m(cdepth),
        "PointCloud2 150k xyz+rgb: numpy -> msg": lambda: points_to_pointcloud2(xyz, colors, 1, "cam", flavor),
        "PointCloud2 150k xyz+rgb: numpy -> msg -> CDR":
            lambda: serialize(points_to_pointcloud2(xyz, colors, 1, "cam", flavor)),
        "PointCloud2 150k xyz+rgb: msg -> numpy": lambda: pointcloud2_to_points(pc_wire),
        "GaussianSet 150k: cloud -> msg": lambda: gaussian_cloud_to_msg(cloud, 1, "cam", flavor=flavor),
        "GaussianSet 150k: cloud -> msg -> CDR (build+serialise)":
            lambda: serialize(gaussian_cloud_to_msg(cloud, 1, "cam", flavor=flavor)),
        "GaussianSet 150k: cloud -> CDR directly (gaussian_set_cdr)": lambda: gaussian_set_cdr(cloud, 1, "cam"),
        "GaussianSet 150k: CDR -> msg -> cloud":
            lambda: msg_to_gaussian_cloud(deserialize(gs_bytes, "nut_ros_msgs/msg/GaussianSet", flavor)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark nut_ros message conversions.")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--flavor", default="auto", choices=["auto", "rclpy", "rosbags"])
    args = parser.parse_args(argv)
    flavor = resolve_flavor(args.flavor)
    print(f"flavor={flavor} repeats={args.repeats} python={platform.python_version()} numpy={np.__version__} "
          f"cpu={platform.processor() or platform.machine()}")
    print(f"| case ({flavor}) | median ms | p95 ms |\n|---|---|---|")
    for name, fn in cases(flavor).items():
        median, p95 = timed(fn, args.repeats)
        print(f"| {name} | {median:.3f} | {p95:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
