"""Depth from motion on the packed real sequences: the dense fills the pipeline would feed the model for them.

Stage 3 trains the encoder on the input the streaming pipeline gives it when a camera has no depth image: the dense
fill of :class:`~nut_ros.geometry.depth_from_motion.DepthFromMotion` (:mod:`nut_ros.pipeline.stream`). For the
packed real sequences (:mod:`nut_ros.train.rgbd_pairs`) that fill is computed here by the same code, frame by frame
in order, once with the packed camera poses as odometry (metric) and once from the images alone (relative), at
depth from motion's working resolution; generated scenes get a simulated one (:func:`.depth_input.motion_fill`).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig

#: the two ways a camera without a depth image gets depth: with odometry (index 0) and from the images alone (1)
SOURCES = ("odometry", "motion")
#: the stage-3 validation sets of real pairs with each source's fill (in :data:`SOURCES` order)
VALIDATION_SETS = ("real", "real_motion")
#: frame period given to depth from motion for packed frames (TUM every 3rd frame of 30 Hz; TartanAir about so)
FRAME_PERIOD_NS = 100_000_000


def sequence_fills(rgb: np.ndarray, k: np.ndarray, poses: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Depth from motion over one sequence's frames ``rgb [N, H, W, 3]`` uint8 (RGB) with intrinsics ``k [N, 3, 3]``
    at that size and camera-to-world poses ``[N, 4, 4]`` of the optical frame (None: from the images alone).

    Returns ``(inverse depth [N, h, w]`` float32 (the dense fill; NaN on frames without depth from motion),
    ``known [N, h, w]`` bool (its measured pixels)) at the working resolution."""
    config = MotionDepthConfig()
    w, h = config.working_size(rgb.shape[2], rgb.shape[1])
    dfm = DepthFromMotion(config)
    fills = np.full((len(rgb), h, w), np.nan, np.float32)
    known = np.zeros((len(rgb), h, w), bool)
    for i, image in enumerate(rgb):
        intrinsics = Intrinsics(k[i, 0, 0], k[i, 1, 1], k[i, 0, 2], k[i, 1, 2], image.shape[1], image.shape[0])
        depth = dfm.estimate(image, i * FRAME_PERIOD_NS, intrinsics, None if poses is None else poses[i])
        if depth is not None:
            fills[i], known[i] = depth.dense, depth.confidence > 0
    return fills, known


def packed_fills(rgb: np.ndarray, k: np.ndarray, poses: np.ndarray, seq: np.ndarray,
                 workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sequence_fills` of every sequence (consecutive frames of one ``seq`` id) for each of :data:`SOURCES`:
    ``(inverse depth [N, 2, h, w], known [N, 2, h, w])``, in parallel processes (spawned: the trainer that asks
    has CUDA and OpenCV threads running, which a fork would copy mid-flight)."""
    starts = [0] + [i for i in range(1, len(seq)) if seq[i] != seq[i - 1]] + [len(seq)]
    jobs = [(a, b, source) for a, b in zip(starts, starts[1:]) for source in range(len(SOURCES))]
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(sequence_fills, *zip(*[(rgb[a:b], k[a:b], poses[a:b] if source == 0 else None)
                                                    for a, b, source in jobs])))
    h, w = runs[0][0].shape[1:]
    fills = np.full((len(seq), len(SOURCES), h, w), np.nan, np.float32)
    known = np.zeros((len(seq), len(SOURCES), h, w), bool)
    for (a, b, source), (fill, mask) in zip(jobs, runs):
        fills[a:b, source], known[a:b, source] = fill, mask
    return fills, known
