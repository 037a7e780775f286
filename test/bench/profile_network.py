"""GPU: a kernel profile of eager network calls of one model configuration and speed variant: the top kernels, the
kernel time per kernel group and per model component (random-init weights, batch 1).

    python test/bench/profile_network.py streamsplat --variant autocast [--calls 3]
"""
from __future__ import annotations

import argparse
import json

import torch

from nut_ros.core.model import build_model
from variants import bf16_model, parse_variant, sdpa_context

#: submodules of NutModel timed separately by :func:`profile_network`
COMPONENTS = ("gs_predictor.encoder", "gs_predictor.gaussian_upsampler", "gs_predictor.predictor", "condition_encoder",
              "decoder", "gaussian_upsampler", "gs_dynamic_predictor", "encoder_proj")
KERNEL_GROUPS = (("attention", ("flash", "fmha", "attention", "sdpa")),
                 ("gemm", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "cublas", "addmm", "mm", "conv")),
                 ("triton (fused)", ("triton",)),
                 ("norm", ("norm",)),
                 ("reduction", ("reduce",)),
                 ("copy / cast / cat", ("copy", "cat", "cast", "index", "roll", "permute", "to_copy", "clone")),
                 ("elementwise", ("elementwise", "vectorized", "unrolled", "add", "mul", "silu", "sigmoid", "tanh")))


def kernel_group(name: str) -> str:
    low = name.lower()
    return next((g for g, keys in KERNEL_GROUPS if any(k in low for k in keys)), "other")


def profile_network(model, spec: str, inputs, device: str, calls: int = 3, top: int = 25) -> dict:
    """torch.profiler of ``calls`` eager network calls of variant ``spec`` (no compile): the ``top`` kernels by
    total time, the kernel time per group and per model component, all per call."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    v = parse_variant(spec)
    if v["compile"]:
        raise ValueError("profile an eager variant (its compiled form hides the modules)")
    net = bf16_model(model) if v["base"] == "bf16" else model
    rgb, disp = (x.to(torch.bfloat16) for x in inputs) if v["base"] == "bf16" else inputs
    ranges, handles = [], []
    for name in COMPONENTS:
        module = net.get_submodule(name)
        handles.append(module.register_forward_pre_hook(
            lambda m, a, name=name: ranges.append(record_function(f"component::{name}").__enter__())))
        handles.append(module.register_forward_hook(lambda m, a, o: ranges.pop().__exit__(None, None, None)))
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=v["base"] == "autocast")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    try:
        with torch.inference_mode(), sdpa_context(v["sdpa"], device), autocast:
            prev = net.encode(rgb, disp)
            for _ in range(3):
                net.decode(prev, net.encode(rgb, disp))
            if device == "cuda":
                torch.cuda.synchronize()
            with profile(activities=activities) as prof:
                for _ in range(calls):
                    net.decode(prev, net.encode(rgb, disp))
                if device == "cuda":
                    torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()
    kernels: dict[str, list[float]] = {}
    if device == "cuda":
        for e in prof.events():
            # device events: kernels, memcpy/memset; not the GPU copies of the component ranges
            if e.device_type == DeviceType.CUDA and not (e.is_user_annotation or e.name.startswith("component::")):
                kernels.setdefault(e.name, [0.0, 0])
                kernels[e.name][0] += e.time_range.elapsed_us() / 1e3 / calls
                kernels[e.name][1] += 1 / calls
    else:  # no kernels off-GPU: leaf CPU ops by self time
        for e in prof.key_averages():
            if not e.key.startswith("component::"):
                kernels[e.key] = [e.self_cpu_time_total / 1e3 / calls, e.count / calls]
    total = sum(t for t, _ in kernels.values())
    groups: dict[str, float] = {}
    for name, (t, _) in kernels.items():
        groups[kernel_group(name)] = groups.get(kernel_group(name), 0.0) + t
    # kernel time under each component's range (CPU time of the range off-GPU)
    components = {name: 0.0 for name in COMPONENTS}
    for e in prof.events():
        if e.device_type == DeviceType.CPU and e.name.startswith("component::"):
            t = e.device_time_total if device == "cuda" else e.cpu_time_total
            components[e.name.split("::", 1)[1]] += t / 1e3 / calls
    components["rest (decode glue: cat, Gaussians)"] = total - sum(components.values())
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    report = {"variant": spec, "kernel_ms_per_call": total,
              "groups_ms": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
              "components_ms": components,
              "top_kernels": [{"name": n[:160], "group": kernel_group(n), "ms": t, "calls": c, "share": t / total}
                              for n, (t, c) in ranked]}
    print(json.dumps(report), flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="model configuration (streamsplat, small, tiny)")
    p.add_argument("--variant", default="autocast", help="an eager variant (no compile), see variants.py")
    p.add_argument("--device", default="cuda")
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args(argv)
    parse_variant(args.variant)
    torch.manual_seed(0)
    model = build_model(args.config).to(args.device).eval()
    h, w = model.config.image_size
    inputs = (torch.rand(1, 3, h, w, device=args.device),
              torch.rand(1, model.config.depth_channels, h, w, device=args.device))
    profile_network(model, args.variant, inputs, args.device, args.calls)


if __name__ == "__main__":
    main()
