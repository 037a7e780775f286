"""``nut_ros_replay``: run the streaming pipeline over a rosbag offline (no DDS) and evaluate it.

The bag's messages go in bag order through the node's per-frame path (``nut_ros.ros.processor.FrameProcessor``:
the node's stamp matching of image, depth, CameraInfo and odometry, frame building, pipeline, output messages and
health counters), on a clock that follows the bag's receive times. With ``--stride k``
the pipeline sees every k-th frame; the frames in between are rendered by temporal interpolation and scored against
the true frames (see :mod:`nut_ros.pipeline.evaluation`). Writes into ``--out``:

* ``outputs/``: a rosbag2 with what the ``nut_ros`` node would publish for the processed frames — ``~/depth``
  (32FC1), ``~/image`` (rgb8), ``~/camera_info``, ``~/points`` (PointCloud2 of the Gaussians, coloured),
  ``~/gaussians`` (GaussianSet), ``~/stats`` (PipelineStats) and ``/diagnostics``; frames without metric scale
  put their depth and points on ``~/relative/depth`` and ``~/relative/points`` (``nut_ros.ros.topics.RELATIVE``);
* ``report.json``, ``report.md`` and PNG plots. Frames are numbered in the order of their stamp matches (the
  images lost in stamp matching are counted in ``match_drops``, by reason, not numbered).

The run is deterministic: same bag, weights and options give the same outputs (latencies aside).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections import Counter, deque
from itertools import islice
from pathlib import Path

from nut_ros.core.choices import positive
from nut_ros.pipeline.backends import BACKENDS
from nut_ros.pipeline.evaluation import StreamEvaluator
from nut_ros.pipeline.report import write_report
from nut_ros.ros.bag_io import IMAGE_TYPES, INFO_TYPE, ODOMETRY_TYPE, BagClock, BagWriter, bag_messages, bag_topics
from nut_ros.ros.health import assess, diagnostics_message, stats_message
from nut_ros.ros.params import NodeParams, load_params_file
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.processor import ODOMETRY_WAIT_S, FrameProcessor, build_pipeline, processor_settings
from nut_ros.tools.demo import params_file
from nut_ros.ros.topics import DIAGNOSTICS, NODE_NAME, output_topic

FLAVOR = "rosbags"
DEFAULT_INFO_TOPIC = "/camera/camera_info"
DEFAULT_ODOM_TOPIC = "/camera/odom"
DEFAULT_DEPTH_TOPIC = "/camera/depth"  # nut_ros_make_bag's (used only when named: --depth-topic)


def write_outputs(writer: BagWriter, processor: FrameProcessor, outcome, info: dict, namespace: str = "/") -> None:
    """What the node publishes for one processed step, plus its stats and diagnostics, into ``writer``."""
    result = outcome.result
    for name, stamp_ns, msg in outcome.messages:
        writer.write(output_topic(name, namespace), stamp_ns, msg)
    last, now = processor.health.period()
    info = {**info, "depth_source": result.depth_source, "metric": result.metric}
    stats = stats_message(processor.health, last, now, info, processor.pipeline.live_gaussians, result.stamp_ns,
                          FLAVOR)
    writer.write(output_topic("stats", namespace), result.stamp_ns, stats)
    level, message = assess(last, now, None)
    writer.write(DIAGNOSTICS, result.stamp_ns, diagnostics_message(
        stats, level, message, f"{NODE_NAME}: pipeline", info["backend"], result.stamp_ns, FLAVOR,
        processor.perception_values()))


def read_guarded(items, kinds, failure):
    """``items`` as they come; an exception of ``kinds`` while reading the next one raises ``failure(error, items
    read before it)`` instead (the reader's fault told as the input's, with its cause chained)."""
    items, read = iter(items), 0
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except kinds as err:
            raise failure(err, read) from err
        read += 1
        yield item


def replay_matches(path, processor: FrameProcessor, clock: BagClock, image_topic: str, depth_topic: str | None,
                   info_topic: str | None, odom_topic: str | None):
    """Feed the bag's messages to ``processor`` in bag order, as the node's callbacks do; yield each match.
    ``DamagedBag`` when the bag cannot be read on."""
    adders = {image_topic: processor.add_image, depth_topic: processor.add_depth, info_topic: processor.add_info,
              odom_topic: processor.add_odometry}
    wanted = {image_topic: IMAGE_TYPES, depth_topic: IMAGE_TYPES, info_topic: (INFO_TYPE,),
              odom_topic: (ODOMETRY_TYPE,)}
    messages = bag_messages(path, {t: k for t, k in wanted.items() if t is not None})

    def damaged(err: Exception, read: int) -> DamagedBag:  # (rosbags and its storages raise their own kinds)
        return DamagedBag(f"cannot read {path} after {read} messages: {type(err).__name__}: {err}")

    # a match waits for the odometry pose at or after its stamp (recorded after the image, as the node's worker waits
    # for it live), for at most ODOMETRY_WAIT_S of bag time
    held: deque[tuple[int, Matched]] = deque()
    wait_ns = round(ODOMETRY_WAIT_S * 1e9)
    for topic, bag_time_ns, msg in read_guarded(messages, Exception, damaged):
        clock.now_ns = bag_time_ns
        matched = adders[topic](msg)
        if topic != odom_topic and matched is not None:
            held.append((bag_time_ns, matched))
        while held and (not processor.pose_pending(held[0][1].stamp_ns) or bag_time_ns - held[0][0] > wait_ns):
            yield held.popleft()[1]
    yield from (matched for _, matched in held)


def replay_params(args: argparse.Namespace) -> NodeParams:
    """The node's parameters (``--params``, default the package's config/nut_ros.yaml, read as the node reads it:
    unknown names and other nodes' sections are warned about on stderr) with the options given."""
    params = load_params_file(args.params or params_file(), NODE_NAME, _warn)
    given = {"backend": args.backend, "model": args.model, "checkpoint": args.checkpoint, "device": args.device,
             "motion_prior": args.motion_prior, "depth_scale": args.depth_scale,
             "render_times": None if args.render_times is None else list(args.render_times),
             "random_init": True if args.random_init else None}
    return dataclasses.replace(params, **{k: v for k, v in given.items() if v is not None}).validate()


