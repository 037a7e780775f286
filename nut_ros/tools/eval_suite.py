"""One-command evaluation on real footage: build the clip bags, replay each one, summarise against the goals.

    python -m nut_ros.tools.eval_suite --shared ../shared --work /tmp/nut_eval [--checkpoint weights.safetensors]

1. builds the input bags of :data:`CLIPS` with :func:`nut_ros.tools.make_bag.make_bag` into ``WORK/bags`` (once:
   a bag is rebuilt only when its spec changes). 7-Scenes and co-tracker are evaluation-only data: their bags stay
   in ``--work``, never in the repository;
2. replays every run of :data:`RUNS` with ``nut_ros_replay``'s :func:`~nut_ros.tools.replay_eval.run_replay`
   (same protocol as docs/EVALUATION.md: key-frame stride 3, held-out frames interpolated at their pair time and
   compared with the linear blend of the two key frames), each into ``WORK/runs/<run>`` (report and output bag);
3. runs every sequence of :data:`SEQUENCE_RUNS` (image folders with camera poses: 7-Scenes, TUM) through the
   streaming pipeline directly with the same evaluator and stride, feeding the poses as ``Frame.camera_pose`` where
   the run says so (the bags carry no odometry yet);
4. writes ``WORK/summary.json`` and ``WORK/summary.md``: one row per run and which goals are met.

Every depth figure stands beside a constant depth, a vertical ramp and the depth-from-motion input alone, on the
same pixels and with the same alignment (:mod:`nut_ros.pipeline.evaluation`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nut_ros
from nut_ros.core.config import CONFIGS
from nut_ros.pipeline.backends import BACKENDS, default_checkpoint
from nut_ros.pipeline.evaluation import DEPTH_KEYS, DEPTH_PREDICTORS, DEPTH_PROTOCOLS

PACKAGE_DIR = Path(nut_ros.__file__).resolve().parent
KEY_STRIDE = 3  # one protocol for every run: the pipeline sees every 3rd bag frame
REAL_MOTION_BLEND_DB = 30.0  # blend baseline below this (256²) means the held-out frames really differ
KEY_PSNR_GOAL_DB = 30.0
ABS_REL_GOAL = 0.05
DEPTH_TOPIC = "/camera/depth"


@dataclass(frozen=True)
class ClipSpec:
    """How to build one input bag: which source frames, at what size and rate (see ``make_bag``)."""

    name: str
    source: str  # path relative to the root below (a video file or an image folder)
    why: str
    root: str = "shared"  # "shared" (the --shared folder) or "package" (the nut_ros package, bundled data)
    start: int = 0  # first source frame
    step: int = 1  # the bag keeps every step-th source frame
    frames: int | None = None  # bag frames (None: to the end of the source)
    resize: tuple[int, int] | None = (512, 288)
    fps: float | None = None  # source frame rate (None: the video's)
    pattern: str = "*"
    depth_pattern: str | None = None  # 16-bit depth images in the same folder as the colour images
    intrinsics: tuple[float, float, float, float] | None = None  # fx, fy, cx, cy (None: 60° horizontal FOV)


@dataclass(frozen=True)
class SequenceRun:
    """A run fed to the pipeline from an image sequence with poses (no bag): ``reader`` of
    :mod:`nut_ros.pipeline.sequences`, the share ``[start, stop)`` of its frames, ``poses``: give the pipeline
    ``Frame.camera_pose`` (odometry; the run is metric), ``depth_from_motion``: ``PipelineConfig`` value. The
    pipeline sees every ``stride``-th frame, as in the bag runs; the frames between are not read (these runs score
    depth, the bag runs score interpolation)."""

    name: str
    reader: str  # "seven_scenes" | "tum"
    source: str  # folder relative to --shared
    label: str
    start: float = 0.0
    stop: float = 1.0
    poses: bool = False
    depth_from_motion: str = "auto"
    network_depth: bool = False  # ``PipelineConfig.network_depth``: score the network's RGB-only depth
    stride: int = KEY_STRIDE


@dataclass(frozen=True)
class RunSpec:
    """One replay of a clip's bag; ``input_depth`` feeds its depth topic to the pipeline (else ground truth only)."""

    name: str
    clip: str
    label: str
    input_depth: bool = False
    stride: int = KEY_STRIDE


