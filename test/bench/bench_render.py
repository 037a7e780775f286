"""Benchmark a rasterizer on pixel-aligned scenes.

The pure-torch rasterizer on the CPU by default; ``--impl cpu``: the compiled CPU kernel.

    python test/bench/bench_render.py --threads 2 [--impl cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render import rasterize
from nut_ros.render.projection import LOWPASS
from scenes import pixel_aligned_scene

#: (label, Gaussian grid w x h per layer, image H x W, scale factor): two frames' worth of Gaussians, one per 2x2
#: pixels; the last case has 3x larger footprints (like an untrained model's), where early termination matters
CASES = (("tiny x2 @ 256x144", 128, 72, 144, 256, 1.0), ("streamsplat x2 @ 512x288", 256, 144, 288, 512, 1.0),
         ("tiny x2 @ 256x144, scales x3", 128, 72, 144, 256, 3.0))


def time_render(inputs: RasterInputs, height: int, width: int, impl: str, runs: int,
                warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU milliseconds of ``runs`` forward renders (no autograd) after ``warmup`` ones."""
    wall, cpu = [], []
    with torch.no_grad():
        for i in range(warmup + runs):
            if inputs.means.is_cuda:
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            rasterize(inputs, height, width, impl=impl, lowpass=LOWPASS)
            if inputs.means.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                wall.append((time.perf_counter() - start) * 1e3)
                cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--impl", default="torch", choices=("auto", "torch", "cpu", "cuda"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"threads {args.threads}, device {args.device}, impl {args.impl}")
    for label, gw, gh, height, width, factor in CASES:
        scene = pixel_aligned_scene(gw, gh)
        scene = scene._replace(scales=scene.scales * factor)
        inputs = RasterInputs(*(t.to(args.device) for t in scene))
        wall, cpu = time_render(inputs, height, width, args.impl, args.runs, args.warmup)
        print(f"{label}: N={inputs.means.shape[1]} wall median {statistics.median(wall):.1f} ms "
              f"(min {min(wall):.1f}, max {max(wall):.1f}), process CPU median {statistics.median(cpu):.1f} ms, "
              f"{args.runs} runs")


if __name__ == "__main__":
    main()
