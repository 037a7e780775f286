"""End-point error of the learned motion head against classical optical flow and zero motion.

Generated validation pairs (exact flow of every pixel's surface point; seeds disjoint from training and from the
trainer's validation) and held-out real pairs (TUM fr1_rpy's last 20 %, rigid flow from depth and motion-capture
poses, packed by ``nut_ros_train pack-rgbd``). EPE in model pixels on the Gaussian grid; the ratio to zero motion's
EPE is the acceptance figure of the motion issue (zero motion = 100 %). Also times one pair per method.

    python test/bench/motion_eval.py --model tiny --weights nut_ros/weights/tiny.safetensors \
        --rgbd .data/rgbd_288x512.npz --device cpu --out motion_tiny.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.core.motion_prior import DIS_PRESETS, FlowPrior, grey_u8, sparse_to_dense_available
from nut_ros.train.rgbd_pairs import RGBDPairs, epe, generated_pairs
from nut_ros.train.scenes import SceneConfig, SceneGenerator
from nut_ros.train.texture_pack import PACK_DIR, load_texture_bank

SEED = 7_000_003  # generated evaluation pairs: far from the training stream (seed 0) and its validation seeds


def _learned(model, rgb0: torch.Tensor, rgb1: torch.Tensor, amp: bool, iters: int | None = None) -> torch.Tensor:
    h, w = rgb0.shape[-2:]
    zeros = rgb0.new_zeros(rgb0.shape[0], model.config.depth_channels, h, w)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    with ctx:
        f0, f1 = model.encode(rgb0, zeros).motion, model.encode(rgb1, zeros).motion
        return model.motion_head.flows(torch.cat([f0, f1]), torch.cat([f1, f0]), iters)[-1].float()


def _classical(prior: FlowPrior, rgb0: torch.Tensor, rgb1: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Forward flows then backward flows ``[2B, 2, gh, gw]`` in model pixels, as the motion prior reads them."""
    out = []
    for a, b in ((rgb0, rgb1), (rgb1, rgb0)):
        for x, y in zip(a, b):
            f = torch.from_numpy(prior.flow(grey_u8(x), grey_u8(y))).permute(2, 0, 1)[None]
            f = torch.nn.functional.interpolate(f, size=grid, mode="bilinear", align_corners=False) \
                if f.shape[-1] < grid[1] else torch.nn.functional.adaptive_avg_pool2d(f, grid)
            out.append(f)
    return torch.cat(out).to(rgb0.device)


def evaluate(model, batches, methods, grid, amp, moving=None) -> dict[str, dict[str, float]]:
    sums: dict[str, list] = {}
    for k, batch in enumerate(batches):
        rgb0, rgb1 = batch.rgb[:, 0], batch.rgb[:, 1]
        true = torch.cat([batch.flow[:, 0], batch.flow[:, 1]])
        valid = torch.cat([batch.flow_valid[:, 0], batch.flow_valid[:, 1]])
        masks = {"all": valid}
        if moving is not None:
            masks["moving"] = valid * moving[k]
        preds = {"zero": torch.zeros_like(true)}
        times = {}
        for name, fn in methods.items():
            start = time.perf_counter()
            preds[name] = fn(rgb0, rgb1)
            if true.is_cuda:
                torch.cuda.synchronize()
            times[name] = (time.perf_counter() - start) * 1e3 / rgb0.shape[0]
        for name, pred in preds.items():
            for region, mask in masks.items():
                sums.setdefault((name, region), []).append(epe(pred, true, mask))
            if name in times:
                sums.setdefault((name, "ms_per_pair"), []).append(torch.tensor([times[name]]))
    table: dict[str, dict[str, float]] = {}
    for (name, region), values in sums.items():
        table.setdefault(name, {})[region] = float(torch.cat([v.float().cpu() for v in values]).nanmean())
    for name, row in table.items():
        for region in ("all", "moving"):
            if region in row:
                row[f"{region}_vs_zero"] = row[region] / table["zero"][region]
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--rgbd", default=None, help="packed RGB-D (its validation split is used)")
    ap.add_argument("--pairs", type=int, default=64, help="generated pairs")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, nargs="+", default=None,
                    help="refinement steps of the learned head to score (default: the model's motion_iters); "
                         "several give one row each, learned_<n>")
    ap.add_argument("--seed", type=int, default=SEED,
                    help="first seed of the generated pairs (the default is the acceptance set; choose settings "
                         "on another, e.g. 1000)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    model = load_checkpoint(args.weights).to(device).eval()
    if model.motion_head is None:
        raise SystemExit(f"{args.weights} has no learned motion head")
    cfg = model.config
    amp = device.type == "cuda"
    grid = cfg.gaussian_grid
    if args.iters is None:
        methods = {"learned": lambda a, b: _learned(model, a, b, amp)}
    else:
        methods = {f"learned_{n}": (lambda n: lambda a, b: _learned(model, a, b, amp, n))(n) for n in args.iters}
    presets = ["fast", "medium"] + (["sparse_to_dense"] if sparse_to_dense_available() else [])
    for preset in presets:
        prior = FlowPrior(cfg.image_size, grid, preset, max_width=cfg.image_size[1])
        methods[preset if preset in DIS_PRESETS else "s2d"] = (lambda p: lambda a, b: _classical(p, a, b, grid))(prior)
    h, w = cfg.image_size
    scenes = SceneGenerator(SceneConfig(h, w, frames=2), load_texture_bank(PACK_DIR, device), seed=args.seed)
    clips = [scenes.sample(args.batch, seed=args.seed + i) for i in range(max(1, args.pairs // args.batch))]
    gen = [generated_pairs(c, grid) for c in clips]
    moving = [torch.nn.functional.adaptive_max_pool2d(torch.cat([c.moving[:, 0], c.moving[:, -1]]), grid)
              for c in clips]
    report = {"model": args.model, "weights": args.weights, "device": str(device), "seed": args.seed,
              "pairs": len(gen) * args.batch,
              "generated": evaluate(model, gen, methods, grid, amp, moving)}
    if args.rgbd:
        real = RGBDPairs(args.rgbd, cfg.image_size, grid, device, split="val")
        n = len(real)
        batches = [real.batch(0, torch.arange(i, min(i + args.batch, n))) for i in range(0, n, args.batch)]
        report["tum_val"] = evaluate(model, batches, methods, grid, amp)
        report["tum_val_pairs"] = n
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
