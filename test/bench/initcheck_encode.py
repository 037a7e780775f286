"""Which CUDA kernels read memory that nothing wrote? One ``encode`` of the shipped network per way, run under
compute-sanitizer's initcheck (GPU diagnostic behind issue 15's compiled-graph question).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool initcheck --print-limit 300 \
        --check-api-memory-access no --show-backtrace no \
        python test/bench/initcheck_encode.py [--model small] [--ways eager compiled]

Each way encodes the bundled clip's frame 0 twice under bf16 autocast without the weight-cast cache, as the backend
runs the network, each call after a line ``== way call k``; the sanitizer's reports that follow belong to that call
(the device is waited for before the next line). ``gpu_measure.sh initcheck`` runs each way in its own process,
compiled first. Without the caching allocator every tensor is its own allocation, so a read of memory that the
sanitizer saw nothing write is reported, not hidden behind an earlier tensor's data. The eager network's kernels
that read cuDNN's and cuBLAS's outputs are reported too (an H100, 2026-12-07): the sanitizer does not see those
libraries' writes, so only a report of a read of what a Triton kernel wrote would point at a wrong read.
"""
from __future__ import annotations

import argparse

import torch

from compile_repeat import shipped_pair  # (test/bench, the script's folder)
from nut_ros.pipeline.compile import compile_network, uncompile


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--ways", nargs="+", choices=("eager", "compiled"), default=["eager", "compiled"])
    args = ap.parse_args(argv)
    model, frames, disp = shipped_pair(args.model)
    for way in args.ways:
        encode = compile_network(model)[0] if way == "compiled" else model.encode
        for call in range(2):  # a compiled way's first call compiles (its kernels' own benchmarks run then)
            print(f"== {way} call {call}", flush=True)
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
                encode(frames[0], disp)
            torch.cuda.synchronize()
        if way == "compiled":
            uncompile(model)  # (compile_network compiled the upsampler's stages in place)
    print("== done", flush=True)


if __name__ == "__main__":
    main()
