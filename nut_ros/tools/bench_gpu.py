"""GPU benchmarks, one process: our CUDA rasterizer vs gsplat (ortho) vs the PyTorch rasterizer, and end-to-end
per-frame latency of model configurations in the PyTorch CUDA backend (fp32 / bf16 / fp16, eager / CUDA graph), and
(``--e2e``) a network speed study of one configuration: render time of the model's output vs a realistic scene, SDPA
backends per attention shape, a kernel profile, and speed variants (bf16 weights, torch.compile, SDPA backend), each
timed as a CUDA graph and checked against the fp32 model.

Rasterizer scenes are pixel-aligned grids at 512x288 (one Gaussian per 2x2 pixels per layer, jittered, layers at
different depths), 36,864 to 294,912 Gaussians, identity rotations and opacity <= 0.99 so that gsplat's conventions
can be aligned exactly (see :func:`gsplat_render` for every difference). Times are CUDA-event medians.

    python -m nut_ros.tools.bench_gpu --out bench_gpu.json [--skip-gsplat] [--configs small streamsplat]
    python -m nut_ros.tools.bench_gpu --e2e streamsplat --variants autocast bf16 bf16+compile --profile --out s.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import signal
import statistics
import time

import torch
import torch.nn.functional as F

from nut_ros.core.gaussians import RasterInputs
from nut_ros.pipeline.compile import compile_network, uncompile

WIDTH, HEIGHT = 512, 288
SIZES = (36_864, 73_728, 147_456, 294_912)


def grid_scene(n: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 0, device="cuda",
               random_rotations: bool = False) -> RasterInputs:
    """``n`` Gaussians as jittered pixel-aligned layers (one per 2x2 pixels) in the reference world frame."""
    g = torch.Generator().manual_seed(seed)
    gh, gw = height // 2, width // 2
    per_layer = gh * gw
    layers = math.ceil(n / per_layer)
    j, i = torch.meshgrid(torch.arange(gw), torch.arange(gh), indexing="xy")
    x = ((2 * j + 0.5) - (width - 1) / 2) / (width / 2)
    z = -((2 * i + 0.5) - (height - 1) / 2) / (height / 2)
    xz = torch.stack([x.reshape(-1), z.reshape(-1)], -1).repeat(layers, 1)[:n]
    xz = xz + (torch.rand(n, 2, generator=g) - 0.5) * torch.tensor([2 / width, 2 / height])
    depth = 0.1 + 4.9 * torch.rand(n, generator=g)
    means = torch.stack([xz[:, 0], depth, xz[:, 1]], -1)
    sx = (0.5 + torch.rand(n, generator=g)) / gw
    sz = (0.5 + torch.rand(n, generator=g)) / gh
    scales = torch.stack([sx, (sx + sz) / 2, sz], -1)
    if random_rotations:
        rotations = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    else:
        rotations = torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone()
    opacities = 0.05 + 0.94 * torch.rand(n, 1, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return RasterInputs(*(t[None].contiguous().to(device) for t in (means, scales, rotations, opacities, colors)))


def cuda_time(fn, warmup: int = 5, iters: int = 30) -> dict[str, float]:
    """Median / min / max milliseconds of ``fn()`` with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "iters": iters}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def gsplat_render(inputs: RasterInputs, height: int, width: int, background=(0.5, 0.5, 0.5)):
    """The same scene through ``gsplat.rasterization(camera_model="ortho")`` with our conventions aligned.

    Differences and how they are aligned: gsplat samples pixel centres at (j + 0.5, i + 0.5), ours at integers,
    so cx = W/2 and cy = H/2 (ours: (W-1)/2, (H-1)/2); view matrix = our fixed camera (x, -z, y); K = diag(W/2,
    H/2); eps2d = 0.3 is our low-pass; RGB+D gives Σ w·z like our depth. Not aligned (kept out of the scene): gsplat
    normalises quaternions (we use identity rotations), clamps alpha at 0.999 instead of 0.99 (opacity <= 0.99
    here), uses __expf, stops at T <= 1e-4 (ours < 1e-4), culls z < near_plane = 0.01 (our depths >= 0.1), and
    sizes tiles with an opacity-aware extent (min(3, sqrt(2 ln(255 o))) sigma) instead of 3 sigma.
    """
    from gsplat import rasterization

    dev = inputs.means.device
    view = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], device=dev)
    k = torch.tensor([[width / 2, 0, width / 2], [0, height / 2, height / 2], [0, 0, 1.0]], device=dev)
    colors, alphas, _ = rasterization(
        inputs.means[0], inputs.rotations[0], inputs.scales[0], inputs.opacities[0, :, 0], inputs.colors[0],
        view[None], k[None], width, height, camera_model="ortho", render_mode="RGB+D", eps2d=0.3,
        near_plane=0.01, tile_size=16, backgrounds=torch.tensor([background], device=dev), packed=False)
    return colors[0, ..., :3].permute(2, 0, 1), colors[0, ..., 3], alphas[0, ..., 0]