# Segments with real motion. The dB figure in each ``why`` is the frame-blend baseline on the held-out frames
# (256², from the model resolution 256x144, key stride 3), which every run re-measures: the first seconds of the sam2
# clips are near-static (blend 36-39 dB) and say little about interpolation, these segments are not. Each run stays
# at <= 50 key frames so that the suite takes minutes on a CPU.
CLIPS = (
    ClipSpec("cups", "data/cups", root="package", resize=None, fps=30000 / 1001 / 2,
             why="bundled cup shuffle (02_cups frames 40..158 step 2, 15 fps): fast hand and cup motion "
                 "(22.5 dB)"),
    ClipSpec("dog", "data/sam2_gallery/01_dog.mp4", step=3, frames=90,
             why="frames 0..267 step 3 (10 fps): dog running, woman throwing; the moving parts are small in this "
                 "wide outdoor shot, so at 15 fps the blend still scores ~30 dB and 10 fps is used (28.3 dB)"),
    ClipSpec("blocks", "data/sam2_gallery/03_blocks.mp4", start=100, step=2, frames=90,
             why="frames 100..278 step 2 (15 fps): top-down hands moving letter blocks (24.3 dB)"),
    ClipSpec("coffee", "data/sam2_gallery/04_coffee.mp4", start=40, step=2, frames=90,
             why="frames 40..218 step 2 (15 fps): kettle lifted and poured into the mug (27.7 dB)"),
    ClipSpec("juggle", "data/sam2_gallery/05_default_juggle.mp4", start=60, step=2, frames=90,
             why="frames 60..238 step 2 (12 fps): football and legs moving fast (25.3 dB)"),
    ClipSpec("redkitchen", "data/sevenscenes_redkitchen", resize=None, fps=30.0, pattern="*.color.jpg",
             depth_pattern="*.depth.png", intrinsics=(585.0, 585.0, 320.0, 240.0),
             why="all 150 frames (30 Hz) with Kinect depth: handheld camera, static room (28.1 dB); "
                 "evaluation-only data"),
    ClipSpec("apple", "data/cotracker_apple/apple.mp4", resize=(576, 320),
             why="all 50 frames (10 fps): camera moving around a static apple, the camera-motion control "
                 "(29.9 dB); evaluation-only data"),
)

RUNS = (
    RunSpec("cups", "cups", "cups (bundled, 60 fr)"),
    RunSpec("dog", "dog", "sam2 01_dog (90 fr, 10 fps)"),
    RunSpec("blocks", "blocks", "sam2 03_blocks (90 fr, 15 fps)"),
    RunSpec("coffee", "coffee", "sam2 04_coffee (90 fr, 15 fps)"),
    RunSpec("juggle", "juggle", "sam2 05_juggle (90 fr, 12 fps)"),
    RunSpec("redkitchen_depth", "redkitchen", "7-Scenes redkitchen (150 fr), depth in", input_depth=True),
    RunSpec("redkitchen_rgb", "redkitchen", "7-Scenes redkitchen (150 fr), RGB only"),
    RunSpec("apple", "apple", "co-tracker apple (50 fr)"),
)


SEVEN_SCENES = "data/sevenscenes_redkitchen"
TUM_RPY = "data/train_rgbd/tum_fr1_rpy"
TUM_VALIDATION = 0.8  # the last 20 % of TUM fr1_rpy are held out of training
SEQUENCE_RUNS = (
    SequenceRun("redkitchen_network", "seven_scenes", SEVEN_SCENES, "7-Scenes redkitchen (150 fr), RGB only, "
                "network alone (its depth is not published by default)", depth_from_motion="off", network_depth=True),
    SequenceRun("redkitchen_motion", "seven_scenes", SEVEN_SCENES, "7-Scenes redkitchen (150 fr), RGB only, "
                "depth from motion"),
    SequenceRun("redkitchen_odometry", "seven_scenes", SEVEN_SCENES, "7-Scenes redkitchen (150 fr), RGB + "
                "odometry (7-Scenes poses), metric", poses=True),
    SequenceRun("tum_val_motion", "tum", TUM_RPY, "TUM fr1_rpy validation (last 20 %), RGB only, depth from motion",
                start=TUM_VALIDATION),
    SequenceRun("tum_val_odometry", "tum", TUM_RPY, "TUM fr1_rpy validation (last 20 %), RGB + odometry "
                "(mocap poses), metric", start=TUM_VALIDATION, poses=True),
)


