"""``nut_ros_replay``: run the streaming pipeline over a rosbag offline (no DDS) and evaluate it.

Every frame of the image topic is read in bag order (depth and CameraInfo matched by stamp). With ``--stride k``
the pipeline sees every k-th frame; the frames in between are rendered by temporal interpolation and scored against
the true frames (see :mod:`nut_ros.pipeline.evaluation`). Writes into ``--out``:

* ``outputs/``: a rosbag2 with what the ``nut_ros`` node would publish for the processed frames — ``~/depth``
  (32FC1), ``~/image`` (rgb8), ``~/camera_info``, ``~/points`` (PointCloud2 of the Gaussians, coloured),
  ``~/gaussians`` (GaussianSet), ``~/stats`` (PipelineStats) and ``/diagnostics``;
* ``report.json``, ``report.md`` and PNG plots.

The run is deterministic: same bag, weights and options give the same outputs (latencies aside).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nut_ros.pipeline.backends import BACKENDS, make_backend
from nut_ros.pipeline.evaluation import StreamEvaluator
from nut_ros.pipeline.report import write_report
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import PipelineConfig
from nut_ros.ros.bag_io import BagWriter, bag_topics, read_camera_frames
from nut_ros.ros.health import NodeHealth, assess, diagnostics_message, stats_message
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.inputs import frame_from_messages
from nut_ros.ros.outputs import STEP_OUTPUTS, VIEW_OUTPUTS, step_messages, view_messages
from nut_ros.ros.topics import DIAGNOSTICS, NODE_NAME, output_topic

FLAVOR = "rosbags"


class OutputRecorder:
    """Writes what the node publishes for each processed step into a bag, plus stats and diagnostics."""

    def __init__(self, writer: BagWriter, info: dict, namespace: str = "/"):
        self.writer, self.info = writer, info
        self.topics = {name: output_topic(name, namespace) for name in (*VIEW_OUTPUTS, *STEP_OUTPUTS, "stats")}
        self.health = NodeHealth()

    def count(self, processed: bool) -> None:
        self.health.count(received=1, **({"processed": 1} if processed else {"dropped_invalid": 1}))

    def write(self, result, live_gaussians: int) -> None:
        frame_id = result.frame_id
        enabled = set(VIEW_OUTPUTS)
        for view, msgs in zip(sorted(result.views, key=lambda v: v.pair_time),
                              view_messages(result, frame_id, enabled, FLAVOR)):
            for name, msg in msgs.items():
                self.writer.write(self.topics[name], view.stamp_ns, msg)
        for name, msg in step_messages(result, frame_id, set(STEP_OUTPUTS), FLAVOR).items():
            self.writer.write(self.topics[name], result.stamp_ns, msg)
        self.health.record_latency(result.latency_ms)
        last, now = self.health.period()
        info = {**self.info, "depth_source": result.depth_source, "metric": result.metric}
        stats = stats_message(self.health, last, now, info, live_gaussians, result.stamp_ns, FLAVOR)
        self.writer.write(self.topics["stats"], result.stamp_ns, stats)
        level, message = assess(last, now, None)
        self.writer.write(DIAGNOSTICS, result.stamp_ns, diagnostics_message(
            stats, level, message, f"{NODE_NAME}: pipeline", info["backend"], result.stamp_ns, FLAVOR))


def run_replay(args: argparse.Namespace) -> dict:
    """Run the replay described by parsed command-line ``args``; returns the report's summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag_out = out / "outputs"
    if bag_out.exists():
        raise FileExistsError(f"{bag_out} exists; choose another --out or remove it")
    backend = make_backend(args.backend, args.model, args.checkpoint, args.device, random_init=args.random_init)
    pipeline = StreamingPipeline(backend, PipelineConfig(render_times=tuple(args.render_times),
                                                         depth_max_m=args.depth_max, motion_prior=args.motion_prior))
    evaluator = StreamEvaluator(pipeline, stride=args.stride, depth_max_m=args.depth_max)
    weights = "random init" if args.random_init else str(args.checkpoint or f"default {args.model} weights")
    meta = {"bag": str(args.bag), "image_topic": args.image_topic, "depth_topic": args.depth_topic,
            "input_depth": bool(args.depth_topic and not args.no_input_depth), "backend": backend.name,
            "device": backend.device, "model": backend.model_config.name, "weights": weights,
            "model_resolution": list(backend.model_config.image_size), "stride": args.stride,
            "motion_prior": pipeline.motion_prior}
    meta["flow"] = pipeline.flow_settings
    meta["interp_window"] = f"{pipeline.config.interp_window} ({pipeline.config.interp_samples} renders)"
    info_topic = args.info_topic if args.info_topic in bag_topics(args.bag) else None
    meta["info_topic"] = info_topic
    frames = read_camera_frames(args.bag, args.image_topic, args.depth_topic, info_topic)
    start = time.perf_counter()
    with BagWriter(bag_out, storage=args.storage) as writer:
        recorder = OutputRecorder(writer, {"backend": backend.name, "model": backend.model_config.name})
        progress = _progress(args.max_frames, args.quiet)
        for i, cam in enumerate(frames):
            if args.max_frames and i >= args.max_frames:
                break
            built = frame_from_messages(Matched(cam.stamp_ns, cam.image, cam.depth, cam.info), args.depth_scale)
            frame, gt = built.frame, built.frame.depth_m
            if args.no_input_depth:
                frame.depth_m = None
            result = evaluator.add(frame, gt)
            if i % args.stride == 0:
                recorder.count(result is not None)
                if result is not None:
                    recorder.write(result, pipeline.live_gaussians)
            progress.update(1)
        progress.close()
    elapsed = time.perf_counter() - start
    summary = evaluator.summary()
    summary["wall_s"] = elapsed
    summary["throughput_fps"] = summary["key_frames"] / elapsed if elapsed > 0 else None
    meta["output_bag"] = str(bag_out)
    write_report(out, meta, summary, evaluator.records)
    return summary