def bench_rasterizers(sizes=SIZES, with_gsplat: bool = True, torch_max: int = 300_000) -> list[dict]:
    from nut_ros.render._cuda import rasterize_forward
    from nut_ros.render._torch_impl import rasterize_torch

    bg = torch.tensor([0.5, 0.5, 0.5], device="cuda")
    rows = []
    for n in sizes:
        inputs = grid_scene(n)
        row = {"gaussians": n, "height": HEIGHT, "width": WIDTH}
        ours = rasterize_forward(*inputs, HEIGHT, WIDTH, bg)
        row["pairs"] = ours[3]
        row["ours"] = cuda_time(lambda: rasterize_forward(*inputs, HEIGHT, WIDTH, bg), iters=50)
        if n <= torch_max:
            with torch.no_grad():
                ref = rasterize_torch(*inputs, HEIGHT, WIDTH, bg)
                row["torch"] = cuda_time(lambda: rasterize_torch(*inputs, HEIGHT, WIDTH, bg), warmup=1, iters=3)
            row["ours_vs_torch_max_abs"] = {k: (a - b).abs().max().item()
                                            for k, a, b in zip(("color", "depth", "alpha"), ours[:3], ref)}
        if with_gsplat:
            gs = gsplat_render(inputs, HEIGHT, WIDTH)
            row["gsplat"] = cuda_time(lambda: gsplat_render(inputs, HEIGHT, WIDTH), iters=50)
            row["ours_vs_gsplat"] = {"psnr_color_db": psnr(ours[0][0], gs[0]),
                                     "psnr_alpha_db": psnr(ours[2][0, 0], gs[2]),
                                     "depth_max_abs": (ours[1][0, 0] - gs[1]).abs().max().item()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- end-to-end latency -------------------------------------------------------------------------------------------

def timed(fn, device: str, warmup: int = 5, iters: int = 30) -> dict[str, float]:
    """:func:`cuda_time` on a GPU; wall-clock medians (after a synchronising warm-up) elsewhere."""
    if device == "cuda":
        return cuda_time(fn, warmup, iters)
    for _ in range(min(warmup, 1)):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "iters": iters}