def replay_processor(pipeline, clock: BagClock, depth_topic: str | None, info_topic: str | None,
                     odom_topic: str | None, params: NodeParams | None = None, image_topic: str = "") -> FrameProcessor:
    """The node's per-frame path (settings from ``params``, default the node's defaults) set up for a bag's
    ``image_topic``: wait for depth when there is a depth topic, for a first CameraInfo only when there is an info
    topic, use the odometry when there is an odometry topic."""
    settings = dataclasses.replace(processor_settings(params or NodeParams(), image_topic),
                                   depth_source="topic" if depth_topic else "none",
                                   info_timeout_s=1.0 if info_topic else 0.0, use_odometry=odom_topic is not None)
    return FrameProcessor(pipeline, settings, clock, FLAVOR)


class SetupError(Exception):
    """The replay cannot start: the bag, the options or the output folder (the message says which)."""


class DamagedBag(Exception):
    """The bag cannot be read on, part of the way through (the output bag is discarded)."""


def _warn(message: str) -> None:
    print(f"nut_ros_replay: warning: {message}", file=sys.stderr)


def side_topic(bag, present: dict[str, str], given: str | None, default: str, kind: str, option: str,
               without: str) -> str | None:
    """The CameraInfo or Odometry topic (``kind``) to read: ``given`` (by ``option``), which the bag must have with
    that type (else ``SetupError``), or else the ``default`` when the bag has it with that type. None otherwise,
    with a warning naming the bag's topics of that type and what the replay does ``without`` one; a bag with no
    Odometry at all (none of that type, nothing under the default name) gets no warning."""
    name = kind.rsplit("/", 1)[-1]
    of_kind = ", ".join(sorted(t for t, k in present.items() if k == kind)) or "none"
    if given is not None:
        if present.get(given) != kind:
            found = f"is a {present[given]} topic" if given in present else "is not"
            raise SetupError(f"{option} {given!r} {found} in {bag} ({name} topics: {of_kind})")
        return given
    if present.get(default) == kind:
        return default
    if kind != ODOMETRY_TYPE or of_kind != "none" or default in present:
        found = f"is a {present[default]} topic" if default in present else "is not"
        _warn(f"{option}'s default {default!r} {found} in {bag} ({name} topics: {of_kind}): {without}; "
              f"choose one with {option}")
    return None


