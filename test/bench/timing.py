"""Timing helpers of the GPU benchmark tools: CUDA-event medians, wall-clock medians off-GPU, CUDA-graph capture."""
from __future__ import annotations

import statistics
import time

import torch

from nut_ros.core.model import FrameCache
from nut_ros.render import rasterize


def cuda_time(fn, warmup: int = 5, iters: int = 30) -> dict[str, float]:
    """Median / min / max milliseconds of ``fn()`` with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "iters": iters}


def timed(fn, device: str, warmup: int = 5, iters: int = 30) -> dict[str, float]:
    """:func:`cuda_time` on a GPU; wall-clock medians (after a synchronising warm-up) elsewhere."""
    if device == "cuda":
        return cuda_time(fn, warmup, iters)
    for _ in range(min(warmup, 1)):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "iters": iters}


def graph_capture(fn, warm=None):
    """Capture ``fn()`` (static inputs) in a CUDA graph after three warm-up calls on a side stream; returns
    ``(graph, outputs of the captured call)``. ``warm`` runs instead of ``fn`` for the warm-up when given."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            (warm or fn)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def graphed(model, rgb, disp, prev, autocast, h, w, iters, encode=None, decode=None):
    """(network, frame) timings with encode + decode replayed from one CUDA graph (``encode``/``decode`` default to
    the model's methods; pass compiled ones to graph those)."""
    encode, decode = encode or model.encode, decode or model.decode
    static_prev = FrameCache(*(t.clone() for t in prev))
    static_cur = FrameCache(*(t.clone() for t in prev))

    def step():  # one frame of a stream: the previous "current" becomes "prev"
        for p, c in zip(static_prev, static_cur):
            p.copy_(c)
        with autocast():
            new = encode(rgb, disp)
        for c, x in zip(static_cur, new):
            c.copy_(x)
        with autocast():
            return decode(static_prev, static_cur)

    def warm():
        with autocast():
            decode(static_prev, encode(rgb, disp))

    graph, out = graph_capture(step, warm)

    def frame():
        graph.replay()
        return rasterize(out.map(lambda x: x.float()).at(1.0), h, w, impl="cuda",
                         lowpass=model.config.raster_lowpass)

    return cuda_time(graph.replay, iters=iters), cuda_time(frame, iters=iters)
