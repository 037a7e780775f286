"""Is the compiled network deterministic? (GPU diagnostic behind ``test/test_compile_gpu.py``'s graph test)

    python test/bench/compile_repeat.py [--model small] [--repeat 4]

Runs the shipped network on two frames of the bundled clip under bf16 autocast (no weight-cast cache, as CUDA graphs
need it) several times each way: eager, compiled and called directly, and the compiled network replayed as CUDA
graphs. Prints, per decoded field, the largest difference between repeats of one way and between the ways. A way
whose repeats differ from each other cannot be held to bitwise equality with another.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import torch

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.pipeline.compile import INDUCTOR_OPTIONS, compile_network, uncompile
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.stream import resize_rgb

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("xyz", "velocity", "rgb", "opacity", "scale", "gamma")


def _spread(runs: list[dict[str, torch.Tensor]], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    return {f: max((r[f] - ref[f]).abs().max().item() for r in runs) for f in FIELDS}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--deterministic", action="store_true",
                    help="compile with Inductor's deterministic mode (torch._inductor.config.deterministic)")
    args = ap.parse_args(argv)
    if args.deterministic:
        INDUCTOR_OPTIONS["deterministic"] = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = load_checkpoint(ROOT / "nut_ros" / "weights" / f"{args.model}.safetensors").cuda().eval()
    h, w = model.config.image_size
    frames = [resize_rgb(cv2.imread(str(ROOT / "nut_ros" / "data" / "cups" / f"{i:03d}.jpg"))[..., ::-1].copy(),
                         h, w).cuda() for i in (0, 1)]
    disp = torch.zeros(1, model.config.depth_channels, h, w, device="cuda")

    def run(encode, decode) -> dict[str, torch.Tensor]:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            g = decode(encode(frames[0], disp), encode(frames[1], disp))
        return {f: getattr(g, f).float() for f in FIELDS}

    ways = {"eager": [run(model.encode, model.decode) for _ in range(args.repeat)]}
    encode, decode = compile_network(model)
    try:
        ways["direct"] = [run(encode, decode) for _ in range(args.repeat)]
        g_encode, g_decode = GraphedCall(encode), GraphedCall(decode)
        ways["graphed"] = [run(g_encode, g_decode) for _ in range(args.repeat)]
    finally:
        uncompile(model)
    rows = {f"{name} #{i} vs #0": _spread([run], runs[0]) for name, runs in ways.items()
            for i, run in enumerate(runs[1:], 1)}
    rows["graphed vs direct"] = _spread(ways["graphed"], ways["direct"][0])
    rows["direct vs eager"] = _spread(ways["direct"], ways["eager"][0])
    print(f"{'':22s}" + "".join(f"{f:>11s}" for f in FIELDS))
    for name, row in rows.items():
        print(f"{name:22s}" + "".join(f"{row[f]:11.3e}" for f in FIELDS))


if __name__ == "__main__":
    main()
