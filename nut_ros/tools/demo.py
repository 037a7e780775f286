"""``nut_ros_demo`` (``make demo``): the node on replayed real clips, on the CPU, end to end over DDS.

1. builds an input bag from the bundled clip (``nut_ros/data/cups``, Apache-2.0, see its README: a fixed camera, RGB
   only, so there is no depth: depth from motion needs the camera to move);
2. starts ``nut_ros_node`` as its own process (default weights ``nut_ros/weights/tiny.safetensors``, ``compile:
   true`` unless ``--no-compile``: about 9 % faster frames on a 2-core CPU, after a minute or two of compiling on the
   first run);
3. plays the bag into it over DDS on loopback, on a private ROS_DOMAIN_ID, and records its outputs into a bag;
4. writes a report (frames in/out, drops, latency, throughput) and PNGs of rendered RGB and depth;
5. does the same with the bundled moving-camera clip (``nut_ros/data/desk``, TUM RGB-D fr1_rpy, CC BY 4.0, a static
   desk): colour, the Kinect's depth and the camera's motion-capture poses as odometry, with the perception stage on,
   so the node publishes metric depth, points, obstacles and the local map in the odometry frame; the report counts
   the frames with obstacles (the scene is static: none is right) and the map's Gaussians.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

import nut_ros
from nut_ros.core.geometry import Intrinsics
from nut_ros.pipeline.sequences import TUM_FR1
from nut_ros.ros import topics
from nut_ros.ros.installed import share_folders

PACKAGE = Path(nut_ros.__file__).resolve().parent
CLIP_DIR = PACKAGE / "data" / "cups"
CLIP_FPS = 30000 / 1001 / 2  # every second frame of a 29.97 frames/s video
START_NS = 1_763_683_200 * 10**9  # 2025-11-21T00:00:00Z: fixed so that runs are reproducible
FRAME_ID = "camera_optical_frame"  # the Fixed Frame of config/nut_ros.rviz
IMAGE_TOPIC, INFO_TOPIC = "/camera/image_raw", "/camera/camera_info"
# the moving-camera clip (test/bench/bundle_desk_clip.py writes it): TUM fr1_rpy frames 100, 102, ..., 158
DESK_DIR = PACKAGE / "data" / "desk"
DESK_START, DESK_STRIDE, DESK_FRAMES = 100, 2, 30
DESK_SIZE = (320, 240)  # width, height
DESK_FPS = 30.0 / DESK_STRIDE  # the Kinect's 30 frames/s
DESK_INTRINSICS = Intrinsics(*TUM_FR1[0], 640, 480).scaled(*DESK_SIZE)  # undistorted
COMPILE_READY_S = 900.0  # the start-up allowance of a compiling node
COMPILE_NOTE = ", compiled (the first run compiles the network for a minute or two before the bag plays)"


def params_file() -> Path:
    """The package's config/nut_ros.yaml: beside the package (source tree), else in the first installed share
    folder that has it (:func:`nut_ros.ros.installed.share_folders`); ``FileNotFoundError`` naming the places looked
    in."""
    candidates = list(dict.fromkeys([PACKAGE.parent / "config" / "nut_ros.yaml",
                                     *(folder / "config" / "nut_ros.yaml" for folder in share_folders("nut_ros"))]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config/nut_ros.yaml not found: looked for {', '.join(map(str, candidates))} (source "
                            "tree, ament index, AMENT_PREFIX_PATH, sys.prefix); source the workspace's setup file")


def clear_previous_run(folder: Path) -> bool:
    """Create ``folder``, removing a previous demo run's files; False (nothing removed) if it holds anything else."""
    artefacts = {"input_bag", "output_bag", "node.log", "report.json", "desk_input_bag", "desk_output_bag",
                 "desk_node.log"}
    entries = list(folder.iterdir()) if folder.is_dir() else []
    if any(e.name not in artefacts and not (e.name.startswith(("frame_", "desk_frame_")) and e.suffix == ".png")
           for e in entries):
        return False
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return True


def ping_pong(count: int, length: int) -> list[int]:
    """``count`` indices into a clip of ``length`` frames, played forwards, backwards, forwards... (no repeats)."""
    period = max(2 * length - 2, 1)
    return [min(i % period, period - i % period) for i in range(count)]