def _drop_key(reason: str) -> str:
    """A refusal's reason with its numbers (not those inside names, such as ``mono16``) as ``#``: one count per kind
    of refusal, not per frame."""
    return re.sub(r"(?<![\w.])\d+(\.\d+)?(?![\w.-])", "#", reason)


def run_replay(args: argparse.Namespace) -> dict:
    """Run the replay described by parsed command-line ``args``; returns the report's summary. ``SetupError``
    when it cannot start (nothing is written then); a replay that fails half way leaves no output bag."""
    out = Path(args.out)
    bag_out = out / "outputs"
    if bag_out.exists():
        raise SetupError(f"{bag_out} exists; choose another --out or remove it")
    if args.depth_topic is not None and args.depth_topic == args.image_topic:
        raise SetupError(f"--depth-topic and --image-topic are both {args.image_topic!r}: the depth images must have "
                         f"a topic of their own")
    try:
        present = bag_topics(args.bag)
    except Exception as err:  # noqa: BLE001 - rosbags' reader raises its own kinds for a missing or bad bag
        raise SetupError(f"cannot read the bag {args.bag}: {err}") from err
    for topic in filter(None, (args.image_topic, args.depth_topic)):  # before anything is written
        if present.get(topic) not in IMAGE_TYPES:
            images = sorted(t for t, kind in present.items() if kind in IMAGE_TYPES)
            raise SetupError(f"{args.bag} has no image topic {topic!r} (image topics: {', '.join(images) or 'none'})")
    info_topic = side_topic(args.bag, present, args.info_topic, DEFAULT_INFO_TOPIC, INFO_TYPE, "--info-topic",
                            "the pipeline assumes a 60° horizontal field of view")
    odom_topic = side_topic(args.bag, present, args.odom_topic, DEFAULT_ODOM_TOPIC, ODOMETRY_TYPE, "--odom-topic",
                            "the frames go without camera poses")
    if args.depth_topic is None and present.get(DEFAULT_DEPTH_TOPIC) in IMAGE_TYPES:
        print(f"nut_ros_replay: note: {args.bag} has {DEFAULT_DEPTH_TOPIC}, not used: pass --depth-topic "
              f"{DEFAULT_DEPTH_TOPIC} for it as input depth and ground truth (--no-input-depth: ground truth only)",
              file=sys.stderr)
    try:
        params = replay_params(args)
        pipeline = build_pipeline(params)
    except (ValueError, RuntimeError, OSError) as err:
        raise SetupError(str(err)) from err
    pipeline.config = dataclasses.replace(pipeline.config, depth_max_m=args.depth_max)
    backend = pipeline.backend
    evaluator = StreamEvaluator(pipeline, stride=args.stride, depth_max_m=args.depth_max)
    weights = str(params.checkpoint or f"default {params.model} weights") + (" (random if missing)"
                                                                             if params.random_init else "")
    meta = {"bag": str(args.bag), "image_topic": args.image_topic, "depth_topic": args.depth_topic,
            "input_depth": bool(args.depth_topic and not args.no_input_depth), "backend": backend.name,
            "device": backend.device, "model": backend.model_config.name, "weights": weights,
            "model_resolution": list(backend.model_config.image_size), "stride": args.stride,
            "motion_prior": pipeline.motion_prior}
    meta["flow"] = pipeline.flow_settings
    meta["interp_window"] = f"{pipeline.config.interp_window} ({pipeline.config.interp_samples} renders)"
    meta["info_topic"], meta["odom_topic"] = info_topic, odom_topic
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SetupError(f"cannot create the output folder {out}: {err}") from err
    clock = BagClock()
    processor = replay_processor(pipeline, clock, args.depth_topic, info_topic, odom_topic, params,
                                 args.image_topic)
    info = {"backend": backend.name, "model": backend.model_config.name}
    start = time.perf_counter()
    drops = _replay(args, processor, evaluator, clock, (info_topic, odom_topic), info, bag_out)
    elapsed = time.perf_counter() - start
    summary = evaluator.summary()
    summary["images_received"] = processor.health.received
    for key, counts in zip(("match_drops", "input_drops", "output_drops"), drops):
        summary[key] = dict(counts.most_common())
    summary["wall_s"] = elapsed
    # the whole replay's rate, the evaluation's own work included (pipeline_fps: the pipeline's alone)
    summary["wall_fps"] = summary["key_frames"] / elapsed if elapsed > 0 else None
    meta["output_bag"] = str(bag_out)
    write_report(out, meta, summary, evaluator.records)
    return summary


