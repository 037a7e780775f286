"""GPU: every attention shape of one model configuration in bf16 through each SDPA backend and the default choice.

    python test/bench/bench_attention.py streamsplat [--device cuda]
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from nut_ros.core.config import get_config
from nut_ros.core.layers import num_heads
from timing import timed
from variants import SDPA_BACKENDS, sdpa_context


def attention_shapes(cfg) -> dict[str, tuple[int, int, int, int, int]]:
    """``(batch, heads, query tokens, key tokens, head width)`` of each distinct attention of one frame."""
    n, heads = cfg.num_tokens, num_heads(cfg.width)
    d = cfg.width // heads
    shapes = {"encoder": (1, heads, n, n, d), "decoder self": (1, heads, 2 * n, 2 * n, d),
              "decoder cross": (2, heads, n, cfg.condition_tokens, d)}
    if cfg.condition == "dinov2":
        tokens = cfg.dino.num_tokens + 1 + cfg.dino.num_registers
        shapes["dinov2"] = (1, cfg.dino.heads, tokens, tokens, cfg.dino.embed_dim // cfg.dino.heads)
    tokens = n
    for i, dim in enumerate(cfg.upsampler_dims):
        tokens *= 4
        window = min(cfg.window, tokens)
        shapes[f"upsampler {i}"] = (tokens // window, num_heads(dim), window, window, dim // num_heads(dim))
    return shapes


def bench_sdpa(cfg, device: str, iters: int = 20) -> list[dict]:
    """Each attention shape of ``cfg`` in bf16 through every SDPA backend and the default choice."""
    rows = []
    for name, (b, h, lq, lk, d) in attention_shapes(cfg).items():
        q = torch.randn(b, h, lq, d, device=device, dtype=torch.bfloat16)
        k, v = (torch.randn(b, h, lk, d, device=device, dtype=torch.bfloat16) for _ in range(2))
        row = {"attention": name, "shape": [b, h, lq, lk, d], "gflop": 4 * b * h * lq * lk * d / 1e9}
        for backend in (None, *SDPA_BACKENDS):
            key = backend or "default"
            try:
                with torch.inference_mode(), sdpa_context(backend, device):
                    ms = timed(lambda: F.scaled_dot_product_attention(q, k, v), device, iters=iters)["median_ms"]
                row[f"{key}_ms"] = ms
                row[f"{key}_tflops"] = row["gflop"] / ms
            except RuntimeError as err:
                row[f"{key}_ms"] = None
                row[f"{key}_error"] = str(err).splitlines()[0][:160]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as one Markdown table: milliseconds (TFLOP/s) per backend."""
    lines = ["| attention | B,H,Lq,Lk,D | GFLOP | "
             + " | ".join(f"{b} ms (TFLOP/s)" for b in ("default", *SDPA_BACKENDS))
             + " |", "|---|---|---|" + "---|" * (1 + len(SDPA_BACKENDS))]
    for a in rows:
        cells = [f"{a[f'{b}_ms']:.2f} ({a[f'{b}_tflops']:.0f})" if a.get(f"{b}_ms") else "n/a"
                 for b in ("default", *SDPA_BACKENDS)]
        lines.append(f"| {a['attention']} | {','.join(map(str, a['shape']))} | {a['gflop']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="model configuration (streamsplat, small, tiny)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args(argv)
    print(markdown_table(bench_sdpa(get_config(args.config), args.device, args.iters)))


if __name__ == "__main__":
    main()
