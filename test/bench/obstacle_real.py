"""The perception stage on the shared real clips (MEASURING only: nothing here tunes a threshold).

* ``sevenscenes_redkitchen`` (a static kitchen, handheld Kinect, metric depth, ground-truth poses, 150 frames at
  30 Hz): the fraction of frames with no obstacle, with the poses as odometry and without; the local map's size.
  The room is static, so every reported obstacle is a false alarm.
* ``sam2_gallery`` clips (RGB only, relative units; real moving objects): a picture of the tracks over time, each
  confirmed track's box projected into frames sampled across the clip, with a short id, plus the tracks' count.

    .venv/bin/python test/bench/obstacle_real.py --out /tmp/obstacle_real
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import OBSTACLE_FLOW  # noqa: E402
from obstacle_eval import box_2d  # noqa: E402

from nut_ros.core.geometry import Intrinsics  # noqa: E402
from nut_ros.perception import PerceptionProcessor  # noqa: E402
from nut_ros.pipeline.backends import make_backend  # noqa: E402
from nut_ros.pipeline.stream import StreamingPipeline  # noqa: E402
from nut_ros.pipeline.types import Frame, PipelineConfig  # noqa: E402

SHARED = Path(os.environ.get("NUT_ROS_SHARED", Path(__file__).resolve().parents[3] / "shared"))
KITCHEN = SHARED / "data" / "sevenscenes_redkitchen"
SAM2 = SHARED / "data" / "sam2_gallery"
FRAME_NS_30HZ = 33_333_333


def kitchen_frames(step: int):
    k = np.loadtxt(KITCHEN / "camera-intrinsics.txt")
    for i, path in enumerate(sorted(KITCHEN.glob("frame-*.color.jpg"))[::step]):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        d = cv2.imread(str(path).replace("color.jpg", "depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000
        d[(d == 0) | (d > 65)] = np.nan
        pose = np.loadtxt(str(path).replace("color.jpg", "pose.txt"))
        intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], rgb.shape[1], rgb.shape[0])
        yield Frame(rgb, i * step * FRAME_NS_30HZ, depth_m=d, intrinsics=intr), pose


def static_kitchen(pipe: StreamingPipeline, step: int) -> None:
    results = []
    pipe.reset()
    for frame, pose in kitchen_frames(step):
        res = pipe.push(frame)
        if res is not None:
            results.append((res, pose))
    for odometry in (True, False):
        proc = PerceptionProcessor(seed=0)
        empty, moving, total = 0, [], []
        for res, pose in results:
            out = proc.update(res, pose if odometry else None)
            empty += len(out.obstacles) == 0
            moving.append(out.moving_gaussians)
            total.append(sum(out.latency_ms.values()))
        print(f"redkitchen (static), {'odometry (GT poses)' if odometry else 'no odometry'}: frames with no obstacle "
              f"{empty}/{len(results)} = {empty / len(results):.3f}; moving Gaussians per frame p50 "
              f"{np.median(moving):.0f}; map {proc.map.count} Gaussians ({proc.map.nbytes / 1e6:.1f} MB); "
              f"perception ms p50 {np.median(total):.1f}")


def sam2_tracks(pipe: StreamingPipeline, clip: Path, out_dir: Path, max_frames: int, panels: int = 6) -> None:
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    pipe.reset()
    proc = PerceptionProcessor(seed=0)
    frames, ids = [], set()
    i = 0
    while i < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        res = pipe.push(Frame(rgb, round(i * 1e9 / fps)))
        i += 1
        if res is None:
            continue
        out = proc.update(res)
        k = res.intrinsics.scaled(rgb.shape[1], rgb.shape[0])
        canvas = bgr.copy()
        for ob in out.obstacles.obstacles:
            ids.add(ob.id)
            box = box_2d(ob.position, ob.size, k)
            if box is None:
                continue
            u0, v0, u1, v1 = box.astype(int)
            colour = tuple(int(c) for c in np.random.default_rng(ob.id.int % 2**32).integers(64, 256, 3))
            cv2.rectangle(canvas, (u0, v0), (u1, v1), colour, 2)
            cv2.putText(canvas, str(ob.id)[:4], (u0, max(v0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        cv2.putText(canvas, f"frame {i - 1}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        frames.append(canvas)
    picks = [frames[j] for j in np.linspace(0, len(frames) - 1, panels).round().astype(int)]
    h = 240
    row = [cv2.resize(p, (int(p.shape[1] * h / p.shape[0]), h)) for p in picks]
    path = out_dir / f"tracks_{clip.stem}.jpg"
    cv2.imwrite(str(path), np.concatenate([np.concatenate(row[:3], 1), np.concatenate(row[3:6], 1)], 0))
    print(f"{clip.stem} (RGB only): {len(frames)} frames, {len(ids)} confirmed tracks; picture {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--kitchen-step", type=int, default=2, help="use every n-th kitchen frame (30 Hz / n)")
    ap.add_argument("--clips", default="02_cups,05_default_juggle,01_dog")
    ap.add_argument("--max-frames", type=int, default=90, help="first frames of each sam2 clip")
    ap.add_argument("--out", type=Path, default=Path("/tmp/obstacle_real"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared data folder ({SHARED})")
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = StreamingPipeline(make_backend("torch", args.model),
                             PipelineConfig(render_times=(), flow_preset=OBSTACLE_FLOW))
    print(f"# obstacle_real {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, model {args.model}, "
          f"CPU, flow: {pipe.flow_settings}")
    static_kitchen(pipe, args.kitchen_step)
    for name in args.clips.split(","):
        sam2_tracks(pipe, SAM2 / f"{name}.mp4", args.out, args.max_frames)


if __name__ == "__main__":
    main()
