"""GPU benchmarks, one process: our CUDA rasterizer vs gsplat (ortho) vs the PyTorch rasterizer, and end-to-end
per-frame latency of model configurations in the PyTorch CUDA backend (fp32 / bf16 / fp16, eager / CUDA graph).

Rasterizer scenes are pixel-aligned grids at 512x288 (one Gaussian per 2x2 pixels per layer, jittered, layers at
different depths), 36,864 to 294,912 Gaussians, identity rotations and opacity <= 0.99 so that gsplat's conventions
can be aligned exactly (see :func:`gsplat_render` for every difference). Times are CUDA-event medians.

    python -m nut_ros.tools.bench_gpu --out bench_gpu.json [--skip-gsplat] [--configs small streamsplat]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from nut_ros.core.gaussians import RasterInputs

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


def _graphed(model, rgb, disp, prev, autocast, h, w, iters):
    """(network, frame) timings with encode + decode replayed from one CUDA graph."""
    from nut_ros.core.model import FrameCache
    from nut_ros.render import rasterize

    static_prev = FrameCache(*(t.clone() for t in prev))
    static_cur = FrameCache(*(t.clone() for t in prev))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), autocast():
        for _ in range(3):
            model.decode(static_prev, model.encode(rgb, disp))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for p, c in zip(static_prev, static_cur):
            p.copy_(c)
        with autocast():
            new = model.encode(rgb, disp)
        for c, x in zip(static_cur, new):
            c.copy_(x)
        with autocast():
            out = model.decode(static_prev, static_cur)

    def frame():
        graph.replay()
        return rasterize(out.map(lambda x: x.float()).at(1.0), h, w, impl="cuda")

    return cuda_time(graph.replay, iters=iters), cuda_time(frame, iters=iters)


def bench_end_to_end(config: str, modes=("fp32", "bf16", "fp16"), iters: int = 30) -> list[dict]:
    """Per-frame latency: encode the new frame + decode the pair + render at t = 1 (CUDA rasterizer)."""
    from nut_ros.core.model import build_model
    from nut_ros.render import rasterize

    torch.manual_seed(0)
    model = build_model(config).cuda().eval()
    cfg = model.config
    h, w = cfg.image_size
    rgb = torch.rand(1, 3, h, w, device="cuda")
    disp = torch.rand(1, cfg.depth_channels, h, w, device="cuda")
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
                return rasterize(g.at(1.0), h, w, impl="cuda")

            gaussians = network().map(lambda x: x.float())
            render_only = cuda_time(lambda: rasterize(gaussians.at(1.0), h, w, impl="cuda"), iters=iters)
            eager_net = cuda_time(network, iters=iters)
            eager = cuda_time(frame, iters=iters)

            # CUDA graph of the network (encode + decode with static buffers); rendering stays outside because the
            # rasterizer reads its pair count back to the host.
            try:
                graphed_net, graphed = _graphed(model, rgb, disp, prev, autocast, h, w, iters)
            except RuntimeError as err:  # a capture-unsafe op: report instead of aborting the whole run
                graphed_net = graphed = {"median_ms": None, "error": str(err).splitlines()[0]}
        row = {"config": config, "mode": mode, "gaussians": 2 * cfg.gaussians_per_frame, "size": [h, w],
               "render_ms": render_only["median_ms"], "eager_network_ms": eager_net["median_ms"],
               "eager_frame_ms": eager["median_ms"], "graph_network_ms": graphed_net["median_ms"],
               "graph_frame_ms": graphed["median_ms"], "graph_error": graphed.get("error")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_gpu.json")
    p.add_argument("--skip-gsplat", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    p.add_argument("--configs", nargs="*", default=["small", "streamsplat"])
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
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
