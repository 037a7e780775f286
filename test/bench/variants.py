"""Speed variants of the network benchmarks (``BASE[+OPTION...]``): parsing, the SDPA backend restriction and the
bf16 copy of a model."""
from __future__ import annotations

import contextlib
import copy

import torch

from nut_ros.core.encoder import GaussianHead

SDPA_BACKENDS = ("flash", "efficient", "cudnn")
VARIANT_HELP = """A variant is BASE[+OPTION...]. BASE: "autocast" (fp32 weights, bf16 autocast: the shipped mode) or
"bf16" (weights, buffers and activations in bf16 except the Gaussian grid maps, no autocast). OPTIONs: "compile"
(torch.compile of encode and decode, default mode), "compile-max" (mode max-autotune-no-cudagraphs), "flash",
"efficient" or "cudnn" (only that SDPA backend), "eager-upsampler" (with compile: the two Gaussian upsamplers stay
eager, outside the compiled graphs; still inside the CUDA graph), "split-upsampler" (with compile: each stage of the
upsamplers compiled as its own graph). Every variant is timed eager and as one CUDA graph of encode +
decode, and its Gaussians are compared with the fp32 model's (TF32 off)."""


def sdpa_context(backend: str | None, device: str):
    """Restrict SDPA to one backend (plus the math fallback off-GPU, so CPU checks run); a no-op for ``None``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if backend is None:
        return contextlib.nullcontext()
    chosen = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
              "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]
    return sdpa_kernel([chosen] if device == "cuda" else [chosen, SDPBackend.MATH])


def parse_variant(spec: str) -> dict:
    base, *options = spec.split("+")
    if base not in ("autocast", "bf16"):
        raise ValueError(f"variant {spec!r}: base must be autocast or bf16")
    unknown = set(options) - {"compile", "compile-max", "eager-upsampler", "split-upsampler", *SDPA_BACKENDS}
    if unknown or sum(o in SDPA_BACKENDS for o in options) > 1 or {"compile", "compile-max"} <= set(options):
        raise ValueError(f"variant {spec!r}: bad options {options}")
    compile_mode = ("default" if "compile" in options
                    else "max-autotune-no-cudagraphs" if "compile-max" in options else None)
    backend = next((o for o in options if o in SDPA_BACKENDS), None)
    upsampler = [o for o in options if o.endswith("-upsampler")]
    if upsampler and (not compile_mode or len(upsampler) > 1):
        raise ValueError(f"variant {spec!r}: one of eager-upsampler / split-upsampler, with compile or compile-max")
    return {"name": spec, "base": base, "compile": compile_mode, "sdpa": backend,
            "upsampler": upsampler[0].split("-")[0] if upsampler else None}


def bf16_model(model):
    """A bf16 copy of ``model`` whose Gaussian grid maps stay float32 (bf16 cannot place pixel centres)."""
    copy_ = copy.deepcopy(model).to(torch.bfloat16)
    for head in copy_.modules():
        if isinstance(head, GaussianHead):
            head.x_map, head.z_map = head.x_map.float(), head.z_map.float()
    return copy_
