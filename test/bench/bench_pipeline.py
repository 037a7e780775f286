"""Per-stage latency of the ROS-free streaming pipeline on the bundled clip (any machine, no ROS needed).

    python test/bench/bench_pipeline.py --model small --device cuda --bf16 --compile [--motion-prior none]

Pushes the 60 frames of ``nut_ros/data/cups`` (960x540, 15 fps stamps; ``--repeat`` times) through
:class:`StreamingPipeline` with the torch backend, after ``--warmup`` frames (compilation, cuDNN autotuning) that are
not counted, and prints the p50 / p90 / p99 / max of every stage (preprocess, encode, flow, decode, render, postprocess,
total) as JSON. With ``--compile`` it first compares the compiled network with the eager one on a pair of the clip (per
decoded field: the largest difference beside eager bf16's own distance from fp32; ``--no-compile-check`` skips it).
``--warm-up-first``, ``--cprofile`` and ``--cv-threads`` add the node's warm-up, a host profile and OpenCV's thread
count.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
from dataclasses import fields
from pathlib import Path

import cv2
import torch

from nut_ros.core.choices import DEPTH_FROM_MOTION
from nut_ros.core.motion_prior import FLOW_PRESETS
from nut_ros.pipeline.backends import TorchBackend, load_torch_model
from nut_ros.pipeline.compile import uncompile
from nut_ros.pipeline.stream import StreamingPipeline, resize_rgb
from nut_ros.pipeline.types import Frame, PipelineConfig
from nut_ros.tools.demo import CLIP_DIR

FRAME_NS = 66_733_400  # 15 fps


def clip_frames() -> list[Frame]:
    paths = sorted(CLIP_DIR.glob("*.jpg"))
    return [Frame(cv2.imread(str(p))[..., ::-1].copy(), i * FRAME_NS) for i, p in enumerate(paths)]


def compile_error(model, device: str, bf16: bool, frames: list[Frame]) -> dict:
    """Per field of the decoded Gaussians of the clip's first pair: the largest |compiled − eager|, beside the
    field's largest magnitude and (under bf16) the eager network's own largest distance from fp32 on that field, so
    a difference can be read against the rounding it comes from."""
    h, w = model.config.image_size
    inputs = [(resize_rgb(f.rgb, h, w), torch.zeros(1, model.config.depth_channels, h, w)) for f in frames[:2]]
    runs = {}
    for name, compiled, half in (("eager", False, bf16), ("compiled", True, bf16), ("eager_fp32", False, False)):
        backend = TorchBackend(model, device, bf16=half, compile=compiled)
        runs[name] = backend.decode(*(backend.encode(rgb, disp) for rgb, disp in inputs))
        if compiled:
            uncompile(backend.model)  # the fp32 run after it eager again
    report = {}
    for f in fields(runs["eager"]):
        eager, compiled, fp32 = (getattr(runs[k], f.name).float() for k in ("eager", "compiled", "eager_fp32"))
        diff = (compiled - eager).abs()
        report[f.name] = {"max_abs": round(diff.max().item(), 5), "field_max_abs": round(eager.abs().max().item(), 4),
                          "eager_vs_fp32": round((eager - fp32).abs().max().item(), 5),
                          "q999": round(torch.quantile(diff.flatten()[:2**24], 0.999).item(), 5)}
    return report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--checkpoint", default=None, help="weights (default: the shipped weights of --model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--compile-check", action=argparse.BooleanOptionalAction, default=True,
                    help="with --compile, first compare the compiled network with the eager one (compiles it twice)")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode (reduce-overhead: CUDA graphs around each compiled part)")
    ap.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                    help="replay the network as CUDA graphs (default: on CUDA, as the node does; with --compile the "
                         "compiled kernels inside them, except in a compile mode with its own graphs)")
    ap.add_argument("--repeat", type=int, default=1, help="play the clip this many times (stamps run on)")
    ap.add_argument("--stage-sync", action=argparse.BooleanOptionalAction, default=PipelineConfig.stage_sync,
                    help="wait for the device between stages, so per-stage times are the device's (the default, "
                         "as the node runs: no waits, only the total is the device's)")
    ap.add_argument("--motion-prior", default="auto", choices=("auto", "learned", "flow", "none"))
    ap.add_argument("--flow-preset", default=PipelineConfig.flow_preset, choices=FLOW_PRESETS)
    ap.add_argument("--flow-max-width", type=int, default=PipelineConfig.flow_max_width)
    ap.add_argument("--flow-check", action=argparse.BooleanOptionalAction, default=PipelineConfig.flow_check,
                    help="no prior where the forward and backward flows disagree")
    ap.add_argument("--render-times", type=float, nargs="+", default=[1.0])
    ap.add_argument("--interp-window", type=float, default=PipelineConfig.interp_window)
    ap.add_argument("--interp-samples", type=int, default=PipelineConfig.interp_samples)
    ap.add_argument("--depth-from-motion", default=PipelineConfig.depth_from_motion, choices=DEPTH_FROM_MOTION)
    ap.add_argument("--profile", default=None, help="after timing, write a torch.profiler table of 10 more frames here")
    ap.add_argument("--cprofile", default=None, help="after timing, write the host's cProfile of 20 more frames here")
    ap.add_argument("--cv-threads", type=int, default=PipelineConfig.opencv_threads,
                    help="PipelineConfig.opencv_threads (0: auto, one thread when the network runs on a GPU; "
                         "depth from motion's tracking runs in OpenCV)")
    ap.add_argument("--warmup", type=int, default=5, help="frames not counted (fewer than the clip's frames)")
    ap.add_argument("--warm-up-first", action="store_true",
                    help="call StreamingPipeline.warm_up() first, as the lifecycle node does at configure (its "
                         "seconds are reported; with --warmup 0 the first frames' latency then shows what is left)")
    args = ap.parse_args(argv)
    frames = clip_frames()
    frames = [Frame(f.rgb, (k * len(frames) + i) * FRAME_NS) for k in range(args.repeat)
              for i, f in enumerate(frames)]
    if not 0 <= args.warmup < len(frames):
        ap.error(f"--warmup must be at least 0 and fewer than the {len(frames)} frames played "
                 f"({args.repeat} x the clip), got {args.warmup}")
    if args.cuda_graphs is None:
        args.cuda_graphs = args.device.startswith("cuda") and not (args.compile and args.compile_mode != "default")
    model = load_torch_model(args.model, args.checkpoint)
    report = {"model": args.model, "device": args.device, "bf16": args.bf16, "stage_sync": args.stage_sync,
              "compile": args.compile and args.compile_mode, "cuda_graphs": args.cuda_graphs,
              "flow_preset": args.flow_preset, "flow_max_width": args.flow_max_width, "flow_check": args.flow_check,
              "render_times": args.render_times, "interp_window": args.interp_window,
              "interp_samples": args.interp_samples, "depth_from_motion": args.depth_from_motion}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    if args.compile and args.compile_check:
        report["compiled_vs_eager"] = compile_error(model, args.device, args.bf16, frames)
    backend = TorchBackend(model, args.device, bf16=args.bf16, compile=args.compile, compile_mode=args.compile_mode,
                           cuda_graphs=args.cuda_graphs)
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=tuple(args.render_times),
                                                     motion_prior=args.motion_prior, flow_preset=args.flow_preset,
                                                     flow_max_width=args.flow_max_width,
                                                     flow_check=args.flow_check, interp_window=args.interp_window,
                                                     interp_samples=args.interp_samples,
                                                     stage_sync=args.stage_sync,
                                                     depth_from_motion=args.depth_from_motion,
                                                     opencv_threads=args.cv_threads))
    report["motion_prior"], report["flow"] = pipe.motion_prior, pipe.flow_settings
    report["cv_threads"] = cv2.getNumThreads()
    if args.warm_up_first:
        report["warm_up_s"] = round(pipe.warm_up(), 2)
    for f in frames[:args.warmup]:
        pipe.push(f)
    timed = frames[args.warmup:]
    pipe.stats.window = len(timed)  # the latency windows made from here on hold every timed frame
    pipe.stats.latency_ms.clear()
    first_totals = []
    for f in timed:
        result = pipe.push(f)
        if result is not None and len(first_totals) < 3:
            first_totals.append(result.latency_ms["total"])
    report["frames"] = len(timed)
    report["first_frames_ms"] = [round(v, 2) for v in first_totals]
    report["rerenders"] = pipe.stats.rerenders  # frames rendered twice (the rasterizer's pair budget grew)
    report["latency_ms"] = {stage: {k: round(v, 2) for k, v in p.items() if k in ("p50", "p90", "p99", "max")}
                            for stage, p in pipe.stats.latency_summary().items()}
    if args.profile:
        with torch.profiler.profile() as prof:
            for f in frames[args.warmup:args.warmup + 10]:
                pipe.push(Frame(f.rgb, f.stamp_ns + len(frames) * FRAME_NS))
        sorts = ["self_cpu_time_total"] + (["self_device_time_total"] if args.device.startswith("cuda") else [])
        Path(args.profile).write_text("\n".join(prof.key_averages().table(sort_by=k, row_limit=40) for k in sorts))
    if args.cprofile:
        profiler = cProfile.Profile()
        with profiler:
            for f in frames[args.warmup:args.warmup + 20]:
                pipe.push(Frame(f.rgb, f.stamp_ns + 2 * len(frames) * FRAME_NS))
        with open(args.cprofile, "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
            pstats.Stats(profiler, stream=out).sort_stats("cumtime").print_stats(60)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
