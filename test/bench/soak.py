"""Soak benchmark: push thousands of frames through the node over DDS (``--via node``, default) or straight
through the streaming pipeline (``--via pipeline``) and watch memory stay bounded.

Through the node: the node runs as its own process (launch defaults: config/nut_ros.yaml, the shared-memory Fast
DDS profile) on a private ROS_DOMAIN_ID; this process publishes the frames (resized to ``--width``, reliable, with
CameraInfo) at ``--rate`` Hz and samples the node's ``VmRSS``/``VmHWM`` from /proc once a second; the node's
``~/stats`` give frames received, processed and dropped. The node is stopped with SIGINT and must exit 0.

Through the pipeline: frames are the bundled ``nut_ros/data/cups`` clip played forwards and backwards (ping-pong, so
motion never jumps) at 15 frames/s of stream time, optionally with a synthetic metric depth plane. Resident memory
(``VmRSS``) is sampled every ``--sample-every`` frames; the report gives it at the start (model loaded, nothing pushed),
after warm-up, at the end, the peak (``VmHWM``) and the growth rate fitted over the post-warm-up samples.

    .venv/bin/python test/bench/soak.py --via node --frames 5000 --width 160 --rate 8 --json /tmp/soak_node.json
    .venv/bin/python test/bench/soak.py --via pipeline --frames 5000 --model tiny
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.pipeline.backends import BACKENDS, make_backend
from nut_ros.pipeline.metrics import percentiles
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

CLIP = Path(__file__).resolve().parents[2] / "nut_ros" / "data" / "cups"
FRAME_NS = 66_733_400  # 14.985 frames/s, the bundled clip's rate


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """Current (``VmRSS``) and peak (``VmHWM``) resident memory of a process (default: this one) in MiB (Linux)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the machine type."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def load_clip(folder: Path = CLIP) -> list[np.ndarray]:
    """The clip's frames as RGB uint8 arrays, in order."""
    import cv2

    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no frames in {folder}")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def ping_pong(n: int, i: int) -> int:
    """Index of frame ``i`` when a clip of ``n`` frames is played forwards, backwards, forwards, ..."""
    period = 2 * (n - 1)
    k = i % period
    return k if k < n else period - k


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def soak(pipeline: StreamingPipeline, clip: list[np.ndarray], frames: int, with_depth: bool, sample_every: int,
         warmup: int, progress: bool = True, max_s: float | None = None) -> dict:
    """Run the soak and return its measurements; stops early after ``max_s`` seconds, on Ctrl-C or SIGTERM."""
    from tqdm import tqdm

    h, w = clip[0].shape[:2]
    k = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    depth = (1.5 + 1.5 * np.linspace(0, 1, h, dtype=np.float32)[::-1, None] * np.ones((1, w), np.float32)
             if with_depth else None)  # a floor-like slope: 3 m at the top, 1.5 m at the bottom
    samples = [(0, memory_mib()["VmRSS"])]
    start_mem = memory_mib()
    totals = []
    t_start = time.perf_counter()
    done = 0
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        for i in tqdm(range(frames), disable=not progress, unit="frame", desc="soak"):
            if max_s is not None and time.perf_counter() - t_start > max_s:
                break
            rgb = clip[ping_pong(len(clip), i)]
            result = pipeline.push(Frame(rgb, 10**9 + i * FRAME_NS, depth_m=depth, intrinsics=k))
            if result is not None:
                totals.append(result.latency_ms["total"])
            done = i + 1
            if done % sample_every == 0:
                samples.append((done, memory_mib()["VmRSS"]))
    except KeyboardInterrupt:  # stopped early: still report what was measured
        pass
    wall = time.perf_counter() - t_start
    end_mem = memory_mib()
    after = [(n, r) for n, r in samples if n >= warmup]
    slope = float(np.polyfit(*zip(*after), 1)[0]) * 1000 if len(after) >= 2 else float("nan")
    warm = min(after, key=lambda s: s[0])[1] if after else float("nan")
    return {"frames": done, "frames_requested": frames, "processed": pipeline.stats.frames_processed,
            "drops": dict(pipeline.stats.drops), "wall_s": wall, "fps": done / wall,
            "rss_start_mib": start_mem["VmRSS"], "rss_after_warmup_mib": warm,
            "rss_end_mib": end_mem["VmRSS"], "rss_peak_mib": end_mem["VmHWM"], "rss_growth_mib_per_1000": slope,
            "latency_total_ms": percentiles(totals), "latency_ms": pipeline.stats.latency_summary(),
            "gaussians_live": pipeline.live_gaussians, "rss_samples": samples}