class ClipError(Exception):
    """A run cannot be done: its clip or sequence is missing or unreadable under ``--shared``, its bag cannot be
    replayed, its backend cannot be made from the options, or the pipeline processed none of its key frames."""


def sequence_frames(run: SequenceRun, shared: Path):
    """The run's frames (:class:`nut_ros.pipeline.sequences.SequenceFrame`), poses removed unless it uses them."""
    from nut_ros.pipeline import sequences

    folder = shared / run.source
    if run.reader == "seven_scenes":
        count = len(list(folder.glob("frame-*.pose.txt")))  # every frame has its pose
        reader = sequences.seven_scenes
    elif run.reader == "tum":
        count, reader = sequences.tum_frame_count(folder), sequences.tum
    else:
        raise ValueError(f"unknown sequence reader {run.reader!r}")
    if not count:
        raise FileNotFoundError(f"no frames in {folder}")
    for sf in reader(folder, range(int(run.start * count), int(run.stop * count), run.stride)):
        if not run.poses:
            sf.frame.camera_pose = None
        yield sf


def run_sequence(run: SequenceRun, shared: Path, out: Path, options: list[str]) -> dict:
    """One :class:`SequenceRun` through the pipeline and the evaluator; writes its report into ``out``.
    ``ClipError`` when its backend cannot be made (bad weights, a backend without its exported files) or its
    sequence cannot be read."""
    import torch

    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.evaluation import StreamEvaluator
    from nut_ros.pipeline.report import write_report
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig
    from nut_ros.tools.replay_eval import read_guarded

    p = argparse.ArgumentParser()
    for flag, default in (("--model", "tiny"), ("--backend", "torch"), ("--device", "cpu"), ("--checkpoint", None),
                          ("--motion-prior", "auto")):
        p.add_argument(flag, default=default)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(options)
    torch.manual_seed(0)
    try:
        backend = make_backend(args.backend, args.model, args.checkpoint, args.device)
        pipeline = StreamingPipeline(backend, PipelineConfig(motion_prior=args.motion_prior,
                                                             depth_from_motion=run.depth_from_motion,
                                                             network_depth=run.network_depth))
    except Exception as err:  # noqa: BLE001 - the loaders raise their own kinds; the run fails, as a replay does
        weights = args.checkpoint or f"default {args.model} weights"
        raise ClipError(f"run {run.name}: cannot load the {args.backend} backend from {weights}: "
                        f"{type(err).__name__}: {err}") from err
    evaluator = StreamEvaluator(pipeline, stride=1)  # sequence_frames already keeps every stride-th frame
    start = time.perf_counter()
    with torch.no_grad():
        # the sequence's files missing or unreadable: the run's fault, not the suite's
        for sf in read_guarded(sequence_frames(run, shared), (OSError, ValueError),
                               lambda err, _: ClipError(f"run {run.name}: sequence {run.source}: {err}")):
            evaluator.add(sf.frame, sf.depth_m)
    summary = evaluator.summary()
    summary["wall_s"] = time.perf_counter() - start
    summary["stride"] = run.stride
    meta = {"sequence": f"{run.source} [{run.start:g}, {run.stop:g})", "input_depth": False,
            "odometry": run.poses, "depth_from_motion": run.depth_from_motion, "network_depth": run.network_depth,
            "backend": backend.name, "device": backend.device, "model": backend.model_config.name,
            "weights": str(args.checkpoint or f"default {args.model} weights"),
            "model_resolution": list(backend.model_config.image_size), "stride": run.stride,
            "motion_prior": pipeline.motion_prior, "flow": pipeline.flow_settings}
    if out.exists():
        shutil.rmtree(out)
    write_report(out, meta, summary, evaluator.records)
    return {"meta": meta, "summary": summary}