def _replay(args, processor: FrameProcessor, evaluator: StreamEvaluator, clock: BagClock, topics: tuple,
            info: dict, bag_out: Path) -> tuple[Counter, Counter, Counter]:
    """The bag's frames through the node's per-frame path into the evaluator and the output bag (``topics``: the
    CameraInfo and Odometry topics or None). Returns the counts, by reason, of the images lost in stamp matching
    (never a frame: see :func:`match_drops`), of the frames refused before the pipeline (encoding, size, bad values)
    and of those processed whose output messages could not be made."""
    info_topic, odom_topic = topics
    pipeline = processor.pipeline
    input_drops, output_drops = Counter(), Counter()
    count = 0
    with BagWriter(bag_out, storage=args.storage, discard_on_error=True) as writer:
        progress = _progress(args.max_frames, args.quiet)
        matches = replay_matches(args.bag, processor, clock, args.image_topic, args.depth_topic, info_topic,
                                 odom_topic)
        for i, matched in enumerate(islice(matches, args.max_frames)):  # (the bag is read no further)
            count = i + 1
            progress.update(1)
            if i % args.stride:  # held out: rendered by interpolation at the next key frame
                try:
                    frame, _ = processor.build(matched)
                except ValueError as err:
                    input_drops[_drop_key(str(err))] += 1
                    evaluator.skip()
                    continue
                evaluator.add(_input(frame, args.no_input_depth), frame.depth_m)
                continue
            dropped_before = pipeline.stats.frames_dropped
            pushed = []
            outcome = processor.process(matched, push=lambda f: pushed.append(f) or evaluator.add(
                _input(f, args.no_input_depth), f.depth_m))
            if not pushed:  # refused before the pipeline: the evaluator counts it, its split stays the bag's
                evaluator.skip()
            if outcome.drop is not None and outcome.result is not None:
                output_drops[_drop_key(outcome.drop)] += 1
            elif outcome.drop is not None and pipeline.stats.frames_dropped == dropped_before:
                input_drops[_drop_key(outcome.drop)] += 1  # the pipeline's own drops are in its stats
            if outcome.result is not None and outcome.drop is None:
                write_outputs(writer, processor, outcome, info)
        progress.close()
    return match_drops(processor, count), input_drops, output_drops


def match_drops(processor: FrameProcessor, matched: int) -> Counter:
    """The images given to ``processor`` that never became a match (``matched``: the matches made), by reason."""
    matcher = processor.matcher
    invalid = processor.health.received - matched - matcher.unmatched - matcher.pending
    return +Counter({"invalid header stamp": invalid,
                     "superseded or evicted while waiting for depth or a first CameraInfo": matcher.unmatched,
                     "still waiting for depth or a first CameraInfo when the replay ended": matcher.pending})


