"""CPU: the network's encode and decode through the torch backend and the onnxruntime backend, on the same inputs
and threads, p50 per call (which backend a CPU robot should run).

    .venv/bin/python test/bench/cpu_backends.py [--model tiny] [--threads 2] [--calls 15]

The model is exported first (``engine.export_onnx --parts encoder decoder``, into a temporary folder). The exported
decoder carries the learned motion head (the onnxruntime backend cannot leave it out), so torch is timed with the
head and without it (the network as the CPU default runs it, ``motion_prior: auto``; the classical flow that then
gives the motion is a separate pipeline step, not timed here). Inputs are random at the model resolution (the
network's cost does not depend on the picture); the three take turns over ``--rounds``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from nut_ros.core.config import get_config
from nut_ros.pipeline.backends import make_backend


def p50_ms(backend, frames, calls: int) -> tuple[float, float]:
    """Median encode and decode ms over ``calls`` consecutive pairs, a new frame each call as the node gives them
    (not timing.timed's one call repeated: encoding one frame over and over made onnxruntime's encode about twice
    as fast on the dev VM, 2026-12-07, which the node never sees)."""
    enc, dec = [], []
    prev = backend.encode(*frames[0])
    for i in range(calls):
        start = time.perf_counter()
        cur = backend.encode(*frames[(i + 1) % 2])
        enc.append(time.perf_counter() - start)
        start = time.perf_counter()
        backend.decode(prev, cur)
        dec.append(time.perf_counter() - start)
        prev = cur
    return float(np.median(enc) * 1e3), float(np.median(dec) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config(args.model)
    h, w = cfg.image_size
    g = torch.Generator().manual_seed(0)
    frames = [(torch.rand(1, 3, h, w, generator=g), torch.rand(1, cfg.depth_channels, h, w, generator=g))
              for _ in range(2)]
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "engine.export_onnx", "--config", args.model, "--out", folder,
                        "--parts", "encoder", "decoder"], check=True, stdout=subprocess.DEVNULL)
        torch_head = make_backend("torch", args.model, device="cpu")
        torch_flow = make_backend("torch", args.model, device="cpu")
        torch_flow.use_learned_motion(False)
        ort = make_backend("onnxruntime", args.model, checkpoint=folder, device="cpu", threads=args.threads)
        print(f"# {args.model}, {args.threads} threads, {args.calls} pairs a round, torch {torch.__version__}")
        for r in range(args.rounds):
            for name, backend in (("torch, motion head", torch_head), ("onnxruntime, motion head", ort),
                                  ("torch, no motion head", torch_flow)):
                print(f"round {r} {name:26s} encode {{:6.1f}} decode {{:6.1f}} ms p50".format(
                    *p50_ms(backend, frames, args.calls)), flush=True)


if __name__ == "__main__":
    main()