def build_bag(clip: ClipSpec, shared: Path, bags: Path, log=print) -> Path:
    """The clip's bag in ``bags``, built unless a bag of the same spec is already there (``log``: what the source's
    reading noted, e.g. a video that ended early)."""
    from nut_ros.tools.make_bag import make_bag

    path, stamp = bags / clip.name, bags / f"{clip.name}.spec.json"
    spec = json.dumps(asdict(clip), sort_keys=True)
    if path.is_dir() and stamp.is_file() and stamp.read_text() == spec:
        return path
    root = PACKAGE_DIR if clip.root == "package" else shared
    source = root / clip.source
    partial = bags / f"{clip.name}.partial"
    for old in (path, partial):
        if old.exists():
            shutil.rmtree(old)
    stamp.unlink(missing_ok=True)
    bags.mkdir(parents=True, exist_ok=True)
    made = make_bag(source, partial, depth_dir=source if clip.depth_pattern else None, pattern=clip.pattern,
                    depth_pattern=clip.depth_pattern or "*", intrinsics=clip.intrinsics, max_frames=clip.frames,
                    stride=clip.step, start=clip.start, resize=clip.resize, fps=clip.fps)
    for note in made.notes:
        log(f"clip {clip.name}: warning: {note}")
    partial.rename(path)
    stamp.write_text(spec)
    return path


def replay(run: RunSpec, bag: Path, out: Path, options: list[str]) -> dict:
    """``nut_ros_replay`` of one run into ``out`` (replaced); returns its report (meta and summary)."""
    import torch

    from nut_ros.tools.replay_eval import build_parser, run_replay

    if out.exists():
        shutil.rmtree(out)
    argv = [str(bag), "--out", str(out), "--stride", str(run.stride), *options]
    if _has_depth(bag):  # depth is always the ground truth; the pipeline gets it only with input_depth
        argv += ["--depth-topic", DEPTH_TOPIC] + ([] if run.input_depth else ["--no-input-depth"])
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    run_replay(args)
    report = json.loads((out / "report.json").read_text())
    return {"meta": report["meta"], "summary": report["summary"]}


def _has_depth(bag: Path) -> bool:
    from nut_ros.ros.bag_io import bag_topics

    return DEPTH_TOPIC in bag_topics(bag)


def summary_row(run: RunSpec | SequenceRun, report: dict) -> dict:
    """The numbers of one run that go into the suite's table."""
    s = report["summary"]
    depth = s.get("depth") or {}
    blend = s["blend"]["psnr_256"]
    return {
        "run": run.name, "label": run.label, "input_depth": report["meta"]["input_depth"],
        "model_resolution": report["meta"]["model_resolution"], "stride": s["stride"],
        "key_frames": s["key_frames"], "interp_frames": s["interp_frames"],
        "key_psnr": s["key"]["psnr"], "key_psnr_256": s["key"]["psnr_256"], "key_ssim_256": s["key"]["ssim_256"],
        "interp_psnr_256": s["interp"]["psnr_256"], "blend_psnr_256": blend,
        "flow_warp_psnr_256": (s.get("flow_warp") or {}).get("psnr_256"),
        "real_motion": blend is not None and blend < REAL_MOTION_BLEND_DB,
        **{k: depth.get(k) for k in DEPTH_KEYS}, "depth_sources": depth.get("sources"),
        "depth_by_source": depth.get("by_source"),
        "latency_p50_ms": s["latency_ms"].get("total", {}).get("p50"), "wall_s": s["wall_s"],
    }


