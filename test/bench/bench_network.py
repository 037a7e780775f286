"""GPU: the network speed study of one model configuration: render time of the model's output against a realistic
scene, and speed variants (bf16 weights, torch.compile, SDPA backend), each timed eager and as one CUDA graph of
encode + decode and checked against the fp32 model. Random-init weights, batch 1.

    python test/bench/bench_network.py streamsplat --variants autocast bf16 bf16+compile+split-upsampler \
        --deadline-s 390 --out streamsplat_study.json

``--device cpu`` runs every code path without a GPU (wall-clock times, no CUDA graph).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import time
from dataclasses import fields

import torch

from nut_ros.core.gaussians import RasterInputs
from nut_ros.core.model import build_model
from nut_ros.pipeline.compile import compile_network, uncompile
from nut_ros.render import rasterize
from scenes import realistic_scene
from timing import graphed, timed
from variants import VARIANT_HELP, bf16_model, parse_variant, sdpa_context


def bench_render(inputs: RasterInputs, height: int, width: int, lowpass: float, device: str, iters: int = 30) -> dict:
    """Median time of one render of ``inputs`` (CUDA rasterizer on a GPU, the torch one elsewhere) and, on a GPU,
    its tile-Gaussian pair count."""
    impl = "cuda" if device == "cuda" else "torch"
    with torch.inference_mode():
        row = {"ms": timed(lambda: rasterize(inputs, height, width, impl=impl, lowpass=lowpass), device,
                           iters=iters)["median_ms"]}
        if device == "cuda":
            from nut_ros.render._cuda import rasterize_forward

            row["pairs"] = rasterize_forward(*inputs, height, width, torch.full((3,), 0.5), lowpass)[3]
    return row


def max_errors(ours, reference) -> dict[str, float]:
    """Largest absolute difference per Gaussian field (float32)."""
    return {f.name: (getattr(ours, f.name).float() - getattr(reference, f.name)).abs().max().item()
            for f in fields(reference) if f.name != "t0"}


def compile_report() -> dict:
    """Dynamo's graph and graph-break counters since the last reset."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    return {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(breaks.values()),
            "break_reasons": [r[:200] for r in list(breaks)[:5]]}


