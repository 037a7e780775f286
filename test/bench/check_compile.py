"""Which submodule makes ``torch.compile`` disagree with eager? (GPU diagnostic for docs/BENCHMARKS.md)

    python test/bench/check_compile.py [--config streamsplat] [--device cuda] [--modules ...] [--scan]

Compiles one submodule of a random-init model at a time (then ``encode``/``decode`` whole), in fp32 and under bf16
autocast, and prints the largest difference from the eager model in the two frame caches and in the decoded
positions and velocities. TF32 is off so that fp32 differences mean a miscompile, not rounding. With ``--scan`` it
also names the looped reduction kernels of each compile that read back what they stored (``test/inductor_code.py``:
the racy pattern that made the compiled ``encode``'s graph replays wrong, ``nut_ros/pipeline/compile.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

from nut_ros.core.model import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for the scan of generated code
from inductor_code import racy_reductions  # noqa: E402

SUBMODULES = ("gs_predictor.encoder", "gs_predictor.gaussian_upsampler", "gs_predictor.predictor",
              "condition_encoder", "decoder", "gaussian_upsampler", "gs_dynamic_predictor", "encode+decode")


def _max_diff(a, b) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="streamsplat")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modules", nargs="+", default=list(SUBMODULES),
                    help="submodules to compile one at a time (dotted names; 'encode+decode' for the whole model)")
    ap.add_argument("--autocast-only", action="store_true", help="skip the fp32 pass")
    ap.add_argument("--scan", action="store_true", help="also list each compile's racy reduction kernels (caches off)")
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = build_model(args.config).to(args.device).eval()
    h, w = model.config.image_size
    rgb = torch.rand(1, 3, h, w, device=args.device)
    disp = torch.rand(1, model.config.depth_channels, h, w, device=args.device)

    def run(autocast: bool):
        with torch.inference_mode(), torch.autocast(args.device, torch.bfloat16, enabled=autocast):
            prev, cur = model.encode(rgb, disp), model.encode(rgb * 0.9, disp)
            return prev, cur, model.decode(prev, cur)

    for autocast in (True,) if args.autocast_only else (False, True):
        want = run(autocast)
        for name in args.modules:
            torch._dynamo.reset()
            if name == "encode+decode":
                model.encode = torch.compile(model.encode, dynamic=False)
                model.decode = torch.compile(model.decode, dynamic=False)
            else:
                module = model.get_submodule(name)
                module.forward = torch.compile(module.forward, dynamic=False)
            try:
                with torch._inductor.config.patch(force_disable_caches=args.scan):
                    (prev, cur, g), codes = run_and_get_code(run, autocast)
                racy = f" racy {racy_reductions(codes) or 'none'}" if args.scan else ""
                print(f"autocast={autocast!s:5} {name:32s} prev {_max_diff(prev, want[0]):.2e} "
                      f"cur {_max_diff(cur, want[1]):.2e} xyz {(g.xyz - want[2].xyz).abs().max().item():.2e} "
                      f"velocity {(g.velocity.float() - want[2].velocity.float()).abs().max().item():.2e}{racy}",
                      flush=True)
            except Exception as err:  # report and go on with the next submodule
                print(f"autocast={autocast!s:5} {name:32s} {type(err).__name__}: {str(err)[:200]}", flush=True)
            finally:  # back to eager
                if name == "encode+decode":
                    del model.encode, model.decode
                else:
                    del module.forward


if __name__ == "__main__":
    main()