def _progress(total: int | None, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, unit="frame", disable=quiet, desc="replay")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nut_ros_replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", help="input rosbag2 folder (sqlite3 or mcap)")
    p.add_argument("--out", required=True, help="output folder (report files and the outputs/ bag)")
    p.add_argument("--image-topic", default="/camera/image_raw", help="Image or CompressedImage topic")
    p.add_argument("--depth-topic", default=None, help="depth Image topic: input depth and ground truth")
    p.add_argument("--info-topic", default="/camera/camera_info",
                   help="CameraInfo topic (ignored when the bag has none: the pipeline then assumes a 60° FOV)")
    p.add_argument("--no-input-depth", action="store_true",
                   help="do not feed the depth topic to the pipeline (relative depth); still use it as ground truth")
    p.add_argument("--depth-scale", type=float, default=0.001, help="metres per unit of 16UC1 depth")
    p.add_argument("--depth-max", type=float, default=20.0, help="depth beyond this many metres is invalid")
    p.add_argument("--stride", type=int, default=2, help="key-frame stride k: the pipeline sees every k-th frame")
    p.add_argument("--render-times", type=float, nargs="+", default=[1.0],
                   help="pair times rendered and published per key frame")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--model", default="tiny", help="model configuration (tiny, small, streamsplat)")
    p.add_argument("--checkpoint", default=None, help="weights file (default: the shipped weights of --model)")
    p.add_argument("--random-init", action="store_true", help="randomly initialised model (testing only)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (used with --random-init)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--motion-prior", choices=("auto", "dis", "none"), default="auto",
                   help="optical-flow velocity prior (auto: as the model was trained)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many input frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    summary = run_replay(args)
    k, m, b = summary["key"], summary["interp"], summary["blend"]
    print(f"key PSNR {k['psnr']}, interp PSNR {m['psnr']} (blend {b['psnr']}); report in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
