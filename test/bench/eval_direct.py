"""The evaluation suite's runs without bags or ROS, for the GPU machine (it has neither).

``run``: each clip run of ``nut_ros.tools.eval_suite.RUNS`` gets the frames its bag would hold
(:func:`nut_ros.tools.make_bag.source_frames`: same source frames, stamps, resize and camera; depth resized as
``make_bag`` does) and goes through the streaming pipeline and :class:`~nut_ros.pipeline.evaluation.StreamEvaluator`
with the suite's stride, as ``nut_ros_replay`` feeds them (held-out frames interpolated, the depth topic ground truth
unless the run feeds it); each sequence run of ``SEQUENCE_RUNS`` goes through ``eval_suite.run_sequence`` itself.
Prints and writes one JSON summary per run (``--out``).

``pack``: copies only the files those runs read from ``--shared`` into a folder of the same layout (small enough
to carry to the GPU machine: a 7-Scenes sequence run needs every pose but only its key frames' images; a clip run
on 7-Scenes needs every colour image and its key frames' depth).

    python test/bench/eval_direct.py pack --shared ../shared --dest .evaldata --runs redkitchen_rgb redkitchen_motion
    python test/bench/eval_direct.py run --shared .evaldata --model small --device cuda --runs dog blocks --out s.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from nut_ros.tools.eval_suite import CLIPS, PACKAGE_DIR, RUNS, SEQUENCE_RUNS, run_sequence
from nut_ros.tools.make_bag import DEPTH_SUFFIXES, IMAGE_SUFFIXES, bag_depth, list_files, source_frames

CLIP_RUNS = {r.name: r for r in RUNS}
SEQ_RUNS = {r.name: r for r in SEQUENCE_RUNS}
CLIP_SPECS = {c.name: c for c in CLIPS}


def _stem(path: Path) -> str:
    """``frame-000123`` of ``frame-000123.color.jpg``: colour and depth images of one frame share it."""
    return path.name.split(".")[0]


def clip_source(run, shared: Path) -> tuple:
    clip = CLIP_SPECS[run.clip]
    root = PACKAGE_DIR if clip.root == "package" else shared
    return clip, root / clip.source


def clip_frames(run, shared: Path):
    """``(Frame the pipeline gets, ground-truth depth in metres or None)`` of a clip run, every frame in order;
    depth is read for key frames only (the evaluator scores depth there)."""
    from nut_ros.pipeline.types import Frame

    clip, source = clip_source(run, shared)
    colors = list_files(source, IMAGE_SUFFIXES, clip.pattern) if source.is_dir() else []
    depths = ({_stem(p): p for p in list_files(source, DEPTH_SUFFIXES, clip.depth_pattern)}
              if clip.depth_pattern else {})
    frames = source_frames(source, pattern=clip.pattern, intrinsics=clip.intrinsics, max_frames=clip.frames,
                           stride=clip.step, start=clip.start, resize=clip.resize, fps=clip.fps)
    for k, f in enumerate(frames):
        depth_m = None
        if depths and k % run.stride == 0:
            depth_m = bag_depth(depths[_stem(colors[f.index])], f.source_shape, clip.resize).astype(np.float32) / 1e3
        yield Frame(f.rgb, f.stamp_ns, depth_m=depth_m if run.input_depth else None, intrinsics=f.camera), depth_m


def run_clip(run, shared: Path, args) -> dict:
    import torch

    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.evaluation import StreamEvaluator
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig

    torch.manual_seed(0)
    backend = make_backend("torch", args.model, args.checkpoint, args.device)
    pipeline = StreamingPipeline(backend, PipelineConfig(motion_prior=args.motion_prior))
    evaluator = StreamEvaluator(pipeline, stride=run.stride)
    start = time.perf_counter()
    with torch.no_grad():
        for frame, depth_m in clip_frames(run, shared):
            evaluator.add(frame, depth_m)
    summary = evaluator.summary()
    summary["wall_s"] = time.perf_counter() - start
    meta = {"clip": run.clip, "input_depth": run.input_depth, "device": backend.device,
            "model": backend.model_config.name, "motion_prior": pipeline.motion_prior, "flow": pipeline.flow_settings}
    return {"meta": meta, "summary": summary}


def pack(args) -> None:
    shared, dest = Path(args.shared), Path(args.dest)
    for name in args.runs:
        if name in CLIP_RUNS:
            run = CLIP_RUNS[name]
            clip, source = clip_source(run, shared)
            if clip.root == "package":
                continue
            target = dest / clip.source
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                continue
            target.mkdir(parents=True, exist_ok=True)
            colors = list_files(source, IMAGE_SUFFIXES, clip.pattern)
            for path in colors:
                shutil.copy2(path, target / path.name)
            if clip.depth_pattern:
                depths = {_stem(p): p for p in list_files(source, DEPTH_SUFFIXES, clip.depth_pattern)}
                chosen = colors[clip.start::clip.step][:clip.frames][::run.stride]
                for path in chosen:
                    shutil.copy2(depths[_stem(path)], target / depths[_stem(path)].name)
        else:
            run = SEQ_RUNS[name]
            if run.reader != "seven_scenes":
                raise ValueError(f"pack knows the 7-Scenes layout only, not {run.reader}")
            source, target = shared / run.source, dest / run.source
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / "camera-intrinsics.txt", target)
            count = len(list(source.glob("frame-*.pose.txt")))
            first, last = int(run.start * count), int(run.stop * count)
            for i in range(count):  # every pose (they give the frame count), the key frames' images
                names = [f"frame-{i:06d}.pose.txt"]
                if first <= i < last and (i - first) % run.stride == 0:
                    names += [f"frame-{i:06d}.color.jpg", f"frame-{i:06d}.depth.png"]
                for n in names:
                    shutil.copy2(source / n, target / n)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {size / 2**20:.1f} MiB")


def run(args) -> None:
    shared, out = Path(args.shared), {}
    for name in args.runs:
        if name in CLIP_RUNS:
            out[name] = run_clip(CLIP_RUNS[name], shared, args)
        else:
            options = ["--model", args.model, "--device", args.device, "--motion-prior", args.motion_prior]
            if args.checkpoint:
                options += ["--checkpoint", args.checkpoint]
            out[name] = run_sequence(SEQ_RUNS[name], shared, Path(args.reports) / name, options)
        s = out[name]["summary"]
        print(json.dumps({"run": name, "key": s["key"], "interp": s["interp"], "blend": s["blend"],
                          "flow_warp": s["flow_warp"], "depth": s.get("depth"), "wall_s": s.get("wall_s")},
                         default=float))
    Path(args.out).write_text(json.dumps(out, default=float, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    choices = [*CLIP_RUNS, *SEQ_RUNS]
    pk = sub.add_parser("pack", help="copy the files the runs read")
    pk.add_argument("--shared", required=True)
    pk.add_argument("--dest", required=True)
    pk.add_argument("--runs", nargs="+", choices=choices, required=True)
    r = sub.add_parser("run", help="run the runs")
    r.add_argument("--shared", required=True)
    r.add_argument("--model", default="tiny")
    r.add_argument("--checkpoint", default=None)
    r.add_argument("--device", default="cpu")
    r.add_argument("--motion-prior", default="auto", choices=("auto", "learned", "flow", "none"))
    r.add_argument("--runs", nargs="+", choices=choices, required=True)
    r.add_argument("--out", required=True, help="JSON of every run's meta and summary")
    r.add_argument("--reports", default="/tmp/eval_direct", help="sequence runs' report folders")
    args = p.parse_args()
    pack(args) if args.command == "pack" else run(args)


if __name__ == "__main__":
    main()
