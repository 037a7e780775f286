"""Soak benchmark: push thousands of frames through the streaming pipeline and watch memory stay bounded.

Frames are the bundled ``nut_ros/data/cups`` clip played forwards and backwards (ping-pong, so motion never jumps)
at 15 frames/s of stream time, optionally with a synthetic metric depth plane. Resident memory (``VmRSS``) is
sampled every ``--sample-every`` frames; the report gives it at the start (model loaded, nothing pushed), after
warm-up, at the end, the peak (``VmHWM``) and the growth rate fitted over the post-warm-up samples.

    python -m nut_ros.tools.soak --frames 5000 --model tiny --append docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.pipeline.backends import BACKENDS, make_backend
from nut_ros.pipeline.metrics import percentiles
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

CLIP = Path(__file__).resolve().parents[1] / "data" / "cups"
FRAME_NS = 66_733_400  # 14.985 frames/s, the bundled clip's rate


def memory_mib() -> dict[str, float]:
    """Current (``VmRSS``) and peak (``VmHWM``) resident memory of this process in MiB (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
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
    p = argparse.ArgumentParser(prog="nut_ros_soak", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--frames", type=int, default=5000)
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
            "command": "python -m nut_ros.tools.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
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
