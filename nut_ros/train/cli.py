"""``nut_ros_train``: training on generated scenes and real RGB-D, weight export, data packs and scene previews.

Examples (each chunk stops after ``--chunk-minutes`` and the same command resumes it)::

    nut_ros_train stage1 --model tiny --out runs/tiny/s1 --minutes 3 --batch 16 --lr 1e-3 --warmup 50
    nut_ros_train stage2 --model tiny --out runs/tiny/s2 --init runs/tiny/s1 --minutes 3 --batch 8 --lr 1e-3 --warmup 50
    nut_ros_train pack-rgbd ../shared/data/train_rgbd rgbd_288x512.npz
    nut_ros_train stage3 --model tiny --out runs/tiny/s3 --init nut_ros/weights/tiny.safetensors \
        --rgbd rgbd_288x512.npz --minutes 8
    nut_ros_train export runs/tiny/s2 nut_ros/weights/tiny.safetensors
    nut_ros_train preview --model tiny --out scenes.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nut_ros.core.checkpoint import save_checkpoint
from nut_ros.core.choices import positive
from nut_ros.core.config import FILL_VALIDITY, get_config
from nut_ros.train.depth_input import DEPTH_MODES
from nut_ros.train.objectives import LossWeights
from nut_ros.train.rgbd_pairs import JPEG_QUALITY, pack
from nut_ros.train.trainer import TrainConfig, Trainer, load_run


def _stage_parser(sub, name: str, stage: int) -> None:
    what = {1: "static encoder", 2: "dynamic decoder", 3: "geometry and learned motion"}[stage]
    p = sub.add_parser(name, help=f"train stage {stage} ({what})")
    d = TrainConfig(stage=stage, out="", steps=1)
    p.add_argument("--out", required=True, help="run folder (resumed when it holds last.pt)")
    p.add_argument("--model", default=d.model, help="model config: tiny | small")
    p.add_argument("--init", required=stage > 1, default=None,
                   help={1: "fine-tune from these weights (run folder, last.pt or .safetensors) instead of a fresh "
                            "model", 2: "stage-1 run folder, last.pt or .safetensors weights",
                         3: "trained pair model (run folder, last.pt or .safetensors); a missing motion head starts "
                            "fresh"}[stage])
    if stage == 1:
        p.add_argument("--grow", action="store_true",
                       help="--init is a model with a coarser Gaussian grid (fewer upsampler stages): "
                            "copy what fits")
    if stage == 2:
        p.add_argument("--frames", type=int, default=d.frames, help="clip length; key frames are first and last")
        p.add_argument("--sample-motion", action="store_true", help="sample velocities (truncated normal)")
        p.add_argument("--init-decoder", action="store_true",
                       help="fine-tune the decoder side from --init as well (default: decoder from scratch)")
    if stage == 3:
        p.add_argument("--rgbd", default=None, help="packed real RGB-D pairs (pack-rgbd); default: generated only")
        p.add_argument("--real-fraction", type=float, default=d.real_fraction, help="share of real pairs per batch")
        alone = p.add_mutually_exclusive_group()
        alone.add_argument("--motion-only", action="store_true",
                           help="train the learned motion head alone; the pair model of --init stays as it is")
        alone.add_argument("--geometry-only", action="store_true",
                           help="train the static encoder alone; the motion head of --init stays as it is")
        p.add_argument("--depth-modes", type=json_object, default=None,
                       help='JSON depth-input modes -> probabilities, e.g. {"none": 0.3, "fill": 0.4, "sensor": 0.3} '
                            "(modes: none, semi_dense, sensor, fill; default: "
                            + json.dumps(DEPTH_MODES).replace("%", "%%") + ")")
        p.add_argument("--fill-validity", choices=FILL_VALIDITY, default=None,
                       help="the trained model's validity channel beside a dense depth-from-motion fill "
                            "(ModelConfig.fill_validity; default: that of the --init model)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=positive(int), default=0, help="run length in optimiser steps")
    length.add_argument("--minutes", type=positive(float), default=0.0, help="run length in minutes of training time")
    for key in ("chunk_minutes", "batch", "lr", "weight_decay", "warmup", "depth_drop", "val_every", "val_clips",
                "seed", "raster_impl"):
        p.add_argument("--" + key.replace("_", "-"), type=type(getattr(d, key)), default=getattr(d, key))
    p.add_argument("--device", default=d.device)
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast")
    p.add_argument("--loss-weights", type=json_object, default={}, help='JSON overrides, e.g. {"mask": 3.0}')


def json_object(text: str) -> dict:
    """An argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {text!r}")
    return value