def assess_goals(rows: list[dict]) -> dict:
    """Which goals the rows meet: key PSNR ≥ 30 dB (256²) everywhere, interpolation beating the blend baseline on
    every real-motion run, rendered-depth AbsRel ≤ 0.05 on every run with depth input."""
    def check(name: str, subset: list[dict], ok) -> dict:
        passed = [r["run"] for r in subset if ok(r)]
        return {"goal": name, "met": bool(subset) and len(passed) == len(subset),
                "passed": passed, "failed": [r["run"] for r in subset if r["run"] not in passed]}

    depth_runs = [r for r in rows if r["input_depth"]]
    return {
        "key_psnr": check(f"key PSNR >= {KEY_PSNR_GOAL_DB:g} dB (256²)", rows,
                          lambda r: (r["key_psnr_256"] or -math.inf) >= KEY_PSNR_GOAL_DB),
        "interp_vs_blend": check("interpolated > blend (256²) on real-motion runs",
                                 [r for r in rows if r["real_motion"]],
                                 lambda r: (r["interp_psnr_256"] or -math.inf) > r["blend_psnr_256"]),
        "interp_vs_flow_warp": check("interpolated > flow warp (256²) on real-motion runs",
                                     [r for r in rows if r["real_motion"]],
                                     lambda r: (r["interp_psnr_256"] or -math.inf) > (r["flow_warp_psnr_256"] or
                                                                                      math.inf)),
        "depth_abs_rel": check(f"rendered-depth AbsRel <= {ABS_REL_GOAL:g} with depth input", depth_runs,
                               lambda r: r["depth_abs_rel"] is not None and r["depth_abs_rel"] <= ABS_REL_GOAL),
    }


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _depth_cell(abs_rel, delta1) -> str:
    return "–" if abs_rel is None else f"{_fmt(abs_rel, 3)} ({_fmt(delta1, 3)})"


