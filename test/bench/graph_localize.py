"""Do the compiled network's CUDA graphs replay what its direct calls compute, part by part? (GPU diagnostic behind
``test/test_compile_gpu.py``; ``gpu_measure.sh kernels`` and ``compile-fix`` run it)

    python test/bench/graph_localize.py [--model small] [--inference-inputs] [--calls N] [--parts encode ...]
                                        [--channel-major-patches] [--persistent-reductions]

It located the wrong replays of the compiled ``encode`` (a racy reduction kernel, ``nut_ros/pipeline/compile.py``).
It takes the parts one at a time, each graph given the inputs the direct calls had, under bf16 autocast without its
weight cache (as the backend runs them):

1. ``encode`` through :class:`GraphedCall`, ``--calls`` calls per frame (3), every field of the frame cache against
   the direct call's;
2. the Gaussian upsampler alone (eager ``forward``, its stages compiled one by one) on the direct call's tokens, as
   many calls per frame;
3. ``decode`` on the direct calls' caches, as many calls;
4. the same three graphs of the eager network, against its direct calls (the control).
"""
from __future__ import annotations

import argparse

import torch

from compile_repeat import OFF, shipped_pair  # (test/bench, the script's folder)
from nut_ros.pipeline.compile import compile_network, uncompile
from nut_ros.pipeline.cuda_graphs import GraphedCall


PARTS = ("encode", "upsampler", "decode")


def _persistent_reductions() -> None:
    """Make Inductor generate every reduction over at most 1,024 elements without a loop (the other way out of the
    racy kernel, with ``--channel-major-patches``: its default loops over a reduction that is not along the fastest
    axis past 64 elements, and a looped kernel that stores a value in its first loop and reads it back in its second
    may read it before another warp's store lands: upstream PR pytorch/pytorch#190519). Set before anything is compiled;
    the caller uses a fresh Inductor cache."""
    from torch._inductor.choices import InductorChoices
    from torch._inductor.virtualized import V

    class Persistent(InductorChoices):
        @staticmethod
        def should_use_persistent_reduction(features, cooperative_reduction) -> bool:
            numel = features.reduction_numel
            if not cooperative_reduction and getattr(numel, "is_number", True) and int(numel) <= 1024:
                return True
            return InductorChoices.should_use_persistent_reduction(features, cooperative_reduction)

    V.set_choices_handler(Persistent())


def _fields(out) -> dict[str, torch.Tensor]:
    if hasattr(out, "_fields"):  # FrameCache (NamedTuple)
        return {f: getattr(out, f).float() for f in out._fields}
    if isinstance(out, torch.Tensor):
        return {"out": out.float()}
    return {f: getattr(out, f).float() for f in ("xyz", "velocity", "rgb", "opacity", "scale", "gamma")}


def _compare(name: str, got, ref) -> None:
    a, b = _fields(got), _fields(ref)
    cells = []
    for f in a:
        d = (a[f] - b[f]).abs()
        cells.append(f"{f} {d.max().item():.2e}")
        if f == "xyz":
            cells.append(f"off {int((d.amax(-1) > OFF).sum())}")
    print(f"  {name:34s} " + "  ".join(cells), flush=True)


def _part(name: str, fn, inputs: list[tuple], direct: list, calls: int = 3) -> None:
    """``fn`` through a GraphedCall: ``calls`` calls per input, each against the direct result of that input."""
    print(f"{name}:", flush=True)
    graphed = GraphedCall(fn)
    for i, (args, ref) in enumerate(zip(inputs, direct)):
        for k in range(calls):
            _compare(f"input {i} call {k}{' (captures)' if i == k == 0 else ''}", graphed(*args), ref)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--inference-inputs", action="store_true",
                    help="give the direct calls inference tensors, as GraphedCall's static inputs are (made inside "
                         "inference mode): otherwise Dynamo compiles the compiled parts again for the graphs (a guard "
                         "on the inputs' dispatch keys)")
    ap.add_argument("--calls", type=int, default=3, help="graph calls per input of each part (how often is one off?)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to graph")
    ap.add_argument("--channel-major-patches", action="store_true",
                    help="without compile_network's channels-last input of the patch convolutions (reproduces the "
                         "racy reduction kernel that made the compiled encode's replays wrong now and then)")
    ap.add_argument("--persistent-reductions", action="store_true",
                    help="every reduction over at most 1,024 elements without a loop (see _persistent_reductions; "
                         "use a fresh TORCHINDUCTOR_CACHE_DIR)")
    args = ap.parse_args(argv)
    if args.persistent_reductions:
        _persistent_reductions()
    model, frames, disp = shipped_pair(args.model)
    if args.inference_inputs:
        with torch.inference_mode():
            frames, disp = [f.clone() for f in frames], disp.clone()
    upsampler = model.gs_predictor.gaussian_upsampler

    def parts(encode, decode, label: str) -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            runs = []
            for _ in range(3):
                caches = [encode(f, disp) for f in frames]
                runs.append((caches, decode(*caches)))
            caches, g = runs[0]
            print(f"{label}, direct calls again:", flush=True)
            for k, (c, gk) in enumerate(runs[1:], 1):
                for i in range(len(frames)):
                    _compare(f"repeat {k}: encode frame {i}", c[i], caches[i])
                _compare(f"repeat {k}: decode", gk, g)
            tokens = [c.tokens for c in caches]
            if "encode" in args.parts:
                _part(f"{label} encode", encode, [(f, disp) for f in frames], caches, args.calls)
            if "upsampler" in args.parts:
                _part(f"{label} upsampler", upsampler, [(t,) for t in tokens], [upsampler(t) for t in tokens],
                      args.calls)
            if "decode" in args.parts:
                _part(f"{label} decode", decode, [tuple(caches)], [g], args.calls)

    encode, decode = compile_network(model, token_major_patches=not args.channel_major_patches)
    try:
        parts(encode, decode, "compiled")
    finally:
        uncompile(model)
    parts(model.encode, model.decode, "eager")


if __name__ == "__main__":
    main()