def write_clip_bag(frames_dir: Path, path: Path, fps: float = CLIP_FPS, frames: int | None = None,
                   storage: str = "mcap") -> int:
    """A bag of the JPEG frames in ``frames_dir``: rgb8 Images and CameraInfo (60° horizontal field of view).

    ``frames`` beyond the clip's length play it back and forth (a longer stream with increasing stamps).
    """
    from nut_ros.ros.bag_io import BagWriter
    from nut_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image

    clip = sorted(frames_dir.glob("*.jpg"))
    if not clip:
        raise FileNotFoundError(f"no JPEG frames in {frames_dir}")
    files = [clip[j] for j in ping_pong(frames or len(clip), len(clip))]
    with BagWriter(path, storage) as writer:
        for i, file in enumerate(files):
            rgb = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
            stamp = START_NS + round(i * 1e9 / fps)
            k = Intrinsics.from_fov(rgb.shape[1], rgb.shape[0], 60.0)
            writer.write(INFO_TOPIC, stamp, intrinsics_to_camera_info(k, stamp, FRAME_ID, "rosbags"))
            writer.write(IMAGE_TOPIC, stamp, numpy_to_image(rgb, "rgb8", stamp, FRAME_ID, "rosbags"))
    return len(files)


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """BGR uint8 picture of a depth map (near = bright, turbo colour map); NaN is black, and a map without any
    value says so (the frame had no depth input: no depth topic, and the camera has not moved enough yet)."""
    valid = np.isfinite(depth)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [2, 98])
        norm = np.clip((hi - depth) / max(hi - lo, 1e-6), 0, 1)
        out = cv2.applyColorMap(np.nan_to_num(norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
        out[~valid] = 0
    else:
        scale = depth.shape[1] / 640
        for row, text in enumerate(("no depth input:", "no depth topic, camera", "not moving enough")):
            cv2.putText(out, text, (int(20 * scale), int((40 + 40 * row) * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA)
    return out


def read_outputs(in_bag: Path, out_bag: Path) -> dict[int, tuple]:
    """By stamp: the input image, the node's rendered image and its depth image (metric ``~/depth`` where published,
    else ``~/relative/depth``)."""
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.conversions import stamp_to_ns
    from nut_ros.ros.msg_types import rosbags_typestore

    depth_topics = (topics.output_topic("depth"), topics.output_topic(topics.RELATIVE["depth"]))
    wanted = {IMAGE_TOPIC, topics.output_topic("image"), *depth_topics}
    by_stamp: dict[str, dict[int, object]] = {t: {} for t in wanted}
    for bag in (in_bag, out_bag):
        with AnyReader([bag], default_typestore=rosbags_typestore()) as reader:
            connections = [c for c in reader.connections if c.topic in wanted]
            for c, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, c.msgtype)
                by_stamp[c.topic][stamp_to_ns(msg.header.stamp)] = msg
    return {stamp: (by_stamp[IMAGE_TOPIC][stamp], render, depth) for stamp, render in
            by_stamp[topics.output_topic("image")].items()
            for depth in [by_stamp[depth_topics[0]].get(stamp, by_stamp[depth_topics[1]].get(stamp))]
            if depth is not None and stamp in by_stamp[IMAGE_TOPIC]}


def save_pictures(in_bag: Path, out_bag: Path, folder: Path, count: int = 3, prefix: str = "frame_") -> list[Path]:
    """PNG panels (input | rendered RGB | rendered depth, metric or relative) of ``count`` evenly spaced output
    frames."""
    from nut_ros.ros.conversions import image_to_depth_m, image_to_rgb

    views = read_outputs(in_bag, out_bag)
    stamps = sorted(views)
    picks = [stamps[round(i)] for i in np.linspace(0, len(stamps) - 1, min(count, len(stamps)))]
    paths = []
    for n, stamp in enumerate(picks):
        image, rendered, depth = views[stamp]
        render = cv2.cvtColor(image_to_rgb(rendered), cv2.COLOR_RGB2BGR)
        h, w = render.shape[:2]
        source = cv2.resize(cv2.cvtColor(image_to_rgb(image), cv2.COLOR_RGB2BGR), (w, h), interpolation=cv2.INTER_AREA)
        path = folder / f"{prefix}{n}_input_render_depth.png"
        cv2.imwrite(str(path), np.hstack([source, render, colorize_depth(image_to_depth_m(depth))]))
        paths.append(path)
    return paths


def perception_summary(out_bag: Path) -> dict:
    """From the node's recorded perception outputs: frames whose obstacle list was empty / not, and the Gaussians
    of the last local map published (metric or relative)."""
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    wanted = {topics.output_topic("obstacles"), topics.output_topic("map_points"),
              topics.output_topic(topics.RELATIVE["map_points"])}
    with_obstacles = without = map_gaussians = 0
    with AnyReader([out_bag], default_typestore=rosbags_typestore()) as reader:
        for c, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in wanted]):
            msg = reader.deserialize(raw, c.msgtype)
            if c.topic == topics.output_topic("obstacles"):
                with_obstacles += bool(len(msg.obstacles))
                without += not len(msg.obstacles)
            else:
                map_gaussians = int(msg.width * msg.height)
    return {"frames_with_obstacles": with_obstacles, "frames_without_obstacles": without,
            "map_gaussians": map_gaussians}


def ready_timeout_s(overrides: dict) -> float:
    """How long the node may take to come up: a compiling node builds its kernels first (about 1.5 minutes for
    ``tiny`` on the 2-core dev VM with an empty Inductor cache)."""
    from nut_ros.ros.node_session import READY_TIMEOUT_S

    return COMPILE_READY_S if overrides.get("compile") else READY_TIMEOUT_S


def ran_compiled(wanted: bool, log_path: Path) -> bool:
    """Whether the node ran its network compiled: asked to, and its log has no fallback to eager in it."""
    from nut_ros.ros.processor import COMPILE_FALLBACK

    return wanted and COMPILE_FALLBACK not in Path(log_path).read_text(errors="replace")


def summarise(result) -> dict:
    """The report's numbers from a ``SessionResult``."""
    s = result.stats
    processed = s.frames_processed if s else 0
    return {
        "frames_in": result.images_published,
        "messages_published": result.published,
        "wall_s": round(result.wall_s, 2),
        "frames_received": s.frames_received if s else 0,
        "frames_processed": processed,
        "frames_dropped_queue": s.frames_dropped_queue if s else 0,
        "frames_dropped_invalid": s.frames_dropped_invalid if s else 0,
        "latency_ms": {k: round(getattr(s, f"latency_{k}_ms"), 1) for k in ("encode", "decode", "render", "total")}
        if s else {},
        "throughput_fps": round(result.throughput_fps(), 2),
        "metric": bool(s.metric) if s else False,
        "outputs_recorded": result.recorded,
        "node_exit_code": result.exit_code,
        "notes": result.notes,
    }


def run_desk(args, config: Path, overrides: dict, remap: dict) -> dict:
    """The moving-camera part of the demo: the desk clip's bag (colour, CameraInfo, the Kinect's depth, the poses as
    odometry) through the node with ``use_odometry`` and ``perception``; its report and pictures."""
    from nut_ros.ros.node_session import run_node_on_bag
    from nut_ros.tools.make_bag import make_bag

    in_bag, out_bag = args.out / "desk_input_bag", args.out / "desk_output_bag"
    k = DESK_INTRINSICS
    bag = make_bag(DESK_DIR / "rgb", in_bag, depth_dir=DESK_DIR / "kinect", intrinsics=(k.fx, k.fy, k.cx, k.cy),
                   fps=DESK_FPS, storage=args.storage, frame_id=FRAME_ID, namespace="/camera",
                   poses=DESK_DIR / "poses.txt", max_frames=min(args.desk_frames, DESK_FRAMES))
    result = run_node_on_bag(in_bag, out_bag, args.out / "desk_node.log", IMAGE_TOPIC, config,
                             overrides | {"use_odometry": True, "perception": True, "depth_source": "topic"},
                             remap | {topics.DEPTH: bag.topics["depth"], topics.ODOMETRY: bag.topics["odom"]},
                             rate=args.rate, domain_id=args.domain_id, storage=args.storage,
                             ready_timeout_s=ready_timeout_s(overrides))
    pictures = save_pictures(in_bag, out_bag, args.out, prefix="desk_frame_")
    return (summarise(result) | perception_summary(out_bag) | {"pictures": [str(p) for p in pictures],
                                                               "compile": ran_compiled(args.compile, result.log_path)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nut_ros_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    parser.add_argument("--frames", type=int, default=60,
                        help="frames to play (the bundled clip has 60; more play it back and forth)")
    parser.add_argument("--desk-frames", type=int, default=DESK_FRAMES,
                        help=f"frames of the moving RGB-D clip to play after it (at most {DESK_FRAMES}; 0: none)")
    parser.add_argument("--rate", type=float, default=1.0, help="replay rate factor (0: as fast as possible)")
    parser.add_argument("--checkpoint", default="", help="weights (.safetensors); default: the packaged tiny weights")
    parser.add_argument("--random-init", action="store_true", help="run with random weights if none are shipped")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage format")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="run the node with compile: true (faster frames; the first run compiles for a minute or "
                             "two, later runs load the compiled code from Inductor's cache)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: private, from the pid)")
    args = parser.parse_args(argv)

    from nut_ros.pipeline.backends import default_checkpoint
    from nut_ros.ros.node_session import run_node_on_bag
    from nut_ros.ros.params import load_params_file

    try:
        config = params_file()
    except FileNotFoundError as err:
        print(f"nut_ros_demo: {err}", file=sys.stderr)
        return 2
    weights = Path(args.checkpoint) if args.checkpoint else default_checkpoint(load_params_file(config).model)
    if not weights.is_file() and not args.random_init:
        print(f"nut_ros_demo: no weights at {weights}. Pass --checkpoint PATH, or --random-init to see the "
              f"pipeline run with a randomly initialised model.", file=sys.stderr)
        return 2
    try:
        cleared = clear_previous_run(args.out)
    except OSError as err:  # --out is a file, or inside one, or not writable
        print(f"nut_ros_demo: cannot create the output folder {args.out}: {err.strerror or err}; choose another "
              f"--out", file=sys.stderr)
        return 2
    if not cleared:
        print(f"nut_ros_demo: {args.out} holds files that are not a previous demo's; choose another --out",
              file=sys.stderr)
        return 2
    in_bag, out_bag = args.out / "input_bag", args.out / "output_bag"

    frames = write_clip_bag(CLIP_DIR, in_bag, frames=args.frames, storage=args.storage)
    print(f"input bag: {in_bag} ({frames} frames from the bundled clip at {CLIP_FPS:.2f} frames/s)")
    overrides = {"input_reliability": "reliable", "diagnostics_period": 0.25, "random_init": not weights.is_file(),
                 "checkpoint": str(weights) if weights.is_file() else "", "compile": args.compile}
    remap = {topics.IMAGE: IMAGE_TOPIC, topics.CAMERA_INFO: INFO_TOPIC}
    print(f"running the node ({'weights ' + str(weights) if weights.is_file() else 'RANDOM weights'}) "
          f"on the replayed bag at rate {args.rate}{COMPILE_NOTE if args.compile else ''} ...", flush=True)
    result = run_node_on_bag(in_bag, out_bag, args.out / "node.log", IMAGE_TOPIC, config, overrides, remap,
                             rate=args.rate, domain_id=args.domain_id, storage=args.storage,
                             ready_timeout_s=ready_timeout_s(overrides))
    report = summarise(result) | {"weights": str(weights) if weights.is_file() else "random init",
                                          "rate": args.rate, "compile": ran_compiled(args.compile, result.log_path)}
    pictures = save_pictures(in_bag, out_bag, args.out)
    report["pictures"] = [str(p) for p in pictures]
    desk = None
    if args.desk_frames > 0:
        print(f"moving camera: {min(args.desk_frames, DESK_FRAMES)} frames of the bundled desk clip (colour, Kinect "
              f"depth, poses as odometry; perception on) ...", flush=True)
        desk = run_desk(args, config, overrides, remap)
        report["desk"] = desk
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    lat = report["latency_ms"]
    print(f"output bag: {out_bag}  ({', '.join(f'{t}: {n}' for t, n in sorted(result.recorded.items()))})")
    print(f"frames: {frames} in, {report['frames_received']} received, {report['frames_processed']} processed, "
          f"{report['frames_dropped_queue']} dropped (queue), {report['frames_dropped_invalid']} dropped (invalid)")
    print(f"latency (mean ms): encode {lat.get('encode')}, decode {lat.get('decode')}, render {lat.get('render')}, "
          f"total {lat.get('total')}; throughput {report['throughput_fps']} frames/s "
          f"(compile: {str(report['compile']).lower()})")
    print(f"pictures (input | rendered RGB | rendered depth): {', '.join(map(str, pictures))}")
    if desk is not None:
        print(f"moving camera, RGB-D + odometry: {desk['frames_processed']} of {desk['frames_in']} frames processed "
              f"({desk['throughput_fps']} frames/s); obstacles on {desk['frames_with_obstacles']} of "
              f"{desk['frames_with_obstacles'] + desk['frames_without_obstacles']} frames (a static desk: 0 is "
              f"right); local map {desk['map_gaussians']} Gaussians in the odometry frame")
        print(f"pictures (input | rendered RGB | rendered metric depth): {', '.join(desk['pictures'])}")
    print(f"report: {args.out / 'report.json'}; node log: {result.log_path}")
    ok = result.exit_code == 0 and report["frames_processed"] > 0
    if desk is not None and (desk["node_exit_code"] != 0 or desk["frames_processed"] == 0):
        print(f"nut_ros_demo: the moving-camera run FAILED (node exit code {desk['node_exit_code']}, see "
              f"{args.out / 'desk_node.log'})", file=sys.stderr)
        ok = False
    if not ok:
        print(f"nut_ros_demo: FAILED (node exit code {result.exit_code}, see {result.log_path})", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
