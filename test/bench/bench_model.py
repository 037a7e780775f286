"""Parameters, FLOPs per frame and CPU latency of the model configurations.

FLOPs come from ``torch.utils.flop_counter`` on the meta device (2·MAC over matmul, conv and attention), batch 1,
for one new key frame with caching: ``encode`` of the new frame (condition encoder included) plus ``decode`` of the
pair. Attention-core (SDPA) FLOPs are listed separately because the reference numbers (STREAMSPLAT_SPEC.md §8.3)
leave them out (except DINOv2's). Usage::

    OMP_WAIT_POLICY=PASSIVE python test/bench/bench_model.py [--configs streamsplat small tiny] [--time tiny]

(``OMP_WAIT_POLICY=PASSIVE`` keeps OpenMP workers from spinning when the cores are shared.)
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from nut_ros.core.config import get_config
from nut_ros.core.model import NutModel

#: reference numbers (STREAMSPLAT_SPEC.md §8): params without DINOv2, GFLOPs per new key frame
SPEC_PARAMS = 181_689_998
SPEC_GFLOPS_PER_FRAME = 1690.0
#: flop-counter scopes (module class of the call root, then attribute path) -> table column
PARTS = {
    "StaticPredictor.encoder": "encoder ViT", "StaticPredictor.gaussian_upsampler": "static ups.",
    "StaticPredictor.predictor": "static heads", "DinoV2Condition": "condition", "Decoder": "decoder",
    "GaussianUpsampler": "dyn. ups.", "DynamicHead": "dyn. heads", "Linear": "encoder_proj",
}
#: ops of the attention core: SDPA kernels, or the batched matmuls of its math path on the meta device
ATTENTION_OPS = ("scaled_dot_product", "aten.bmm")


def _inputs(cfg, device=None):
    h, w = cfg.image_size
    return torch.rand(1, 3, h, w, device=device), torch.rand(1, cfg.depth_channels, h, w, device=device)


def count_flops(name: str) -> dict[str, float]:
    """GFLOPs per new key frame, split by module, plus the SDPA share."""
    cfg = get_config(name)
    with torch.device("meta"):
        model = NutModel(cfg).eval()
    rgb, disp = _inputs(cfg, "meta")
    with torch.no_grad():
        prev = model.encode(rgb, disp)
        counter = FlopCounterMode(display=False, depth=None)
        with counter:
            cur = model.encode(rgb, disp)
            model.decode(prev, cur)
    flops = counter.get_flop_counts()
    out = {column: sum(flops.get(scope, {}).values()) / 1e9 for scope, column in PARTS.items()}
    out["total"] = counter.get_total_flops() / 1e9
    attention = lambda scope: sum(v for op, v in flops.get(scope, {}).items()
                                  if any(a in str(op) for a in ATTENTION_OPS)) / 1e9
    out["sdpa"] = attention("Global")
    out["condition sdpa"] = attention("DinoV2Condition")
    return out


def count_params(name: str) -> tuple[int, int]:
    """(parameters without the condition encoder, condition-encoder parameters)."""
    with torch.device("meta"):
        model = NutModel(get_config(name))
    cond = sum(p.numel() for p in model.condition_encoder.parameters())
    return sum(p.numel() for p in model.parameters()) - cond, cond


def time_cpu(name: str, threads: int, repeats: int = 20, flush_denormal: bool = True) -> dict[str, float]:
    """Milliseconds per new frame (encode + decode) on the CPU, fp32, batch 1: wall median/min and the median
    process CPU time (the better measure on a shared machine), plus the encode/decode wall medians."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    torch.manual_seed(0)
    model = NutModel(get_config(name)).eval()
    rgb, disp = _inputs(model.config)
    enc, dec, cpu = [], [], []
    with torch.inference_mode():
        prev = model.encode(rgb, disp)
        for i in range(repeats + 2):
            c0, t0 = time.process_time(), time.perf_counter()
            cur = model.encode(rgb, disp)
            t1 = time.perf_counter()
            model.decode(prev, cur)
            t2, c1 = time.perf_counter(), time.process_time()
            if i >= 2:
                enc.append(t1 - t0)
                dec.append(t2 - t1)
                cpu.append(c1 - c0)
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1e3
    frame = [a + b for a, b in zip(enc, dec)]
    return {"encode": med(enc), "decode": med(dec), "frame": med(frame), "best": min(frame) * 1e3, "cpu": med(cpu)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["streamsplat", "small", "tiny"])
    ap.add_argument("--time", nargs="*", default=["tiny"], help="configs to time on the CPU")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    cols, notes = list(PARTS.values()), []
    print("| config | params (no cond.) | cond. params | Gaussians/frame | GFLOPs/frame | of which SDPA | "
          "GFLOPs w/o SDPA | " + " | ".join(cols) + " |")
    print("|---" * (7 + len(cols)) + "|")
    for name in args.configs:
        p, pc = count_params(name)
        f = count_flops(name)
        n = get_config(name).gaussians_per_frame
        print(f"| {name} | {p:,} | {pc:,} | {n:,} | {f['total']:.1f} | {f['sdpa']:.1f} | "
              f"{f['total'] - f['sdpa']:.1f} | "
              + " | ".join(f"{f[c]:.2f}" for c in cols) + " |")
        if name == "streamsplat":
            notes.append(f"streamsplat vs spec §8: params {p:,} (spec {SPEC_PARAMS:,}); GFLOPs/frame without SDPA "
                         f"cores {f['total'] - f['sdpa']:.1f}, {f['total'] - f['sdpa'] + f['condition sdpa']:.1f} "
                         f"with DINOv2's attention cores, which the spec counts (spec ≈{SPEC_GFLOPS_PER_FRAME:.0f})")
    print("\n".join(["", *notes]) if notes else "")
    for name in args.time:
        for flush in (True, False):
            t = time_cpu(name, args.threads, flush_denormal=flush)
            print(f"CPU {name}, {args.threads} threads, fp32, flush_denormal={flush}: encode {t['encode']:.1f} ms, "
                  f"decode {t['decode']:.1f} ms, encode+decode {t['frame']:.1f} ms per frame (wall median of 20; "
                  f"min {t['best']:.1f} ms; process CPU time {t['cpu']:.1f} ms)")


if __name__ == "__main__":
    main()
