"""Per-frame cost of rectifying raw images (``nut_ros.geometry.rectify.Rectifier``: colour bilinear, depth nearest)
at common camera sizes, one OpenCV thread and all cores, the maps made once (their cost printed apart).

    .venv/bin/python test/bench/rectify_cost.py
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from nut_ros.geometry.rectify import Lens, Rectifier
from timing import timed

SIZES = ((640, 480), (1280, 720), (1920, 1080))


def lens(width: int, height: int) -> Lens:
    f = 0.8 * width
    k = (f, 0.0, width / 2 - 0.5, 0.0, f, height / 2 - 0.5, 0.0, 0.0, 1.0)
    return Lens("plumb_bob", k, (-0.25, 0.08, 0.001, -0.001, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), k, width, height)


def ms(fn) -> float:
    return timed(fn, "cpu")["median_ms"]


def main() -> None:
    rng = np.random.default_rng(0)
    for threads in (1, cv2.getNumberOfCPUs()):
        cv2.setNumThreads(threads)
        for width, height in SIZES:
            rgb = rng.integers(0, 255, (height, width, 3), np.uint8)
            depth = rng.uniform(0.5, 5.0, (height, width)).astype(np.float32)
            start = time.perf_counter()
            rectifier = Rectifier()
            rectifier.fixed_maps(lens(width, height))
            maps = (time.perf_counter() - start) * 1e3
            print(f"{width}x{height}, {threads} OpenCV thread(s): maps {maps:.1f} ms once; per frame colour "
                  f"{ms(lambda: rectifier.rgb(lens(width, height), rgb)):.2f} ms, depth "
                  f"{ms(lambda: rectifier.depth(lens(width, height), depth)):.2f} ms (median)")


if __name__ == "__main__":
    main()
