"""Stage-3 validation of trained weights, with depth from motion's fill in: the trainer's own figures
(:func:`nut_ros.train.validation.evaluate_pairs`) on its generated validation scenes and on the held-out TUM pairs of
a ``pack-rgbd`` file with depth from motion run over them, for comparing weights on the same data (e.g. the shipped
file against a run's export). Prints one JSON object per weights file.

    python test/bench/fill_val.py --rgbd .device_carry/rgbd.npz --device cpu \
        nut_ros/weights/tiny.safetensors runs/tiny/fill/weights.safetensors
"""
from __future__ import annotations

import argparse
import json

import torch

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.train.rgbd_pairs import RGBDPairs, generated_pairs
from nut_ros.train.scenes import SceneConfig, SceneGenerator
from nut_ros.train.texture_pack import load_texture_bank
from nut_ros.train.trainer import VAL_SEED
from nut_ros.train.validation import evaluate_pairs, real_pair_sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="+")
    p.add_argument("--rgbd", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--clips", type=int, default=2, help="generated validation batches (the trainer's val_clips)")
    args = p.parse_args()
    device = torch.device(args.device)
    real_val, grid_of = None, None
    for path in args.weights:
        model = load_checkpoint(path).to(device)
        h, w = model.config.image_size
        grid = model.config.gaussian_grid
        if grid_of != (h, w, grid):  # data at this model's size (the same frames and scenes for every weights file)
            scenes = SceneGenerator(SceneConfig(h, w, frames=2), load_texture_bank(device=device), seed=0)
            gen = [generated_pairs(scenes.sample(args.batch, seed=VAL_SEED + i), grid) for i in range(args.clips)]
            real_val = RGBDPairs(args.rgbd, (h, w), grid, device, "val", fills=True)
            grid_of = (h, w, grid)
        sets = {"gen": gen, **real_pair_sets(real_val, args.batch)}
        metrics = evaluate_pairs(model, sets, amp=device.type == "cuda")
        print(json.dumps({"weights": path, "fill_validity": model.config.fill_validity,
                          **{k: round(v, 4) for k, v in metrics.items() if "flow" not in k or "fill" in k}}))


if __name__ == "__main__":
    main()
