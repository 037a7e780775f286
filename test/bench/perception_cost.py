"""Per-frame cost of the perception stage (obstacles + local map) on real pipeline outputs. No ROS imports: runs on
the GPU machine as it is.

The pipeline (``--model``, ``--device``) runs generated object scenes with metric depth; its results then go through
:class:`~nut_ros.perception.processor.PerceptionProcessor` as the node gives them, with the true odometry poses and
without (camera motion fitted). With ``--cloud device`` (default) the stage works on the cloud table the pipeline
left on its device (``StepResult.device_cloud``: on the GPU with ``--device cuda``); ``--cloud host`` drops it, so
the stage runs on the numpy cloud on the CPU (what an onnx/TensorRT backend gives it). Prints the Gaussians per
frame and the processor's time per frame (obstacles, map, total: p50 / p95 / max over the frames after the first of
each scene), beside the pipeline's own time per frame, and on CUDA the host's waits for the device per frame
(synchronisations counted by torch's sync debug mode, and CUDA event waits, in a separate pass, as it slows what it
watches). Each scene gets a fresh processor, unless ``--one-processor``.

    .venv/bin/python test/bench/perception_cost.py --model tiny --device cpu --scenes 3
    PYTHONPATH=. python test/bench/perception_cost.py --model small --device cuda --scenes 3     # on the H200
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import time
import warnings
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import torch

from nut_ros.core.motion_prior import choose_flow_preset
from nut_ros.perception import PerceptionProcessor
from nut_ros.pipeline.backends import make_backend
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig
from nut_ros.train.object_scenes import VALIDATION_SEED0, ObjectSceneGenerator


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def run(results, odometry: bool, repeat: int, new: Callable[..., PerceptionProcessor]):
    """Per-frame latencies (obstacles, map, total) of fresh processors over the scenes, ``repeat`` times."""
    obst, mapping, total = [], [], []
    for _ in range(repeat):
        for k, scene in enumerate(results):
            proc = new(seed=k)
            for j, (pose, res) in enumerate(scene):
                t = time.perf_counter()
                out = proc.update(res, pose if odometry else None)
                if j:
                    total.append((time.perf_counter() - t) * 1e3)
                    obst.append(out.latency_ms["obstacles"])
                    mapping.append(out.latency_ms["map"])
    return obst, mapping, total


def syncs_per_frame(results, odometry: bool, new: Callable[..., PerceptionProcessor]) -> list[int]:
    """Host waits for the GPU in each frame's update (the first of each scene left out): synchronising CUDA calls
    (torch's sync debug mode) and waits on CUDA events (which that mode does not see)."""
    counts = []
    events = []
    real = torch.cuda.Event.synchronize
    torch.cuda.Event.synchronize = lambda self: events.append(1) or real(self)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        for k, scene in enumerate(results):
            proc = new(seed=k)
            for j, (pose, res) in enumerate(scene):
                events.clear()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    proc.update(res, pose if odometry else None)
                if j:
                    counts.append(sum("synchronizing CUDA operation" in str(w.message) for w in caught) + len(events))
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.Event.synchronize = real
    return counts


def profile(results, odometry: bool, new: Callable[..., PerceptionProcessor], frames: int = 10) -> None:
    """Torch's profiler over ``frames`` updates of the first scene: operator calls per frame (and CUDA kernels on a
    GPU), the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    scene = results[0]
    proc = new(seed=0)
    for pose, res in scene[:len(scene) - frames]:
        proc.update(res, pose if odometry else None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        for pose, res in scene[len(scene) - frames:]:
            proc.update(res, pose if odometry else None)
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    print(f"{'odometry' if odometry else 'no odometry'}: per frame {ops / frames:.0f} aten calls (nested included), "
          f"{kernels / frames:.0f} CUDA kernels and copies")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    if kernels:
        print(events.table(sort_by="self_cuda_time_total", row_limit=15))


def sections(results, odometry: bool, new: Callable[..., PerceptionProcessor]) -> None:
    """p50 host milliseconds per frame of the processor's steps (its methods wrapped with timers; nested steps are
    inside their callers' times), over the frames after each scene's first 5."""
    from nut_ros.perception import local_map
    from nut_ros.perception import processor as module
    from nut_ros.perception.tensors import Uploader
    from nut_ros.perception.tracking import MultiObjectTracker
    from nut_ros.pipeline.cuda_graphs import GraphedCall

    spent: dict[str, list[float]] = {}
    wrapped = [(module.PerceptionProcessor, name) for name in
               ("_inputs", "_camera_motion", "_find", "_run", "_offer_queued", "_objects", "_report")]
    wrapped += [(MultiObjectTracker, "update"), (module, "unpack"), (module, "download_queued"),
                (local_map.LocalMap, "insert"), (local_map.LocalMap, "_learn_sizes"),
                (local_map.LocalMap, "_queue_sizes"), (GraphedCall, "__call__"), (Uploader, "__call__")]
    labels = {MultiObjectTracker: "track", GraphedCall: "graph_call", Uploader: "upload"}
    originals = [(owner, name, getattr(owner, name)) for owner, name in wrapped]

    def timed(fn, label):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent.setdefault(label, [0.0])[-1] += (time.perf_counter() - t) * 1e3
        return call

    for owner, name, fn in originals:
        setattr(owner, name, timed(fn, labels.get(owner, name)))
    try:
        for k, scene in enumerate(results):
            proc = new(seed=k)
            for j, (pose, res) in enumerate(scene):
                for v in spent.values():
                    v.append(0.0)
                t = time.perf_counter()
                proc.update(res, pose if odometry else None)
                spent.setdefault("total", [0.0])[-1] += (time.perf_counter() - t) * 1e3
                if j < 5:
                    for v in spent.values():
                        v.pop()
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    print(f"{'odometry' if odometry else 'no odometry'} steps, host ms p50: " +
          ", ".join(f"{name} {pct(v, 50):.2f}" for name, v in spent.items()))


def host_profile(results, odometry: bool, new: Callable[..., PerceptionProcessor], path: str) -> None:
    """cProfile of the updates of every scene after its first 5 frames (Python-level host time: what launches,
    waits and computes on the host), appended to ``path`` sorted by own and by cumulative time."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    for k, scene in enumerate(results):
        proc = new(seed=k)
        for j, (pose, res) in enumerate(scene):
            if j >= 5:
                prof.enable()
            proc.update(res, pose if odometry else None)
            prof.disable()
    out = io.StringIO()
    frames = sum(max(0, len(scene) - 5) for scene in results)
    out.write(f"# {'odometry' if odometry else 'no odometry'}: {frames} frames\n")
    for key in ("tottime", "cumulative"):
        pstats.Stats(prof, stream=out).sort_stats(key).print_stats(40)
    with open(path, "a") as f:
        f.write(out.getvalue())


def reused(proc: PerceptionProcessor) -> Callable[..., PerceptionProcessor]:
    """A maker of processors that gives ``proc`` each time, reset (the stream forgotten, its graphs kept)."""
    def new(seed: int) -> PerceptionProcessor:
        proc.reset()
        return proc
    return new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cloud", choices=("device", "host"), default="device",
                    help="the stage's input: the pipeline's device table, or the numpy cloud only")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3, help="times each frame is processed (fresh processors)")
    ap.add_argument("--one-processor", action="store_true",
                    help="one processor per mode for every scene and repeat, reset between them, as the node keeps "
                         "one (its CUDA graphs captured once, not in each scene's first timed frames)")
    ap.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                    help="on a GPU, replay the stage's dense part as CUDA graphs (the default) or launch it op by op")
    ap.add_argument("--compile", action="store_true",
                    help="on a GPU with CUDA graphs, torch.compile the stage's dense part (compiled in a pass over "
                         "the first scene before the timed ones; that pass's seconds are printed)")
    ap.add_argument("--profile", action="store_true", help="also print torch's profiler table of 10 frames per mode")
    ap.add_argument("--cprofile", metavar="FILE", help="also write the host's cProfile tables per mode to FILE")
    ap.add_argument("--sections", action="store_true", help="also print the p50 host time of each step")
    args = ap.parse_args()
    gen = ObjectSceneGenerator()
    pipe = StreamingPipeline(make_backend("torch", args.model, device=args.device), PipelineConfig(
        render_times=(), flow_preset=choose_flow_preset("auto", obstacles=True)))  # as the node with perception
    results, pipe_ms = [], []
    for s in range(args.scenes):
        pipe.reset()
        scene = []
        for f in gen.scene(VALIDATION_SEED0 + s)[:args.frames]:
            t = time.perf_counter()
            res = pipe.push(Frame(f.rgb, f.stamp_ns, depth_m=f.depth_m, intrinsics=f.intrinsics))
            pipe_ms.append((time.perf_counter() - t) * 1e3)
            if args.cloud == "host":
                res.device_cloud = None
            scene.append((f.camera_pose, res))
        results.append(scene)
    counts = [res.gaussians.count for scene in results for _, res in scene]
    where = "none" if results[0][0][1].device_cloud is None else str(results[0][0][1].device_cloud.device)
    print(f"# perception_cost {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, model {args.model} on {args.device}, "
          f"{args.scenes} scenes x {args.frames} frames, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"torch threads {torch.get_num_threads()}, CUDA graphs {args.cuda_graphs}, compile {args.compile}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"Gaussians per frame: p50 {pct(counts, 50):.0f}, max {max(counts)}; pipeline ms per frame p50 "
          f"{pct(pipe_ms[1:], 50):.1f}; the stage's input: {args.cloud} cloud (device table on {where})")
    make = functools.partial(PerceptionProcessor, cuda_graphs=args.cuda_graphs, compile=args.compile)
    for odometry in (True, False):
        name = "odometry" if odometry else "no odometry"
        new = reused(make(seed=0)) if args.one_processor else make
        if args.compile:
            t = time.perf_counter()
            run(results[:1], odometry, 1, new)
            print(f"{name:12s} compile pass over the first scene: {time.perf_counter() - t:.1f} s")
        times = run(results, odometry, args.repeat, new)
        for label, v in zip(("obstacles", "map", "total"), times):
            print(f"{name:12s} {label:9s} ms p50 {pct(v, 50):6.2f}  p95 {pct(v, 95):6.2f}  mean {np.mean(v):6.2f}  "
                  f"max {max(v):6.2f}")
        if args.device.startswith("cuda"):
            syncs = syncs_per_frame(results, odometry, new)
            print(f"{name:12s} host waits (syncs + event waits) per frame: p50 {pct(syncs, 50):.0f}, "
                  f"max {max(syncs)}")
        if args.profile:
            profile(results, odometry, new)
        if args.cprofile:
            host_profile(results, odometry, new, args.cprofile)
        if args.sections:
            sections(results, odometry, new)


if __name__ == "__main__":
    main()
