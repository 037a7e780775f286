"""CPU: the network's encode and decode through the torch backend and the onnxruntime backend, on the same inputs
and threads, p50 per call (which backend a CPU robot should run).

    .venv/bin/python test/bench/cpu_backends.py [--model tiny] [--threads 2] [--calls 15] [--backends ...]

For onnxruntime the model is exported first (``engine.export_onnx --parts encoder decoder``, into a temporary
folder). The exported decoder carries the learned motion head (the onnxruntime backend cannot leave it out), so torch
is timed with the head (``torch-head``) and without it (``torch``: the network as the CPU default runs it,
``motion_prior: auto``; the classical flow that then gives the motion is a separate pipeline step, not timed here);
``torch-compiled`` is the latter with ``compile: true`` (Inductor's C++ kernels; compiled before the first round).
Inputs are random at the model resolution (the network's cost does not depend on the picture); the backends take
turns over ``--rounds``, so a change in the machine's speed falls on all of them.
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


BACKENDS = ("torch-head", "onnxruntime", "torch", "torch-compiled")


def build(name: str, model: str, folder: str, threads: int):
    if name == "onnxruntime":
        return make_backend("onnxruntime", model, checkpoint=folder, device="cpu", threads=threads)
    backend = make_backend("torch", model, device="cpu", compile=name == "torch-compiled")
    backend.use_learned_motion(name == "torch-head")
    return backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config(args.model)
    h, w = cfg.image_size
    g = torch.Generator().manual_seed(0)
    frames = [(torch.rand(1, 3, h, w, generator=g), torch.rand(1, cfg.depth_channels, h, w, generator=g))
              for _ in range(2)]
    with tempfile.TemporaryDirectory() as folder:
        if "onnxruntime" in args.backends:
            subprocess.run([sys.executable, "-m", "engine.export_onnx", "--config", args.model, "--out", folder,
                            "--parts", "encoder", "decoder"], check=True, stdout=subprocess.DEVNULL)
        backends = {name: build(name, args.model, folder, args.threads) for name in args.backends}
        for backend in backends.values():
            p50_ms(backend, frames, 2)  # compiles, or first-call work, before anything is timed
        print(f"# {args.model}, {args.threads} threads, {args.calls} pairs a round, torch {torch.__version__}")
        for r in range(args.rounds):
            for name, backend in backends.items():
                print(f"round {r} {name:15s} encode {{:6.1f}} decode {{:6.1f}} ms p50".format(
                    *p50_ms(backend, frames, args.calls)), flush=True)


if __name__ == "__main__":
    main()