def summary_markdown(meta: dict, rows: list[dict], goals: dict, clips: tuple[ClipSpec, ...],
                     failed: list[dict] = ()) -> str:
    """``summary.md``: the table of runs, the runs that failed, the goals line and the clip table."""
    res = "x".join(str(v) for v in reversed(rows[0]["model_resolution"])) if rows else "model"
    lines = ["# nut_ros evaluation suite", ""]
    lines += [f"- {k}: `{v}`" for k, v in meta.items()]
    lines += ["", f"\"native\" is the model resolution ({res}, ground truth resized to it); \"256²\" is "
              "StreamSplat's protocol (both images resized to 256x256). Interpolated and blend scores are over the "
              f"held-out frames between key frames; real motion: blend 256² < {REAL_MOTION_BLEND_DB:g} dB. "
              "Depth: rendered depth at key frames against the depth topic, metric (no alignment) when the "
              "pipeline got depth, median-aligned always, and with scale and shift fitted in disparity (\"affine\", "
              "the MiDaS protocol for scale/shift-invariant depth).", "",
              "| run | key/interp frames | key PSNR native / 256² | key SSIM 256² | interp PSNR 256² | "
              "blend PSNR 256² | flow-warp PSNR 256² | real motion | AbsRel metric (δ<1.25) | "
              "AbsRel aligned (δ<1.25) | AbsRel affine (δ<1.25) | latency p50 ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        metric = _depth_cell(r["depth_abs_rel"], r["depth_delta1"])
        aligned = _depth_cell(r["depth_abs_rel_aligned"], r["depth_delta1_aligned"])
        affine = _depth_cell(r["depth_abs_rel_affine"], r["depth_delta1_affine"])
        lines.append(f"| {r['label']} | {r['key_frames']}/{r['interp_frames']} | {_fmt(r['key_psnr'])} / "
                     f"{_fmt(r['key_psnr_256'])} | {_fmt(r['key_ssim_256'], 3)} | {_fmt(r['interp_psnr_256'])} | "
                     f"{_fmt(r['blend_psnr_256'])} | {_fmt(r['flow_warp_psnr_256'])} | "
                     f"{'yes' if r['real_motion'] else 'no'} | {metric} | {aligned} | "
                     f"{affine} | {_fmt(r['latency_p50_ms'], 0)} |")
    lines += ["", "## Depth beside its baselines", "",
              "AbsRel (δ<1.25) of the rendered depth at key frames and, on the same pixels with the same alignment, "
              "of a constant depth, a vertical ramp (disparity 0.5 at the top to 1.5 at the bottom) and the model's "
              "depth input from motion (dense as the model got it, and semi-dense before the fill; scored where it "
              "has values: coverage = its share of the scored pixels, 0 on frames without it). Without alignment "
              "(metric runs only) constant and ramp are scaled to the rendered depth's median. Sources: key frames "
              "per depth source, with the rendered depth's AbsRel on those frames in brackets.", "",
              "| run | alignment | " + " | ".join(DEPTH_PREDICTORS.values()) + " | input / semi-dense coverage | "
              "sources |", "|---|---|" + "---|" * (len(DEPTH_PREDICTORS) + 2)]
    for r in rows:
        if r.get("depth_coverage") is None:
            continue
        for proto, name in DEPTH_PROTOCOLS.items():
            cells = [_depth_cell(r.get(f"depth_abs_rel{proto}{k}"), r.get(f"depth_delta1{proto}{k}"))
                     for k in DEPTH_PREDICTORS]
            if all(c == "–" for c in cells):
                continue
            cover = f"{_fmt(r.get('depth_coverage_input'))} / {_fmt(r.get('depth_coverage_sparse'))}"
            by_source = r.get("depth_by_source") or {}
            key = f"depth_abs_rel{proto}"
            sources = ", ".join(f"{k} {v} ({_fmt(by_source.get(k, {}).get(key), 3)})"
                                for k, v in (r.get("depth_sources") or {}).items())
            lines.append(f"| {r['label']} | {name} | " + " | ".join(cells) + f" | {cover} | {sources} |")
    verdicts = []
    for g in goals.values():
        state = "**met**" if g["met"] else "**not met**"
        detail = f" (failed: {', '.join(g['failed'])})" if g["failed"] else ""
        verdicts.append(f"{g['goal']}: {state}{detail}" if g["passed"] or g["failed"] else f"{g['goal']}: no runs")
    if failed:
        lines += ["", "## Failed runs (not in the tables or the goals)", ""]
        lines += [f"- {f['run']}: {f['reason']}" for f in failed]
    over = " (over the runs that completed)" if failed else ""
    lines += ["", f"Goals{over}: " + "; ".join(verdicts) + ".", "", "## Clips", "", "| clip | source | segment |",
              "|---|---|---|"]
    lines += [f"| {c.name} | `{c.source}` | {c.why} |" for c in clips]
    return "\n".join(lines) + "\n"


def _run_clip(run: RunSpec, clip: ClipSpec, shared: Path, work: Path, options: list[str], log=print) -> dict:
    """One replay run: its bag (built or reused), then ``nut_ros_replay``; its report."""
    from nut_ros.tools.replay_eval import DamagedBag, SetupError

    try:
        bag = build_bag(clip, shared, work / "bags", log)
    except (OSError, ValueError) as err:  # the clip is missing or unreadable
        raise ClipError(f"run {run.name}: clip {run.clip}: {err}") from err
    try:
        return replay(run, bag, work / "runs" / run.name, options)
    except (SetupError, DamagedBag) as err:
        raise ClipError(f"run {run.name}: {err}") from err


def _no_key_frames(run: RunSpec | SequenceRun, summary: dict) -> ClipError:
    """The failure of a run whose pipeline processed no key frame, with why its frames went (by reason)."""
    drops = {**summary.get("match_drops", {}), **summary.get("input_drops", {}), **summary["pipeline"]["drops"]}
    why = "; ".join(f"{n}x {reason}" for reason, n in drops.items()) or "no frames"
    return ClipError(f"run {run.name}: no key frame was processed ({why})")


def run_suite(shared: Path, work: Path, replay_options: list[str], clips: tuple[ClipSpec, ...] = CLIPS,
              runs: tuple[RunSpec, ...] = RUNS, meta: dict | None = None, log=print,
              sequence_runs: tuple[SequenceRun, ...] = SEQUENCE_RUNS) -> dict:
    """Build the bags, replay every run, run every sequence and write ``summary.json`` / ``summary.md``. A run whose
    clip or sequence is missing or unreadable, whose backend cannot be made, or that processed no key frame
    (``ClipError``) is listed under ``failed`` with the reason, and the others go on."""
    by_name = {c.name: c for c in clips}
    work.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for run in (*runs, *sequence_runs):
        start = time.perf_counter()
        try:
            if isinstance(run, SequenceRun):
                report = run_sequence(run, shared, work / "runs" / run.name, replay_options)
            else:
                report = _run_clip(run, by_name[run.clip], shared, work, replay_options, log)
            if not report["summary"]["key_frames"]:
                raise _no_key_frames(run, report["summary"])
        except ClipError as err:
            failed.append({"run": run.name, "reason": str(err)})
            log(f"failed: {err}")
            continue
        rows.append(summary_row(run, report))
        r = rows[-1]
        if isinstance(run, SequenceRun):
            log(f"{run.name}: depth AbsRel scale+shift {_fmt(r['depth_abs_rel_affine'], 3)} (constant "
                f"{_fmt(r['depth_abs_rel_affine_constant'], 3)}), median {_fmt(r['depth_abs_rel_aligned'], 3)}, "
                f"metric {_fmt(r['depth_abs_rel'], 3)} in {time.perf_counter() - start:.0f} s")
        else:
            log(f"{run.name}: key {_fmt(r['key_psnr_256'])} dB, interp {_fmt(r['interp_psnr_256'])} dB, blend "
                f"{_fmt(r['blend_psnr_256'])} dB, flow warp {_fmt(r['flow_warp_psnr_256'])} dB (256²) in "
                f"{time.perf_counter() - start:.0f} s")
    goals = assess_goals(rows)
    meta = dict(meta or {})
    if rows:
        meta.setdefault("weights", report["meta"]["weights"])
        meta.setdefault("model", report["meta"]["model"])
        meta.setdefault("backend", f"{report['meta']['backend']} on {report['meta']['device']}")
        meta.setdefault("motion_prior", report["meta"].get("motion_prior", "none"))
        for key in ("flow", "interp_window"):
            if key in report["meta"]:
                meta.setdefault(key, report["meta"][key])
    used = tuple(c for c in clips if any(r.clip == c.name for r in runs))
    summary = {"meta": meta, "runs": rows, "failed": failed, "goals": goals, "clips": [asdict(c) for c in used]}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    (work / "summary.md").write_text(summary_markdown(meta, rows, goals, used, failed))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nut_ros.tools.eval_suite", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shared", default="../shared", help="the shared data folder (holds data/...)")
    p.add_argument("--work", default="/tmp/nut_eval", help="bags, run outputs and the summary go here")
    p.add_argument("--model", default="tiny", help="model configuration (for the default weights)")
    p.add_argument("--checkpoint", default=None, help="weights file (default: the shipped weights of --model)")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="pipeline backend")
    p.add_argument("--device", default="cpu")
    p.add_argument("--motion-prior", choices=("auto", "learned", "flow", "none"), default="auto",
                   help="velocity prior (auto: the model's own, learned for tiny and small, except classical "
                        "flow on a CPU torch backend)")
    p.add_argument("--runs", nargs="+", choices=[r.name for r in (*RUNS, *SEQUENCE_RUNS)],
                   help="only these runs (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model not in CONFIGS:
        return _fail(f"--model {args.model!r} is not a model configuration ({', '.join(sorted(CONFIGS))})")
    if not (Path(args.shared) / "data").is_dir():
        return _fail(f"{args.shared} has no data/ folder: give the shared folder with --shared")
    options = ["--model", args.model, "--backend", args.backend, "--device", args.device,
               "--motion-prior", args.motion_prior]
    command = " ".join(["python -m nut_ros.tools.eval_suite", *(sys.argv[1:] if argv is None else argv)])
    meta = {"date": time.strftime("%Y-%m-%d"), "command": command}
    checkpoint = args.checkpoint or (default_checkpoint(args.model) if args.backend == "torch" else None)
    if checkpoint:
        options += ["--checkpoint", str(checkpoint)]
        meta["weights"] = str(checkpoint)
        if Path(checkpoint).is_file():
            meta["weights_sha256"] = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:16]
    if args.quiet:
        options.append("--quiet")
    runs = tuple(r for r in RUNS if not args.runs or r.name in args.runs)
    sequence_runs = tuple(r for r in SEQUENCE_RUNS if not args.runs or r.name in args.runs)
    try:
        summary = run_suite(Path(args.shared), Path(args.work), options, runs=runs, meta=meta,
                            sequence_runs=sequence_runs)
    except OSError as err:  # the work folder not writable
        return _fail(str(err))
    print((Path(args.work) / "summary.md").read_text())
    for failure in summary["failed"]:
        _fail(failure["reason"])
    return 1 if summary["failed"] else 0


def _fail(reason: str) -> int:
    print(f"nut_ros.tools.eval_suite: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