def graph_capture(fn, warm=None):
    """Capture ``fn()`` (static inputs) in a CUDA graph after three warm-up calls on a side stream; returns
    ``(graph, outputs of the captured call)``. ``warm`` runs instead of ``fn`` for the warm-up when given."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            (warm or fn)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def _graphed(model, rgb, disp, prev, autocast, h, w, iters, encode=None, decode=None):
    """(network, frame) timings with encode + decode replayed from one CUDA graph (``encode``/``decode`` default to
    the model's methods; pass compiled ones to graph those)."""
    from nut_ros.core.model import FrameCache
    from nut_ros.render import rasterize

    encode, decode = encode or model.encode, decode or model.decode
    static_prev = FrameCache(*(t.clone() for t in prev))
    static_cur = FrameCache(*(t.clone() for t in prev))

    def step():  # one frame of a stream: the previous "current" becomes "prev"
        for p, c in zip(static_prev, static_cur):
            p.copy_(c)
        with autocast():
            new = encode(rgb, disp)
        for c, x in zip(static_cur, new):
            c.copy_(x)
        with autocast():
            return decode(static_prev, static_cur)

    def warm():
        with autocast():
            decode(static_prev, encode(rgb, disp))

    graph, out = graph_capture(step, warm)

    def frame():
        graph.replay()
        return rasterize(out.map(lambda x: x.float()).at(1.0), h, w, impl="cuda",
                         lowpass=model.config.raster_lowpass)

    return cuda_time(graph.replay, iters=iters), cuda_time(frame, iters=iters)


def realistic_scene(height: int, width: int, gaussians: int, device="cuda") -> RasterInputs:
    """``gaussians`` splats in pixel-aligned layers of one per 2x2 pixels with the reference oracle scenes' statistics
    (:func:`nut_ros.render.scenes.pixel_aligned_scene`); what a trained model renders, unlike a random-init one."""
    from nut_ros.render.scenes import pixel_aligned_scene

    gw, gh = width // 2, height // 2
    layers = gaussians // (gw * gh)
    assert layers * gw * gh == gaussians, f"{gaussians} Gaussians are not whole {gw}x{gh} layers"
    return RasterInputs(*(t.to(device) for t in pixel_aligned_scene(gw, gh, layers=layers)))


def bench_render(inputs: RasterInputs, height: int, width: int, device: str, iters: int = 30) -> dict:
    """Median time of one render of ``inputs`` (CUDA rasterizer on a GPU, the torch one elsewhere) and, on a GPU,
    its tile-Gaussian pair count."""
    from nut_ros.render import rasterize

    impl = "cuda" if device == "cuda" else "torch"
    with torch.inference_mode():
        row = {"ms": timed(lambda: rasterize(inputs, height, width, impl=impl), device, iters=iters)["median_ms"]}
        if device == "cuda":
            from nut_ros.render._cuda import rasterize_forward

            row["pairs"] = rasterize_forward(*inputs, height, width, torch.full((3,), 0.5))[3]
    return row


def bench_end_to_end(config: str, modes=("fp32", "bf16", "fp16"), iters: int = 30) -> list[dict]:
    """Per-frame latency: encode the new frame + decode the pair + render at t = 1 (CUDA rasterizer).

    ``render_ms`` renders the random-init model's output (large splats); ``render_realistic_ms`` a realistic scene
    of the same Gaussian count (:func:`realistic_scene`)."""
    from nut_ros.core.model import build_model
    from nut_ros.render import rasterize

    torch.manual_seed(0)
    model = build_model(config).cuda().eval()
    cfg = model.config
    h, w = cfg.image_size
    rgb = torch.rand(1, 3, h, w, device="cuda")
    disp = torch.rand(1, cfg.depth_channels, h, w, device="cuda")
    realistic = bench_render(realistic_scene(h, w, 2 * cfg.gaussians_per_frame), h, w, "cuda", iters)
    rows = []
    for mode in modes:
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]

        def autocast():
            return torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

        with torch.inference_mode():
            with autocast():
                prev = model.encode(rgb, disp)

            def network():
                with autocast():
                    cur = model.encode(rgb, disp)
                    return model.decode(prev, cur)

            def frame():
                g = network().map(lambda x: x.float())
                return rasterize(g.at(1.0), h, w, impl="cuda", lowpass=cfg.raster_lowpass)

            gaussians = network().map(lambda x: x.float())
            render_only = cuda_time(lambda: rasterize(gaussians.at(1.0), h, w, impl="cuda",
                                                      lowpass=cfg.raster_lowpass), iters=iters)
            eager_net = cuda_time(network, iters=iters)
            eager = cuda_time(frame, iters=iters)

            # CUDA graph of the network (encode + decode with static buffers); rendering stays outside because the
            # rasterizer reads its pair count back to the host.
            try:
                graphed_net, graphed = _graphed(model, rgb, disp, prev, autocast, h, w, iters)
            except RuntimeError as err:  # a capture-unsafe op: report instead of aborting the whole run
                graphed_net = graphed = {"median_ms": None, "error": str(err).splitlines()[0]}
        row = {"config": config, "mode": mode, "gaussians": 2 * cfg.gaussians_per_frame, "size": [h, w],
               "render_ms": render_only["median_ms"], "render_realistic_ms": realistic["ms"],
               "eager_network_ms": eager_net["median_ms"],
               "eager_frame_ms": eager["median_ms"], "graph_network_ms": graphed_net["median_ms"],
               "graph_frame_ms": graphed["median_ms"], "graph_error": graphed.get("error")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- network speed study (``--e2e``) --------------------------------------------------------------------------------

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


def attention_shapes(cfg) -> dict[str, tuple[int, int, int, int, int]]:
    """``(batch, heads, query tokens, key tokens, head width)`` of each distinct attention of one frame."""
    from nut_ros.core.layers import num_heads

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


def parse_variant(spec: str) -> dict:
    base, *options = spec.split("+")
    if base not in ("autocast", "bf16"):
        raise ValueError(f"variant {spec!r}: base must be autocast or bf16")
    unknown = set(options) - {"compile", "compile-max", "eager-upsampler", "split-upsampler", *SDPA_BACKENDS}
    if unknown or sum(o in SDPA_BACKENDS for o in options) > 1 or {"compile", "compile-max"} <= set(options):
        raise ValueError(f"variant {spec!r}: bad options {options}")
    compile_mode = "default" if "compile" in options else "max-autotune-no-cudagraphs" if "compile-max" in options else None
    backend = next((o for o in options if o in SDPA_BACKENDS), None)
    upsampler = [o for o in options if o.endswith("-upsampler")]
    if upsampler and (not compile_mode or len(upsampler) > 1):
        raise ValueError(f"variant {spec!r}: one of eager-upsampler / split-upsampler, with compile or compile-max")
    return {"name": spec, "base": base, "compile": compile_mode, "sdpa": backend,
            "upsampler": upsampler[0].split("-")[0] if upsampler else None}


def bf16_model(model):
    """A bf16 copy of ``model`` whose Gaussian grid maps stay float32 (bf16 cannot place pixel centres)."""
    from nut_ros.core.encoder import GaussianHead

    copy_ = copy.deepcopy(model).to(torch.bfloat16)
    for head in copy_.modules():
        if isinstance(head, GaussianHead):
            head.x_map, head.z_map = head.x_map.float(), head.z_map.float()
    return copy_


def max_errors(ours, reference) -> dict[str, float]:
    """Largest absolute difference per Gaussian field (float32)."""
    from dataclasses import fields

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
    from nut_ros.render import rasterize

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
                net_t, frame_t = _graphed(net, rgb, disp, prev, context, h, w, iters, encode, decode)
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
             f"| random-init model output (t = 1) | {fmt(r['model_output']['ms'])} | {fmt(r['model_output'].get('pairs'))} |",
             f"| realistic (pixel_aligned_scene) | {fmt(r['realistic']['ms'])} | {fmt(r['realistic'].get('pairs'))} |", ""]
    if study.get("sdpa"):
        lines += ["| attention | B,H,Lq,Lk,D | GFLOP | " + " | ".join(f"{b} ms (TFLOP/s)" for b in ("default", *SDPA_BACKENDS))
                  + " |", "|---|---|---|" + "---|" * (1 + len(SDPA_BACKENDS))]
        for a in study["sdpa"]:
            cells = [f"{fmt(a[f'{b}_ms'])} ({a[f'{b}_tflops']:.0f})" if a.get(f"{b}_ms") else "n/a"
                     for b in ("default", *SDPA_BACKENDS)]
            lines.append(f"| {a['attention']} | {','.join(map(str, a['shape']))} | {a['gflop']:.1f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    realistic = r["realistic"]["ms"]
    gflop = study.get("network_gflop") or 0.0
    lines += [f"Network: {gflop:,.0f} GFLOP per frame (encode + decode).", "",
              "| variant | first call s (compile) | net ms, no graph | graph net ms | graph net TFLOP/s | graph frame ms "
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
    for p in study.get("profiles", []):
        lines += ["", f"Profile of one eager `{p['variant']}` network call: {p['kernel_ms_per_call']:.2f} ms of "
                  "kernels (graph replay removes the launch gaps, not this).", "",
                  "| component | ms |", "|---|---|"]
        lines += [f"| {k} | {t:.2f} |" for k, t in p["components_ms"].items()]
        lines += ["", "| kernel group | ms | share |", "|---|---|---|"]
        lines += [f"| {k} | {t:.2f} | {t / p['kernel_ms_per_call']:.0%} |" for k, t in p["groups_ms"].items()]
        lines += ["", "| top kernel | group | calls | ms | share |", "|---|---|---|---|---|"]
        lines += [f"| `{k['name'][:90]}` | {k['group']} | {k['calls']:.0f} | {k['ms']:.3f} | {k['share']:.1%} |"
                  for k in p["top_kernels"]]
    return "\n".join(lines)


def _raise_timeout(signum, frame):
    raise TimeoutError("deadline reached")


def network_study(config: str, variants, profiles=(), sdpa: bool = True, device: str = "cuda", iters: int = 30,
                  overrides: dict | None = None, out: str | None = None, deadline_s: float | None = None) -> dict:
    """Render times (model output vs realistic scene), SDPA backends, profiles and the speed variants of one config.

    The JSON is rewritten to ``out`` after every step. With ``deadline_s`` (seconds from the call), variants that
    would start later are skipped and a running one (a long compile) is interrupted at the deadline, so the tables
    are always printed."""
    t_start = time.perf_counter()
    from nut_ros.core.model import build_model

    torch.manual_seed(0)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()}
    model = build_model(config, **overrides).to(device).eval()
    cfg = model.config
    h, w = cfg.image_size
    inputs = (torch.rand(1, 3, h, w, device=device), torch.rand(1, cfg.depth_channels, h, w, device=device))
    study = {"config": config, "overrides": overrides, "size": [h, w], "gaussians": 2 * cfg.gaussians_per_frame,
             "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
             "date": time.strftime("%Y-%m-%d"), "variants": [], "profiles": []}

    def save():
        if out:
            with open(out, "w") as f:
                json.dump(study, f, indent=1)

    reference = reference_outputs(model, inputs)
    study["network_gflop"] = network_gflop(model, inputs)
    study["render"] = {"model_output": bench_render(reference.at(1.0), h, w, device, iters),
                       "realistic": bench_render(realistic_scene(h, w, 2 * cfg.gaussians_per_frame, device), h, w,
                                                 device, iters)}
    print(json.dumps({"render": study["render"]}), flush=True)
    if sdpa:
        study["sdpa"] = bench_sdpa(cfg, device)
    save()
    for spec in profiles:
        study["profiles"].append(profile_network(model, spec, inputs, device))
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
    p.add_argument("--out", default="bench_gpu.json")
    p.add_argument("--skip-gsplat", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    p.add_argument("--configs", nargs="*", default=["small", "streamsplat"])
    p.add_argument("--e2e", metavar="CONFIG", help="run the network speed study of CONFIG instead of the default run")
    p.add_argument("--variants", nargs="*", default=["autocast", "bf16"], help="study variants (see below)")
    p.add_argument("--profile", nargs="*", default=None, metavar="VARIANT",
                   help="profile eager calls of these variants (flag alone: autocast)")
    p.add_argument("--no-sdpa", action="store_true", help="skip the SDPA backend comparison")
    p.add_argument("--device", default="cuda", help="cpu: check every study code path without a GPU")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--config-overrides", type=json.loads, default=None, help="JSON of ModelConfig field overrides")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="study time budget: later variants are skipped, a running one interrupted")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if args.e2e:
        profiles = ["autocast"] if args.profile == [] else args.profile or []
        for spec in args.variants + profiles:
            parse_variant(spec)  # fail before any work on a typo
        torch._dynamo.config.cache_size_limit = 64
        network_study(args.e2e, args.variants, profiles, not args.no_sdpa, args.device,
                      args.iters, args.config_overrides, args.out, args.deadline_s)
        return
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "rasterizer": bench_rasterizers(args.sizes, not args.skip_gsplat)}
    result["end_to_end"] = []
    for config in args.configs:
        result["end_to_end"] += bench_end_to_end(config)
        torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