def _input(frame, no_input_depth: bool):
    """The frame the pipeline sees: without its depth when the depth topic is ground truth only."""
    return dataclasses.replace(frame, depth_m=None) if no_input_depth else frame


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
    p.add_argument("--info-topic", default=None,
                   help=f"CameraInfo topic, which the bag must have (default: {DEFAULT_INFO_TOPIC} when the bag has "
                        f"it, else none, with a warning: the pipeline then assumes a 60° FOV)")
    p.add_argument("--odom-topic", default=None,
                   help=f"nav_msgs/Odometry topic giving the camera pose of each frame, which the bag must have "
                        f"(default: {DEFAULT_ODOM_TOPIC} when the bag has it, else none)")
    p.add_argument("--no-input-depth", action="store_true",
                   help="do not feed the depth topic to the pipeline (relative depth); still use it as ground truth")
    p.add_argument("--params", default=None,
                   help="the node's parameters file (default: the package's config/nut_ros.yaml); the options "
                        "below override it")
    p.add_argument("--depth-scale", type=float, default=None, help="metres per unit of 16UC1 depth")
    p.add_argument("--depth-max", type=positive(float), default=20.0,
                   help="depth beyond this many metres is invalid")
    p.add_argument("--stride", type=positive(int), default=2,
                   help="key-frame stride k: the pipeline sees every k-th frame")
    p.add_argument("--render-times", type=float, nargs="+", default=None,
                   help="pair times rendered and published per key frame")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("--model", default=None, help="model configuration (tiny, small, streamsplat)")
    p.add_argument("--checkpoint", default=None, help="weights file (default: the shipped weights of --model)")
    p.add_argument("--random-init", action="store_true",
                   help="randomly initialised model when no weights exist (testing only)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (used with --random-init)")
    p.add_argument("--device", default=None)
    p.add_argument("--motion-prior", choices=("auto", "learned", "flow", "none"), default=None,
                   help="velocity prior (default: the params file's; auto: the model's own, learned for tiny "
                        "and small, except classical flow on a CPU torch backend)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    p.add_argument("--max-frames", type=positive(int), default=None, help="stop after this many input frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    try:
        summary = run_replay(args)
    except (SetupError, DamagedBag) as err:  # the bag's, the options' or the output folder's fault: the reason alone
        print(f"nut_ros_replay: {err}", file=sys.stderr)
        return 1
    drops = summary["pipeline"]["drops"]
    if not summary["key_frames"]:  # nothing the pipeline could use: say why instead of an empty report
        why = "; ".join(f"{n}x {reason}" for reason, n in list(summary["input_drops"].items())[:3]
                        + list(summary["match_drops"].items()))
        print(f"nut_ros_replay: no frame of {args.bag} was processed ({why or 'no input drops'}; pipeline drops: "
              f"{drops or 'none'}); report in {args.out}", file=sys.stderr)
        return 1
    if sum(drops.values()) > summary["key_frames"]:  # e.g. a camera driver that stamps every image 0
        print(f"nut_ros_replay: warning: the pipeline dropped more frames than it used ({drops}; "
              f"{summary['key_frames']} key frames): check the images' header stamps", file=sys.stderr)
    lost = sum(summary["match_drops"].values())
    print(f"{console_scores(summary)}; {summary['frames_total']} of {summary['images_received']} images matched"
          + (f" ({lost} lost in stamp matching: {summary['match_drops']})" if lost else "")
          + f"; report in {args.out}")
    return 0


def console_scores(summary: dict) -> str:
    """The summary's headline in one line: PSNR of key and held-out frames at the model resolution and in the 256²
    protocol, the held-out frames' baselines beside them, and, with ground-truth depth, the rendered depth's AbsRel
    (scale+shift aligned) beside a constant's and a ramp's on the same pixels."""
    def db(scores: dict, key: str) -> str:
        return "-" if scores[key] is None else f"{scores[key]:.2f}"

    k, m, b, fw = (summary[key] for key in ("key", "interp", "blend", "flow_warp"))
    line = (f"PSNR (model resolution / 256²): key frames {db(k, 'psnr')} / {db(k, 'psnr_256')}, held-out "
            f"{db(m, 'psnr')} / {db(m, 'psnr_256')} (blend {db(b, 'psnr')} / {db(b, 'psnr_256')}, flow warp "
            f"{db(fw, 'psnr')} / {db(fw, 'psnr_256')})")
    depth = summary.get("depth")
    if depth and depth.get("depth_abs_rel_affine") is not None:
        line += (f"; depth AbsRel, scale+shift aligned, {depth['depth_abs_rel_affine']:.3f} (constant "
                 f"{depth['depth_abs_rel_affine_constant']:.3f}, ramp {depth['depth_abs_rel_affine_ramp']:.3f}) on "
                 f"{depth['frames']['depth_abs_rel_affine']} key frames")
    return line


if __name__ == "__main__":
    sys.exit(main())
