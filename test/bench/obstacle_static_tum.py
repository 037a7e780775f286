"""False obstacles on real training footage: TUM fr1_rpy's training part (the first 80 %) is a static desk filmed by
a handheld Kinect, with depth registered to the colour camera and motion-capture poses. Every reported obstacle is a
false alarm, so the fraction of frames with none is the static-scene figure on real data (the generated static
scenes are the other half of that goal). Training data: thresholds may be tuned here; ``--validation`` scores the
last 20 % instead (report it, do not tune on it). ``--clip tartanair`` scores the TartanAir trajectory of the same
folder instead (synthetic, photo-realistic, static, complete depth; its frame rate is not given: ``--fps``).

The pipeline's results are cached under /tmp/nut_ros_obstacle_cache (keyed by model, weights, flow settings and
frame indices) with each frame's colour and depth stamps and motion-capture poses, so the perception stage can be
replayed cheaply (``tum_results``).

    .venv/bin/python test/bench/obstacle_static_tum.py --frames 100 --step 2 [--set FIELD=VALUE ...]
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import CACHE, add_flow_args  # noqa: E402
from obstacle_tune import param_overrides  # noqa: E402

from nut_ros.core.geometry import Intrinsics  # noqa: E402
from nut_ros.core.rotations import quaternion_pose  # noqa: E402
from nut_ros.perception import PerceptionProcessor  # noqa: E402
from nut_ros.pipeline import sequences  # noqa: E402
from nut_ros.pipeline.backends import default_checkpoint, make_backend  # noqa: E402
from nut_ros.pipeline.stream import StreamingPipeline  # noqa: E402
from nut_ros.pipeline.types import Frame, PipelineConfig  # noqa: E402
from nut_ros.train.rgbd_pairs import NED_FROM_OPTICAL  # noqa: E402

TRAIN_RGBD = Path(__file__).resolve().parents[3] / "shared" / "data" / "train_rgbd"
TUM = TRAIN_RGBD / "tum_fr1_rpy"
TARTANAIR = TRAIN_RGBD / "tartanair_traj"


def tum_indices(folder: Path, frames: int, step: int, validation: bool = False) -> list[int]:
    """Frame indices of the training part (first 80 %) or the validation part (the rest), every ``step``-th."""
    count = sequences.tum_frame_count(folder)
    train = int(0.8 * count)
    return list(range(train, count, step) if validation else range(0, train, step))[:frames]


def _pipeline(model: str, flow: dict) -> tuple[StreamingPipeline, str]:
    """The CPU pipeline of ``model``'s shipped weights without renders (``flow``: PipelineConfig's flow_preset and
    flow_check), and a short hash of those weights for the cache keys."""
    pipe = StreamingPipeline(make_backend("torch", model, None, "cpu"), PipelineConfig(render_times=(), **flow))
    return pipe, hashlib.sha256(default_checkpoint(model).read_bytes()).hexdigest()[:8]


def tum_results(folder: Path, indices: list[int], flow: dict, model: str = "tiny",
                source: str = "topic") -> list[tuple]:
    """``[(StepResult without views, T_world<-camera at the colour stamp, colour stamp s, depth stamp s)]`` of the
    given TUM frames through the pipeline, cached on disk. ``source``: the depth input, the registered Kinect depth
    (``topic``) or depth from motion with the motion-capture poses as odometry (``odometry``: RGB + odometry).
    ``flow``: PipelineConfig's flow_preset and flow_check."""
    pipe, weights = _pipeline(model, flow)
    signature = (weights, pipe.motion_prior, pipe.flow_settings, indices) + ((source,) if source != "topic" else ())
    key = hashlib.sha256(repr(signature).encode()).hexdigest()
    path = CACHE / f"tum_{model}_{key[:16]}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    rows = sequences.tum_rows(folder)
    out = []
    for i, sf in zip(indices, sequences.tum(folder, indices)):
        f = sf.frame
        depth = cv2.resize(sf.depth_m.astype(np.float32), (f.rgb.shape[1], f.rgb.shape[0]),
                           interpolation=cv2.INTER_NEAREST)
        result = pipe.push(Frame(f.rgb, f.stamp_ns, depth_m=depth, intrinsics=f.intrinsics) if source == "topic"
                           else Frame(f.rgb, f.stamp_ns, intrinsics=f.intrinsics, camera_pose=f.camera_pose))
        if result is not None:
            out.append((replace(result, views=[]), f.camera_pose, float(rows[i][1]), float(rows[i][2])))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def tartanair_results(folder: Path, fps: float, flow: dict, model: str = "tiny", source: str = "topic") -> list[tuple]:
    """``[(StepResult without views, T_world<-camera optical, stamp s, stamp s)]`` of the TartanAir trajectory
    (fx = fy = 320, cx = 320, cy = 240 at 640x480; depth in mm at 320x240, 65.535 m = sky), cached on disk;
    ``source`` and ``flow`` as for :func:`tum_results`."""
    pipe, weights = _pipeline(model, flow)
    signature = (weights, pipe.motion_prior, pipe.flow_settings, "tartanair", fps)
    key = hashlib.sha256(repr(signature + ((source,) if source != "topic" else ())).encode()).hexdigest()
    path = CACHE / f"tartanair_{model}_{key[:16]}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    poses = np.loadtxt(folder / "pose_left.txt")
    out = []
    for i, row in enumerate(poses):
        rgb = sequences.read_rgb(folder / "rgb" / f"{i:06d}.jpg")
        depth = cv2.resize(sequences.depth_mm(folder / "depth" / f"{i:06d}.png"), (rgb.shape[1], rgb.shape[0]),
                           interpolation=cv2.INTER_NEAREST)
        pose = quaternion_pose(row[:3], row[3:])
        pose[:3, :3] = pose[:3, :3] @ NED_FROM_OPTICAL
        stamp = i / fps
        k = Intrinsics(320.0, 320.0, 320.0, 240.0, rgb.shape[1], rgb.shape[0])
        result = pipe.push(Frame(rgb, round(stamp * 1e9), depth_m=depth, intrinsics=k) if source == "topic"
                           else Frame(rgb, round(stamp * 1e9), intrinsics=k, camera_pose=pose))
        if result is not None:
            out.append((replace(result, views=[]), pose, stamp, stamp))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def static_score(results, params, odometry: bool = True) -> tuple[int, list[int]]:
    """Frames with no obstacle, and the moving Gaussians per frame, of the processor over ``results``."""
    proc = PerceptionProcessor(params, seed=0)
    empty, moving = 0, []
    for result, pose, *_ in results:
        out = proc.update(result, pose if odometry else None)
        empty += len(out.obstacles) == 0
        moving.append(out.moving_gaussians)
    return empty, moving


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="tum", choices=("tum", "tartanair"))
    ap.add_argument("--fps", type=float, default=10.0, help="TartanAir frame rate (not given by the data; assumed)")
    ap.add_argument("--tum", type=Path, default=TUM)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--step", type=int, default=2, help="every n-th frame (30 Hz / n)")
    ap.add_argument("--validation", action="store_true", help="score the validation part (last 20 %%) instead")
    ap.add_argument("--modes", default="odometry,no-odometry")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ObstacleParams overrides")
    ap.add_argument("--depth", default="topic", choices=("topic", "odometry"),
                    help="depth input: the depth images, or depth from motion with the poses as odometry (RGB only)")
    add_flow_args(ap)
    args = ap.parse_args(argv)
    flow = {"flow_preset": args.flow_preset, "flow_check": args.flow_check}
    if args.clip == "tartanair":
        results = tartanair_results(TARTANAIR, args.fps, flow, args.model, args.depth)
        name = f"TartanAir ({args.fps:g} fps)"
    else:
        indices = tum_indices(args.tum, args.frames, args.step, args.validation)
        results = tum_results(args.tum, indices, flow, args.model, args.depth)
        name = f"TUM fr1_rpy {'validation' if args.validation else 'train'}"
    name += ", depth from motion + odometry" if args.depth == "odometry" else ""
    params = param_overrides(args.set)
    for mode in args.modes.split(","):
        empty, moving = static_score(results, params, mode == "odometry")
        print(f"{name} (static), {mode}: frames with no obstacle {empty}/{len(results)} = "
              f"{empty / len(results):.3f}; moving Gaussians per frame p50 {np.median(moving):.0f}", flush=True)


if __name__ == "__main__":
    main()
