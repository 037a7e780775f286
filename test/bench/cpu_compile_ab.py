"""CPU: the streaming pipeline with the eager network and with ``compile: true`` side by side in one process, each
frame of the bundled clip pushed through both in turn (the order swapped every frame), so that a change in the
machine's speed falls on both alike; p50 / p90 per stage.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python test/bench/cpu_compile_ab.py [--model tiny] [--repeat 2]

Both pipelines warm up first (``StreamingPipeline.warm_up``, where the compiled one compiles or loads its kernels
from Inductor's cache); the first 3 frames of each pass over the clip are not counted. Node defaults otherwise
(``PipelineConfig()``: classical flow, depth from motion on).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from bench_pipeline import FRAME_NS, clip_frames
from nut_ros.pipeline.backends import TorchBackend, load_torch_model
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

SKIP = 3  # frames at the start of each pass not counted (a new stream)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the clip")
    args = ap.parse_args()
    pipes = {name: StreamingPipeline(TorchBackend(load_torch_model(args.model, None), "cpu", compile=name == "compiled"),
                                     PipelineConfig()) for name in ("eager", "compiled")}
    warm = {name: round(p.warm_up(), 1) for name, p in pipes.items()}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in pipes}
    frames = clip_frames()
    for rep in range(args.repeat):
        for i, f in enumerate(frames):
            frame = Frame(f.rgb, (rep * len(frames) + i) * FRAME_NS)
            for name in (list(pipes) if i % 2 else list(pipes)[::-1]):
                result = pipes[name].push(frame)
                if i >= SKIP:
                    for stage, ms in result.latency_ms.items():
                        stages[name].setdefault(stage, []).append(ms)
    print(json.dumps({"model": args.model, "warm_up_s": warm, "frames": len(stages["eager"]["total"]),
                      "latency_ms": {name: {stage: {"p50": round(float(np.median(v)), 1),
                                                    "p90": round(float(np.percentile(v, 90)), 1)}
                                            for stage, v in s.items()} for name, s in stages.items()}}, indent=1))


if __name__ == "__main__":
    main()
