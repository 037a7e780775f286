"""Is the compiled network deterministic? (GPU diagnostic behind ``test/test_compile_gpu.py``'s graph test)

    python test/bench/compile_repeat.py [--model small] [--repeat 4] [--deterministic]

Runs the shipped network on two frames of the bundled clip under bf16 autocast (no weight-cast cache, as CUDA graphs
need it) several times each way: eager, compiled and called directly, and the compiled network replayed as CUDA
graphs. Prints, per decoded field, the largest difference between repeats of one way and between the ways, and how
many Gaussians' positions moved by more than ``OFF`` (a few: a discontinuity crossed; many: a broken graph). A way
whose repeats differ from each other cannot be held to bitwise equality with another.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import torch
from torch._dynamo.utils import counters

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.core.model import NutModel
from nut_ros.pipeline.compile import INDUCTOR_OPTIONS, compile_network, uncompile
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.stream import resize_rgb

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("xyz", "velocity", "rgb", "opacity", "scale", "gamma", "encode")  # encode: both frames' caches, flat


#: a Gaussian whose position moved more than this (canonical units; eager bf16's largest error from fp32 on the
#: shipped ``small`` is 0.013) counts as off in the table's last column
OFF = 0.02


def _spread(runs: list[dict[str, torch.Tensor]], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    row = {f: max((r[f] - ref[f]).abs().max().item() for r in runs) for f in FIELDS}
    row["off"] = max(int(((r["xyz"] - ref["xyz"]).abs().amax(-1) > OFF).sum()) for r in runs)
    return row


def shipped_pair(name: str) -> tuple[NutModel, list[torch.Tensor], torch.Tensor]:
    """The shipped model ``name`` on the GPU (TF32 off), the bundled clip's frames 0 and 1 at its input size, and a
    zero disparity (RGB only)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = load_checkpoint(ROOT / "nut_ros" / "weights" / f"{name}.safetensors").cuda().eval()
    h, w = model.config.image_size
    frames = [resize_rgb(cv2.imread(str(ROOT / "nut_ros" / "data" / "cups" / f"{i:03d}.jpg"))[..., ::-1].copy(),
                         h, w).cuda() for i in (0, 1)]
    return model, frames, torch.zeros(1, model.config.depth_channels, h, w, device="cuda")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--deterministic", action="store_true",
                    help="compile with Inductor's deterministic mode (torch._inductor.config.deterministic)")
    args = ap.parse_args(argv)
    if args.deterministic:
        INDUCTOR_OPTIONS["deterministic"] = True
    model, frames, disp = shipped_pair(args.model)

    def run(encode, decode) -> dict[str, torch.Tensor]:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            caches = encode(frames[0], disp), encode(frames[1], disp)
            g = decode(*caches)
        out = {f: getattr(g, f).float() for f in FIELDS if f != "encode"}
        out["encode"] = torch.cat([t.float().flatten() for c in caches for t in c])  # what decode was given
        return out

    def repeated(encode, decode, name: str) -> None:
        ways[name] = [run(encode, decode) for _ in range(args.repeat)]

    ways: dict[str, list[dict[str, torch.Tensor]]] = {}
    repeated(model.encode, model.decode, "eager")
    encode, decode = compile_network(model)
    try:
        repeated(encode, decode, "direct")
        graphs = counters["stats"]["unique_graphs"]
        repeated(GraphedCall(encode), GraphedCall(decode), "graphed")
        print(f"graphs Dynamo compiled for the CUDA graphs' captures: {counters['stats']['unique_graphs'] - graphs}")
    finally:
        uncompile(model)
    rows = {f"{name} #{i} vs #0": _spread([run], runs[0]) for name, runs in ways.items()
            for i, run in enumerate(runs[1:], 1)}
    rows["graphed vs direct"] = _spread(ways["graphed"], ways["direct"][0])
    rows["direct vs eager"] = _spread(ways["direct"], ways["eager"][0])
    count = ways["eager"][0]["xyz"][..., 0].numel()
    print(f"{'':22s}" + "".join(f"{f:>11s}" for f in FIELDS) + f"  Gaussians off by > {OFF} (of {count})")
    for name, row in rows.items():
        print(f"{name:22s}" + "".join(f"{row[f]:11.3e}" for f in FIELDS) + f"  {row['off']}")
    for name, a, b in (("graphed #0 vs direct #0", ways["graphed"][0], ways["direct"][0]),
                       ("direct #1 vs direct #0", ways["direct"][1], ways["direct"][0])):
        _largest(name, a, b, count)


def _largest(name: str, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], count: int, top: int = 5) -> None:
    """The ``top`` Gaussians whose positions differ most between ``a`` and ``b``: index (of ``count``, two frames'
    Gaussians in order), positions and opacities (a faint one matters little to a render)."""
    diff = (a["xyz"] - b["xyz"]).abs().amax(-1).flatten()
    print(f"{name}: largest position differences")
    for i in diff.topk(top).indices.tolist():
        pa, pb = (t["xyz"].reshape(-1, 3)[i].tolist() for t in (a, b))
        oa, ob = (t["opacity"].reshape(count, -1)[i, 0].item() for t in (a, b))
        print(f"  #{i}: {diff[i].item():.4f}  xyz {[round(x, 4) for x in pa]} vs {[round(x, 4) for x in pb]}  "
              f"opacity {oa:.3f} vs {ob:.3f}")


if __name__ == "__main__":
    main()