def soak_node(clip: list[np.ndarray], frames: int, rate_hz: float, width: int, overrides: dict,
              max_s: float | None = None) -> dict:
    """Publish ``frames`` frames at ``rate_hz`` into the node (own process, DDS) and follow its memory and stats."""
    import subprocess

    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from nut_ros.ros import topics
    from nut_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image
    from nut_ros.ros.node_session import default_domain_id, node_command, session_env, wait_until
    from nut_ros.ros.transport import fastdds_profile_env

    height = round(clip[0].shape[0] * width / clip[0].shape[1])
    small = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in clip]
    k = Intrinsics(0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2, width, height)
    domain = default_domain_id()
    env = {**session_env(domain), **fastdds_profile_env()}
    os.environ.update(fastdds_profile_env())
    proc = subprocess.Popen(node_command(None, overrides, {}), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = Node("nut_ros_soak", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_image = node.create_publisher(topics.resolve_type(topics.INPUT_TYPES[topics.IMAGE]), topics.IMAGE, qos)
    pub_info = node.create_publisher(topics.resolve_type(topics.INPUT_TYPES[topics.CAMERA_INFO]),
                                     topics.CAMERA_INFO, qos)
    stats: list = []
    node.create_subscription(topics.resolve_type(topics.OUTPUT_TYPES["stats"]), topics.output_topic("stats"),
                             stats.append, 10)
    samples: list[tuple[float, int, float]] = []  # (seconds, frames published, node RSS MiB)
    peak = 0.0
    t0 = time.monotonic()
    done = 0
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        if not wait_until(lambda: pub_image.get_subscription_count() > 0 and stats or proc.poll() is not None,
                          180.0) or proc.poll() is not None:
            raise RuntimeError(f"the node did not come up (exit code {proc.poll()})")
        rss_ready = memory_mib(proc.pid)["VmRSS"]
        t0 = next_sample = time.monotonic()
        for i in range(frames):
            if max_s is not None and time.monotonic() - t0 > max_s:
                break
            stamp = 10**9 + i * FRAME_NS
            pub_info.publish(intrinsics_to_camera_info(k, stamp, "camera_optical_frame"))
            pub_image.publish(numpy_to_image(small[ping_pong(len(small), i)], "rgb8", stamp, "camera_optical_frame"))
            done = i + 1
            if time.monotonic() >= next_sample:
                mem = memory_mib(proc.pid)
                peak = max(peak, mem["VmHWM"])
                samples.append((time.monotonic() - t0, done, mem["VmRSS"]))
                next_sample += 1.0
            time.sleep(max(0.0, t0 + done / rate_hz - time.monotonic()))
        wait_until(lambda: stats and stats[-1].frames_received >= done and stats[-1].frames_processed
                   + stats[-1].frames_dropped_queue + stats[-1].frames_dropped_invalid >= stats[-1].frames_received,
                   30.0)
        end = memory_mib(proc.pid)
        peak = max(peak, end["VmHWM"])
    except KeyboardInterrupt:
        end = memory_mib(proc.pid)
    finally:
        wall = time.monotonic() - t0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            exit_code = proc.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = None
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    last = stats[-1]
    after = [(n, r) for _, n, r in samples if n >= 200]
    slope = float(np.polyfit(*zip(*after), 1)[0]) * 1000 if len(after) >= 2 else float("nan")
    return {"frames": done, "frames_requested": frames, "input": f"{width}x{height} rgb8 at {rate_hz} Hz",
            "received": last.frames_received, "processed": last.frames_processed,
            "dropped_queue": last.frames_dropped_queue, "dropped_invalid": last.frames_dropped_invalid,
            "lost": getattr(last, "frames_lost", None), "wall_s": wall, "exit_code": exit_code,
            "rss_ready_mib": rss_ready, "rss_end_mib": end["VmRSS"], "rss_peak_mib": peak,
            "rss_growth_mib_per_1000": slope, "rss_samples": samples}


def markdown(r: dict, meta: dict) -> str:
    lat = r["latency_ms"]
    stage_rows = "\n".join(f"| {s} | {p['p50']:.1f} | {p['p90']:.1f} | {p['p99']:.1f} | {p['max']:.1f} |"
                           for s, p in lat.items())
    return f"""
## Soak: {r['frames']} of {r['frames_requested']} frames, {meta['model']} on {meta['device']} ({meta['date']})

Command: `{meta['command']}`
Machine: {meta['machine']}. Weights: {meta['weights']}. Input: bundled cups clip ping-pong ({meta['input']}),
{'with' if meta['with_depth'] else 'without'} metric depth; renders per frame at pair times \
{meta['render_times'] or 'none'}.

| RSS start (model loaded) | after {meta['warmup']} frames | end | peak (VmHWM) | growth after warm-up |
|---|---|---|---|---|
| {r['rss_start_mib']:.0f} MiB | {r['rss_after_warmup_mib']:.0f} MiB | {r['rss_end_mib']:.0f} MiB | \
{r['rss_peak_mib']:.0f} MiB | {r['rss_growth_mib_per_1000']:+.2f} MiB / 1000 frames |

Processed {r['processed']} of {r['frames']} frames (drops: {r['drops'] or 'none'}) in {r['wall_s']:.0f} s \
({r['fps']:.2f} frames/s); live Gaussians at the end: {r['gaussians_live']}.
Latency over the last {min(r['processed'], 1000)} frames (ms):

| stage | p50 | p90 | p99 | max |
|---|---|---|---|---|
{stage_rows}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--via", choices=("node", "pipeline"), default="node",
                   help="through the node over DDS (own process) or straight through the pipeline")
    p.add_argument("--frames", type=int, default=5000)
    p.add_argument("--rate", type=float, default=8.0, help="--via node: frames published per second")
    p.add_argument("--width", type=int, default=160, help="--via node: width the clip is resized to")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--model", default="tiny")
    p.add_argument("--checkpoint", default=None, help="weights file (default: the shipped weights of --model)")
    p.add_argument("--random-init", action="store_true", help="randomly initialised model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--with-depth", action="store_true", help="add a synthetic metric depth plane")
    p.add_argument("--render-times", type=float, nargs="*", default=[1.0],
                   help="pair times rendered per frame (none: Gaussians only)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and report) after this long")
    p.add_argument("--sample-every", type=int, default=100)
    p.add_argument("--warmup", type=int, default=200, help="frames before the growth fit starts")
    p.add_argument("--json", default=None, help="write the measurements here")
    p.add_argument("--append", default=None, help="append a Markdown section to this file (docs/BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    if args.via == "node":
        overrides = {"model": args.model, "device": args.device, "random_init": args.random_init,
                     "render_times": list(args.render_times) or [1.0]}
        if args.checkpoint:
            overrides["checkpoint"] = args.checkpoint
        result = soak_node(load_clip(), args.frames, args.rate, args.width, overrides,
                           args.max_minutes * 60 if args.max_minutes else None)
        print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "date": date.today().isoformat(),
                                                   "machine": cpu_name(), **result}, indent=1))
        return 0 if result["exit_code"] == 0 else 1

    import torch

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = make_backend(args.backend, args.model, args.checkpoint, args.device, random_init=args.random_init)
    pipeline = StreamingPipeline(backend, PipelineConfig(render_times=tuple(args.render_times)))
    clip = load_clip()
    result = soak(pipeline, clip, args.frames, args.with_depth, args.sample_every, args.warmup, not args.quiet,
                  args.max_minutes * 60 if args.max_minutes else None)
    meta = {"model": backend.model_config.name, "device": backend.device, "date": date.today().isoformat(),
            "command": ".venv/bin/python test/bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads, "
                       f"torch {torch.__version__}",
            "weights": "random init" if args.random_init else str(args.checkpoint or "shipped default"),
            "input": f"{len(clip)} frames {clip[0].shape[1]}x{clip[0].shape[0]}", "with_depth": args.with_depth,
            "warmup": args.warmup, "render_times": list(args.render_times)}
    text = markdown(result, meta)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, **result}, indent=1))
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
