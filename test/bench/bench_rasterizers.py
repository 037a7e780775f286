"""GPU: our CUDA rasterizer against gsplat (``camera_model="ortho"``) and the PyTorch rasterizer, on the same scenes.

Scenes are pixel-aligned grids at 512x288 (one Gaussian per 2x2 pixels per layer, jittered, layers at different
depths), 36,864 to 294,912 Gaussians, identity rotations and opacity <= 0.99 so that gsplat's conventions can be
aligned exactly (see :func:`gsplat_render` for every difference). Times are CUDA-event medians; every renderer uses
the reference's low-pass (0.3 px², gsplat's ``eps2d`` default).

    python test/bench/bench_rasterizers.py --out bench_rasterizers.json [--skip-gsplat]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from nut_ros.core.gaussians import RasterInputs
from nut_ros.pipeline.metrics import psnr
from nut_ros.render._torch_impl import rasterize_torch
from nut_ros.render.projection import LOWPASS
from scenes import grid_scene
from timing import cuda_time

WIDTH, HEIGHT = 512, 288
SIZES = (36_864, 73_728, 147_456, 294_912)


def gsplat_render(inputs: RasterInputs, height: int, width: int, background=(0.5, 0.5, 0.5)):
    """The same scene through ``gsplat.rasterization(camera_model="ortho")`` with our conventions aligned.

    Differences and how they are aligned: gsplat samples pixel centres at (j + 0.5, i + 0.5), ours at integers,
    so cx = W/2 and cy = H/2 (ours: (W-1)/2, (H-1)/2); view matrix = our fixed camera (x, -z, y); K = diag(W/2,
    H/2); eps2d = the reference low-pass; RGB+D gives Σ w·z like our depth. Not aligned (kept out of the scene):
    gsplat normalises quaternions (we use identity rotations), clamps alpha at 0.999 instead of 0.99 (opacity <= 0.99
    here), uses __expf, stops at T <= 1e-4 (ours < 1e-4), culls z < near_plane = 0.01 (our depths >= 0.1), and
    sizes tiles with an opacity-aware extent (min(3, sqrt(2 ln(255 o))) sigma) instead of 3 sigma.
    """
    from gsplat import rasterization

    dev = inputs.means.device
    view = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], device=dev)
    k = torch.tensor([[width / 2, 0, width / 2], [0, height / 2, height / 2], [0, 0, 1.0]], device=dev)
    colors, alphas, _ = rasterization(
        inputs.means[0], inputs.rotations[0], inputs.scales[0], inputs.opacities[0, :, 0], inputs.colors[0],
        view[None], k[None], width, height, camera_model="ortho", render_mode="RGB+D", eps2d=LOWPASS,
        near_plane=0.01, tile_size=16, backgrounds=torch.tensor([background], device=dev), packed=False)
    return colors[0, ..., :3].permute(2, 0, 1), colors[0, ..., 3], alphas[0, ..., 0]


def bench_rasterizers(sizes=SIZES, with_gsplat: bool = True, torch_max: int = 300_000) -> list[dict]:
    from nut_ros.render._cuda import rasterize_forward  # raises ImportError without a CUDA device

    bg = torch.tensor([0.5, 0.5, 0.5], device="cuda")
    rows = []
    for n in sizes:
        inputs = grid_scene(n)
        row = {"gaussians": n, "height": HEIGHT, "width": WIDTH}
        ours = rasterize_forward(*inputs, HEIGHT, WIDTH, bg, LOWPASS)
        row["pairs"] = int(ours[3])
        row["ours"] = cuda_time(lambda: rasterize_forward(*inputs, HEIGHT, WIDTH, bg, LOWPASS), iters=50)
        if n <= torch_max:
            with torch.no_grad():
                ref = rasterize_torch(*inputs, HEIGHT, WIDTH, bg, LOWPASS)
                row["torch"] = cuda_time(lambda: rasterize_torch(*inputs, HEIGHT, WIDTH, bg, LOWPASS),
                                         warmup=1, iters=3)
            row["ours_vs_torch_max_abs"] = {k: (a - b).abs().max().item()
                                            for k, a, b in zip(("color", "depth", "alpha"), ours[:3], ref)}
        if with_gsplat:
            gs = gsplat_render(inputs, HEIGHT, WIDTH)
            row["gsplat"] = cuda_time(lambda: gsplat_render(inputs, HEIGHT, WIDTH), iters=50)
            host = lambda x: x.float().cpu().numpy()  # noqa: E731
            row["ours_vs_gsplat"] = {"psnr_color_db": psnr(host(ours[0][0]), host(gs[0])),
                                     "psnr_alpha_db": psnr(host(ours[2][0, 0]), host(gs[2])),
                                     "depth_max_abs": (ours[1][0, 0] - gs[1]).abs().max().item()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_rasterizers.json")
    p.add_argument("--skip-gsplat", action="store_true")
    p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "rasterizer": bench_rasterizers(args.sizes, not args.skip_gsplat)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