def bench_variant(model, spec: str, inputs, reference, device: str, iters: int) -> dict:
    """Eager and CUDA-graph network time, frame time (graph + render at t = 1), compile time and accuracy."""
    v = parse_variant(spec)
    h, w = model.config.image_size
    net = bf16_model(model) if v["base"] == "bf16" else model
    rgb, disp = (x.to(torch.bfloat16) for x in inputs) if v["base"] == "bf16" else inputs
    encode, decode = net.encode, net.decode
    row = {"variant": spec}
    if v["compile"]:
        torch._dynamo.reset()
        if v["upsampler"]:
            encode, decode = compile_network(net, v["compile"], v["upsampler"])
        else:  # everything in one graph each (wrong in bf16: nut_ros/pipeline/compile.py)
            encode = torch.compile(encode, mode=v["compile"], dynamic=False)
            decode = torch.compile(decode, mode=v["compile"], dynamic=False)

    def context():
        stack = contextlib.ExitStack()
        stack.enter_context(sdpa_context(v["sdpa"], device))
        if v["base"] == "autocast":
            stack.enter_context(torch.autocast(device, dtype=torch.bfloat16))
        return stack

    try:
        with torch.inference_mode():
            start = time.perf_counter()
            with context():
                prev = encode(rgb, disp)
                out = decode(prev, encode(rgb, disp))
            if device == "cuda":
                torch.cuda.synchronize()
            row["first_call_s"] = time.perf_counter() - start
            if v["compile"]:
                row.update(compile_report())
            row["max_abs_err_vs_fp32"] = max_errors(out, reference)

            def network():
                with context():
                    return decode(prev, encode(rgb, disp))

            row["eager_network_ms"] = timed(network, device, iters=iters)["median_ms"]
            if device == "cuda":
                net_t, frame_t = graphed(net, rgb, disp, prev, context, h, w, iters, encode, decode)
                row["graph_network_ms"], row["graph_frame_ms"] = net_t["median_ms"], frame_t["median_ms"]
            else:  # no CUDA graphs off-GPU: the eager frame
                row["eager_frame_ms"] = timed(
                    lambda: rasterize(network().map(lambda x: x.float()).at(1.0), h, w, impl="torch",
                                      lowpass=model.config.raster_lowpass),
                    device, warmup=1, iters=max(1, iters // 5))["median_ms"]
    except Exception as err:  # one failing variant (capture-unsafe op, compile error) must not end the study
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
    if v["compile"]:
        torch._dynamo.reset()
    uncompile(net)
    print(json.dumps(row), flush=True)
    return row


def network_gflop(model, inputs) -> float:
    """Matmul, convolution and attention GFLOP of one encode + decode (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        prev = model.encode(*inputs)
        with FlopCounterMode(display=False) as counter:
            model.decode(prev, model.encode(*inputs))
    return counter.get_total_flops() / 1e9


def reference_outputs(model, inputs):
    """The fp32 model's Gaussians (TF32 off) for the accuracy columns."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            prev = model.encode(*inputs)
            return model.decode(prev, model.encode(*inputs)).map(lambda x: x.float())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def markdown_report(study: dict) -> str:
    """The study as Markdown tables."""
    fmt = lambda x: "—" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)  # noqa: E731
    r = study["render"]
    lines = [f"### {study['config']} at {study['size'][1]}x{study['size'][0]}, {study['gaussians']:,} Gaussians, "
             f"{study['device_name']}, torch {study['torch']}, {study['date']} (study {study.get('study_s', 0):.0f} s)",
             "",
             "| render scene | ms | tile-Gaussian pairs |", "|---|---|---|",
             f"| random-init model output (t = 1) | {fmt(r['model_output']['ms'])} | "
             f"{fmt(r['model_output'].get('pairs'))} |",
             f"| realistic (pixel_aligned_scene) | {fmt(r['realistic']['ms'])} | "
             f"{fmt(r['realistic'].get('pairs'))} |", ""]
    realistic = r["realistic"]["ms"]
    gflop = study.get("network_gflop") or 0.0
    lines += [f"Network: {gflop:,.0f} GFLOP per frame (encode + decode).", "",
              "| variant | first call s (compile) | net ms, no graph | graph net ms | graph net TFLOP/s "
              "| graph frame ms "
              "| graph net + realistic render ms | max err xyz / rgb / vel / opacity | graphs / breaks | error |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for v in study["variants"]:
        e = v.get("max_abs_err_vs_fp32", {})
        errs = " / ".join(f"{e[k]:.1e}" for k in ("xyz", "rgb", "velocity", "opacity")) if e else "—"
        net = v.get("graph_network_ms")
        lines.append(f"| {v['variant']} | {fmt(v.get('first_call_s'))} | {fmt(v.get('eager_network_ms'))} | "
                     f"{fmt(net)} | {fmt(gflop / net if net else None)} | "
                     f"{fmt(v.get('graph_frame_ms', v.get('eager_frame_ms')))} | "
                     f"{fmt(net + realistic if net is not None else None)} | {errs} | "
                     f"{fmt(v.get('graphs'))} / {fmt(v.get('graph_breaks'))} | {v.get('error', '')} |")
    lines += ["", "Graph net + realistic render: the per-frame time a trained model would take (render outside the "
              "graph). Errors: max |variant - fp32 model (TF32 off)| over all Gaussians; bf16 autocast is the "
              "shipped baseline. Variants: " + " ".join(VARIANT_HELP.split())]
    return "\n".join(lines)


def _raise_timeout(signum, frame):
    raise TimeoutError("deadline reached")


def network_study(config: str, variants, device: str = "cuda", iters: int = 30,
                  overrides: dict | None = None, out: str | None = None, deadline_s: float | None = None) -> dict:
    """Render times (model output vs realistic scene) and the speed variants of one config.

    The JSON is rewritten to ``out`` after every step. With ``deadline_s`` (seconds from the call), variants that
    would start later are skipped and a running one (a long compile) is interrupted at the deadline, so the tables
    are always printed."""
    t_start = time.perf_counter()
    torch.manual_seed(0)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()}
    model = build_model(config, **overrides).to(device).eval()
    cfg = model.config
    h, w = cfg.image_size
    inputs = (torch.rand(1, 3, h, w, device=device), torch.rand(1, cfg.depth_channels, h, w, device=device))
    study = {"config": config, "overrides": overrides, "size": [h, w], "gaussians": 2 * cfg.gaussians_per_frame,
             "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
             "date": time.strftime("%Y-%m-%d"), "variants": []}

    def save():
        if out:
            with open(out, "w") as f:
                json.dump(study, f, indent=1)

    reference = reference_outputs(model, inputs)
    study["network_gflop"] = network_gflop(model, inputs)
    scene = realistic_scene(h, w, 2 * cfg.gaussians_per_frame, device)
    study["render"] = {"model_output": bench_render(reference.at(1.0), h, w, cfg.raster_lowpass, device, iters),
                       "realistic": bench_render(scene, h, w, cfg.raster_lowpass, device, iters)}
    print(json.dumps({"render": study["render"]}), flush=True)
    save()
    for spec in variants:
        left = None if deadline_s is None else deadline_s - (time.perf_counter() - t_start)
        if left is not None and left <= 1:
            study["variants"].append({"variant": spec, "error": "skipped: deadline reached"})
            continue
        if left is not None:
            signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, left)
        try:
            row = bench_variant(model, spec, inputs, reference, device, iters)
        except TimeoutError as err:  # fired outside the variant's own error handling
            row = {"variant": spec, "error": f"TimeoutError: {err}"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        study["variants"].append(row)
        if device == "cuda":
            torch.cuda.empty_cache()
        save()
    study["study_s"] = time.perf_counter() - t_start
    save()
    print(markdown_report(study), flush=True)
    return study


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=VARIANT_HELP)
    p.add_argument("config", help="model configuration (streamsplat, small, tiny)")
    p.add_argument("--variants", nargs="*", default=["autocast", "bf16"], help="study variants (see below)")
    p.add_argument("--out", default="bench_network.json")
    p.add_argument("--device", default="cuda", help="cpu: check every study code path without a GPU")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--config-overrides", type=json.loads, default=None, help="JSON of ModelConfig field overrides")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="study time budget: later variants are skipped, a running one interrupted")
    args = p.parse_args(argv)
    for spec in args.variants:
        parse_variant(spec)  # fail before any work on a typo
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch._dynamo.config.cache_size_limit = 64
    network_study(args.config, args.variants, args.device, args.iters, args.config_overrides, args.out,
                  args.deadline_s)


if __name__ == "__main__":
    main()
