"""Pictures of in-between frames on a fast clip: the held-out frames beside blending, the flow warp and the model.

The clip run's frames go through the streaming pipeline as in the evaluation suite (every ``stride``-th frame is a
key frame; the frames between are held out and rendered at their pair time). The picture shows the key-frame pair
whose held-out frames the blend baseline reproduces worst (the fastest motion of the clip; chosen by the baseline,
not by the model): the two key frames, then for each held-out frame the truth, the blend, the DIS flow warp of the
true key frames and the model's render, each with its PSNR against the truth at the model resolution.

    .venv/bin/python test/bench/interp_pictures.py --shared ../shared --run juggle --model tiny \
        --motion-prior learned --out docs/images/interp_juggle_tiny.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_direct import CLIP_RUNS, clip_frames  # noqa: E402

from nut_ros.pipeline.backends import make_backend  # noqa: E402
from nut_ros.pipeline.baselines import FlowWarp, blend  # noqa: E402
from nut_ros.pipeline.metrics import psnr  # noqa: E402
from nut_ros.pipeline.stream import StreamingPipeline  # noqa: E402
from nut_ros.pipeline.types import PipelineConfig  # noqa: E402


def _model_size(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(a.astype(np.float32), b.astype(np.float32), data_range=255.0)


def _tile(rgb: np.ndarray, label: str) -> np.ndarray:
    tile = np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8))
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 16), (0, 0, 0), -1)
    cv2.putText(tile, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def pairs_with_views(run, shared: Path, pipeline: StreamingPipeline):
    """Each key-frame pair: ``(key0, key1, [(t, truth, model render)])`` at the model resolution."""
    size = pipeline.backend.model_config.image_size
    key0, held = None, []
    for k, (frame, _) in enumerate(clip_frames(run, shared)):
        if k % run.stride:
            held.append(frame)
            continue
        result = pipeline.push(frame)
        if result is not None and key0 is not None and result.paired:
            times = [pipeline.pair_time(f.stamp_ns) for f in held]
            views = pipeline.render(times) if times else []
            yield (key0, _model_size(frame.rgb, size),
                   [(t, _model_size(f.rgb, size), v.rgb) for t, f, v in zip(times, held, views)])
        key0, held = _model_size(frame.rgb, size), []


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--run", default="juggle", choices=sorted(CLIP_RUNS))
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--motion-prior", default="auto", choices=("auto", "learned", "flow", "none"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    run = CLIP_RUNS[args.run]
    pipeline = StreamingPipeline(make_backend("torch", args.model, None, args.device),
                                 PipelineConfig(motion_prior=args.motion_prior, render_times=(1.0,)))
    worst, worst_score = None, np.inf
    with torch.no_grad():
        for key0, key1, views in pairs_with_views(run, Path(args.shared), pipeline):
            score = np.mean([_psnr(blend(key0, key1, t), truth) for t, truth, _ in views])
            if views and score < worst_score:
                worst, worst_score = (key0, key1, views), score
    key0, key1, views = worst
    warp = FlowWarp(key0, key1)
    rows = [np.hstack([_tile(key0, "key frame t=0"), _tile(key1, "key frame t=1")])]
    for t, truth, ours in views:
        cells = [("truth", truth), ("blend", blend(key0, key1, t)), ("flow warp (DIS)", warp.at(t)),
                 (f"{args.model}, {pipeline.motion_prior} motion", ours)]
        tiles = [_tile(img, f"t={t:.2f} {name}" + ("" if name == "truth" else f" {_psnr(img, truth):.1f} dB"))
                 for name, img in cells]
        rows.append(np.hstack(tiles[:2]))
        rows.append(np.hstack(tiles[2:]))
    picture = np.vstack(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: pair with the worst blend ({worst_score:.2f} dB mean), "
          f"motion prior {pipeline.motion_prior}, {len(views)} held-out frames")


if __name__ == "__main__":
    main()