def _train(args, stage: int) -> int:
    extra = {1: lambda: {"grow": args.grow},
             2: lambda: {"frames": args.frames, "sample_motion": args.sample_motion, "init_decoder": args.init_decoder},
             3: lambda: {"rgbd": args.rgbd, "real_fraction": args.real_fraction, "motion_only": args.motion_only,
                        "geometry_only": args.geometry_only,
                        "depth_modes": args.depth_modes,
                        "model_overrides": {"fill_validity": args.fill_validity} if args.fill_validity else {}},
             }[stage]()
    keys = ("model", "init", "steps", "minutes", "chunk_minutes", "batch", "lr", "weight_decay", "warmup",
            "depth_drop", "val_every", "val_clips", "seed", "raster_impl", "device")
    try:  # the options' faults, before anything is written
        cfg = TrainConfig(stage=stage, out=args.out, amp=not args.no_amp, **{k: getattr(args, k) for k in keys},
                          weights=LossWeights(**args.loss_weights), **extra)
        get_config(cfg.model)
        for option, path in (("--init", cfg.init), ("--rgbd", cfg.rgbd)):
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(f"{option} {path}: no such file or folder")
    except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
        print(f"nut_ros_train {args.command}: error: {err}", file=sys.stderr)
        return 2
    trainer = Trainer(cfg)
    done = trainer.run()
    print(f"stage {stage}: step {trainer.step}, {trainer.train_seconds / 60:.1f} min trained, "
          + ("finished" if done else "paused (run the same command to continue)"))
    return 0


def _export(args) -> int:
    save_checkpoint(load_run(args.run), args.dest, dtype=torch.float16)
    print(f"wrote {args.dest}")
    return 0


def _textures(args) -> int:
    from nut_ros.train.texture_pack import PACK_DIR, build_pack

    paths = build_pack(Path(args.out or PACK_DIR))
    print(f"wrote {len(paths)} textures")
    return 0


def _preview(args) -> int:
    import cv2
    import numpy as np

    from nut_ros.core.config import get_config
    from nut_ros.train.scenes import SceneConfig, SceneGenerator
    from nut_ros.train.texture_pack import load_texture_bank

    h, w = get_config(args.model).image_size
    gen = SceneGenerator(SceneConfig(h, w, frames=args.frames), load_texture_bank(), seed=args.seed)
    clip = gen.sample(args.clips, seed=args.seed)
    rows = []
    for i in range(args.clips):
        disp = 1.0 / clip.depth[i, :, 0]
        disp = (disp - disp.amin()) / (disp.amax() - disp.amin())
        tiles = [clip.rgb[i, j].permute(1, 2, 0) for j in range(args.frames)]
        tiles += [disp[0, ..., None].expand(-1, -1, 3), clip.moving[i, 0, 0, ..., None].expand(-1, -1, 3)]
        rows.append(torch.cat(tiles, dim=1))
    image = (torch.cat(rows, dim=0).numpy() * 255).astype(np.uint8)
    if not cv2.imwrite(args.out, image[..., ::-1]):
        print(f"nut_ros_train preview: error: cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


def _pack(args) -> int:
    counts = pack(args.source, args.out, (args.height, args.width), jpeg_quality=args.jpeg_quality)
    print(f"wrote {args.out}: {counts['train']} training and {counts['val']} validation frames")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nut_ros_train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _stage_parser(sub, "stage1", 1)
    _stage_parser(sub, "stage2", 2)
    _stage_parser(sub, "stage3", 3)
    p = sub.add_parser("export", help="write fp16 safetensors weights of a run")
    p.add_argument("run", help="run folder or last.pt")
    p.add_argument("dest", help="output .safetensors")
    p = sub.add_parser("textures", help="(re)build the texture pack from skimage.data")
    p.add_argument("--out", default=None)
    p = sub.add_parser("preview", help="render generated clips to a PNG")
    p.add_argument("--model", default="tiny")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="scenes.png")
    p = sub.add_parser("pack-rgbd", help="pack real RGB-D sequences with poses for stage 3 (TUM, TartanAir)")
    p.add_argument("source", help="the train_rgbd folder (tum_fr1_rpy/, tartanair_traj/)")
    p.add_argument("out", help="output .npz")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY,
                   help="of the packed colour (82 fits a 64 MiB device call)")
    args = parser.parse_args(argv)
    if args.command in ("stage1", "stage2", "stage3"):
        return _train(args, int(args.command[-1]))
    return {"export": _export, "textures": _textures, "preview": _preview, "pack-rgbd": _pack}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
