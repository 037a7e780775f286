"""Build a small camera rosbag2 from a video file or an image folder (``nut_ros_make_bag``).

Writes sensor_msgs/Image (rgb8) or CompressedImage (jpeg), optional 16UC1 depth (or compressedDepth PNG) from a
folder of 16-bit PNG/PGM files (millimetres, or ``--depth-scale`` metres per unit; the bag holds millimetres; each
depth image before its colour image) paired with the images by sorted order, and CameraInfo for every frame.
With ``--poses`` it also writes the camera poses as nav_msgs/Odometry on ``<namespace>/odom``: ``header.frame_id``
is ``--world-frame``, ``child_frame_id`` is the camera optical frame (``--frame-id``), so the node's
``camera_mount`` stays all zero (``use_odometry: true``). Poses are camera-to-world 4x4 matrices paired with the
source frames by index (like depth): 7-Scenes ``frame-XXXXXX.pose.txt`` files, a text file of 4x4 matrices, or a
TUM trajectory (``stamp tx ty tz qx qy qz qw``, one line per source frame; its stamps are not used). Depth files and
poses must number the source's images, one each (counted over the whole folder, before ``--start``, ``--stride`` and
``--max-frames`` pick frames); other counts are refused.
Header stamps and bag times are ``start + source_index / fps``. Needs no ROS installation (rosbags messages).

    nut_ros_make_bag clip.mp4 out_bag --max-frames 60 --stride 2 --resize 512x288 --compressed
    nut_ros_make_bag color/ out_bag --depth depth/ --intrinsics 518,519,325.5,253.5 --fps 5 --storage sqlite3
    nut_ros_make_bag seq-01/ out_bag --pattern "*.color.png" --poses seq-01/ --depth seq-01/ \
--depth-pattern "*.depth.png"
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from nut_ros.core.choices import positive
from nut_ros.core.geometry import Intrinsics, resize_nearest, same_aspect
from nut_ros.ros.bag_io import STORAGES, BagWriter
from nut_ros.ros.camera_info import intrinsics_to_camera_info
from nut_ros.ros.compressed import compress_depth, compress_image
from nut_ros.ros.images import numpy_to_image
from nut_ros.ros.odometry import pose_to_odometry, read_poses

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff"}
DEPTH_SUFFIXES = {".png", ".pgm", ".tif", ".tiff"}
START_NS = 1_700_000_000 * 1_000_000_000


@dataclass
class BagSummary:
    path: Path
    frames: int
    width: int
    height: int
    intrinsics: Intrinsics
    topics: dict[str, str]
    notes: list[str]  # what the user should know about the source (e.g. a video that ended early)


def natural_key(path: Path) -> list:
    """Sort key that orders ``2.png`` before ``10.png``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def list_files(folder: Path, suffixes: set[str], pattern: str = "*") -> list[Path]:
    files = sorted((p for p in folder.glob(pattern) if p.suffix.lower() in suffixes and p.is_file()), key=natural_key)
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} with suffix {sorted(suffixes)} in {folder}")
    return files


def iter_source(source: Path, pattern: str, stride: int, max_frames: int | None, start: int = 0,
                notes: list[str] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(source index, RGB uint8)`` of every ``stride``-th frame of a video file or image folder from ``start``.
    A video that stops decoding before the frame count its container declares (truncated or damaged) adds a line
    to ``notes``."""
    emitted = 0
    if source.is_dir():
        for index, path in enumerate(list_files(source, IMAGE_SUFFIXES, pattern)):
            if index < start or (index - start) % stride:
                continue
            if max_frames is not None and emitted >= max_frames:
                return
            raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)  # EXIF orientation applied
            if raw is None:
                raise ValueError(f"cannot read image {path}")
            if raw.dtype != np.uint8 and raw.ndim == 2:  # a depth map among the colour frames (7-Scenes' layout)
                raise ValueError(f"{path} is a one-channel {raw.dtype} image (depth?), not a camera frame: choose "
                                 "the colour images with --pattern")
            emitted += 1  # 8-bit BGR as read; grey, alpha or 16-bit colour converted by OpenCV's own rules
            bgr = raw if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3 else cv2.imread(
                str(path), cv2.IMREAD_COLOR)
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {source}")
    try:
        index = 0
        while max_frames is None or emitted < max_frames:
            ok, bgr = capture.read()
            if not ok:
                declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
                if declared > index and notes is not None:
                    notes.append(f"{source} declares {declared} frames but only {index} could be decoded "
                                 "(truncated or damaged file?)")
                break
            if index >= start and (index - start) % stride == 0:
                emitted += 1
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


@dataclass
class SourceFrame:
    """One frame as a bag holds it: source index, header stamp, RGB at the bag's size and that size's camera."""

    index: int
    stamp_ns: int
    rgb: np.ndarray
    camera: Intrinsics
    source_shape: tuple[int, int]  # (h, w) before the resize


def source_frames(source: Path, *, pattern: str = "*", intrinsics: tuple[float, float, float, float] | None = None,
                  hfov_deg: float = 60.0, max_frames: int | None = None, stride: int = 1, start: int = 0,
                  resize: tuple[int, int] | None = None, fps: float | None = None,
                  notes: list[str] | None = None) -> Iterator[SourceFrame]:
    """The frames :func:`make_bag` writes (``intrinsics`` of the source resolution; stamps
    ``START_NS + index / fps``, the video's rate or 30 Hz by default), without writing a bag; ``notes`` as
    :func:`iter_source`."""
    fps = fps or video_fps(source) or 30.0
    cam = None
    for index, rgb in iter_source(source, pattern, stride, max_frames, start, notes):
        src_h, src_w = rgb.shape[:2]
        if cam is not None and (src_w, src_h) != (native.width, native.height):  # one camera per bag
            raise ValueError(f"frame {index} is {src_w}x{src_h}, the first was {native.width}x{native.height}: a "
                             "bag holds one camera")
        if cam is None:
            native = (Intrinsics(*intrinsics, src_w, src_h) if intrinsics
                      else Intrinsics.from_fov(src_w, src_h, hfov_deg))
            cam = native.scaled(*resize) if resize else native
        if resize:
            rgb = cv2.resize(rgb, resize, interpolation=cv2.INTER_AREA)
        yield SourceFrame(index, START_NS + round(index * 1e9 / fps), rgb, cam, (src_h, src_w))


def video_fps(source: Path) -> float | None:
    if source.is_dir():
        return None
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else None


def read_depth_mm(path: Path, depth_scale: float = 0.001) -> np.ndarray:
    """A 1-channel 16-bit depth image of ``depth_scale`` metres per unit, in millimetres (REP 118's 16UC1; 0 stays
    unknown, as does a depth beyond 65.535 m)."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"depth {path}: expected a 1-channel 16-bit image")
    if depth_scale == 0.001:
        return depth
    mm = depth * (depth_scale * 1000.0)
    return np.where(mm <= 65535, np.round(mm), 0).astype(np.uint16)


def bag_depth(path: Path, source_shape: tuple[int, int], resize: tuple[int, int] | None,
              depth_scale: float = 0.001) -> np.ndarray:
    """The depth image of ``path`` (``depth_scale`` metres per unit) in millimetres, paired with a source image of
    ``source_shape`` (h, w), as :func:`make_bag` writes it: resized by nearest neighbour, pixel centres mapped as the
    intrinsics are (:func:`~nut_ros.core.geometry.resize_nearest`), when the image was resized. A depth image of
    another size with the image's aspect ratio (TUM's 320x240 beside 640x480 colour, say) is kept at its size
    otherwise: the node resizes it onto the image; another aspect ratio is not aligned to the image (ValueError)."""
    mm = read_depth_mm(path, depth_scale)
    (h, w), (dh, dw) = source_shape, mm.shape
    if not same_aspect(dw, dh, w, h):
        raise ValueError(f"depth {path} is {dw}x{dh}, image {w}x{h}: another aspect ratio, not aligned to the image")
    return resize_nearest(mm, *resize) if resize else mm


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT of at least 1x1, got {text!r}")
    return int(match[1]), int(match[2])


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(map(math.isfinite, values)) or min(values[:2]) <= 0:
        raise argparse.ArgumentTypeError(f"intrinsics must be fx,fy,cx,cy (finite, fx and fy > 0), got {text!r}")
    return values[0], values[1], values[2], values[3]


def field_of_view(text: str) -> float:
    value = positive(float)(text)
    if value >= 180:
        raise argparse.ArgumentTypeError(f"a pinhole's field of view is below 180 degrees, got {text!r}")
    return value


PAIRING = {"poses": "poses pair with the images by index, one each (a trajectory at its own rate, such as TUM's "
                    "100 Hz groundtruth.txt, must be associated with the image stamps first)",
           "depth files": "depth files pair with the images by sorted order, one each (choose them with "
                          "--depth-pattern, or associate them with the image stamps first)"}


def check_paired(kind: str, path: str | Path, count: int, images: int, spare: int = 0) -> None:
    """Refuse ``count`` poses or depth files (``kind``, a key of :data:`PAIRING`) at ``path`` unless they pair one
    each with ``images`` source images; up to ``spare`` more pass (a video's last frames, skipped by the stride, are
    not counted)."""
    if not images <= count <= images + spare:
        raise ValueError(f"{path} has {count} {kind} for {images} images: {PAIRING[kind]}")


def make_bag(source: str | Path, output: str | Path, *, depth_dir: str | Path | None = None, pattern: str = "*",
             depth_pattern: str = "*", intrinsics: tuple[float, float, float, float] | None = None,
             hfov_deg: float = 60.0, max_frames: int | None = None, stride: int = 1, start: int = 0,
             resize: tuple[int, int] | None = None, fps: float | None = None, compressed: bool = False,
             storage: str = "mcap", frame_id: str = "camera_optical_frame", namespace: str = "/camera",
             jpeg_quality: int = 90, poses: str | Path | None = None, world_frame: str = "world",
             depth_scale: float = 0.001) -> BagSummary:
    """Write the bag and return a summary. ``intrinsics`` (fx, fy, cx, cy) are of the source resolution.

    The bag holds every ``stride``-th source frame from index ``start``; stamps keep the source timing. Depth files
    and poses must number the source's images (ValueError): a folder's are counted before anything is written, a
    video's as it is read to its end (not when ``max_frames`` stops it first).
    """
    source, output = Path(source), Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists: a bag is written to a new folder")
    if stride < 1 or start < 0:
        raise ValueError(f"need stride >= 1 and start >= 0, got stride {stride}, start {start}")
    if not depth_scale > 0:
        raise ValueError(f"depth_scale must be > 0 (metres per depth unit), got {depth_scale}")
    depth_files = list_files(Path(depth_dir), DEPTH_SUFFIXES, depth_pattern) if depth_dir else None
    camera_poses = read_poses(poses) if poses else None
    if source.is_dir():  # pairing by index: every image of the folder counts, whatever the options pick
        images = len(list_files(source, IMAGE_SUFFIXES, pattern))
        if depth_files:
            check_paired("depth files", depth_dir, len(depth_files), images)
        if camera_poses:
            check_paired("poses", poses, len(camera_poses), images)
    ns = namespace.rstrip("/")
    topics = {"image": f"{ns}/image_raw" + ("/compressed" if compressed else ""), "info": f"{ns}/camera_info"}
    if depth_files:
        topics["depth"] = f"{ns}/depth" + ("/compressedDepth" if compressed else "")
    if camera_poses:
        topics["odom"] = f"{ns}/odom"
    notes: list[str] = []
    frames = source_frames(source, pattern=pattern, intrinsics=intrinsics, hfov_deg=hfov_deg, max_frames=max_frames,
                           stride=stride, start=start, resize=resize, fps=fps, notes=notes)
    count, cam = 0, None
    with BagWriter(output, storage, discard_on_error=True) as bag:  # no partial bag left to block the next attempt
        for frame in frames:
            index, stamp, rgb, cam = frame.index, frame.stamp_ns, frame.rgb, frame.camera
            if compressed:
                image = compress_image(rgb, "rgb8", "jpeg", jpeg_quality, stamp, frame_id, "rosbags")
            else:
                image = numpy_to_image(rgb, "rgb8", stamp, frame_id, "rosbags")
            if camera_poses:  # before the image, as a robot's odometry arrives before its camera frames
                if index >= len(camera_poses):
                    raise ValueError(f"{poses} has {len(camera_poses)} poses, fewer than the images")
                bag.write(topics["odom"], stamp, pose_to_odometry(camera_poses[index], stamp, world_frame, frame_id,
                                                                  "rosbags"))
            if depth_files:  # before the image too: a node that takes depth when it comes has it with the image
                if index >= len(depth_files):
                    raise ValueError(f"depth folder has {len(depth_files)} files, fewer than the images")
                mm = bag_depth(depth_files[index], frame.source_shape, resize, depth_scale)
                depth = (compress_depth(mm, "16UC1", stamp_ns=stamp, frame_id=frame_id, flavor="rosbags") if compressed
                         else numpy_to_image(mm, "16UC1", stamp, frame_id, "rosbags"))
                bag.write(topics["depth"], stamp, depth)
            bag.write(topics["image"], stamp, image)
            bag.write(topics["info"], stamp, intrinsics_to_camera_info(cam, stamp, frame_id, "rosbags"))
            count += 1
        if count == 0:
            raise ValueError(f"no frames read from {source}")
        if not source.is_dir() and count != max_frames:  # a video read to its end: its images are counted
            for kind, path, paired in (("depth files", depth_dir, depth_files), ("poses", poses, camera_poses)):
                if paired:
                    check_paired(kind, path, len(paired), index + 1, stride - 1)
    return BagSummary(output, count, cam.width, cam.height, cam, topics, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nut_ros_make_bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="video file (anything cv2.VideoCapture reads) or image folder")
    parser.add_argument("output", help="output bag folder (must not exist)")
    parser.add_argument("--pattern", default="*", help="glob for images inside a folder source (default: *)")
    parser.add_argument("--depth", help="folder of 16-bit depth images, paired by sorted order (units: --depth-scale)")
    parser.add_argument("--depth-scale", type=positive(float), default=0.001,
                        help="metres per depth unit (default 0.001: millimetres; raw TUM RGB-D PNGs: 0.0002); the "
                        "bag holds millimetres (16UC1)")
    parser.add_argument("--depth-pattern", default="*", help="glob for depth files (default: *)")
    parser.add_argument("--intrinsics", type=parse_intrinsics, help="fx,fy,cx,cy of the source resolution")
    parser.add_argument("--hfov", type=field_of_view, default=60.0,
                        help="horizontal FOV in degrees used without --intrinsics")
    parser.add_argument("--max-frames", type=positive(int), help="stop after this many frames")
    parser.add_argument("--stride", type=positive(int), default=1, help="keep every n-th source frame")
    parser.add_argument("--start", type=int, default=0, help="first source frame (0-based)")
    parser.add_argument("--resize", type=parse_size, help="output size WIDTHxHEIGHT")
    parser.add_argument("--fps", type=positive(float), help="source frame rate (default: the video's, else 30)")
    parser.add_argument("--compressed", action="store_true", help="jpeg CompressedImage (+ compressedDepth PNG)")
    parser.add_argument("--poses", help="camera-to-world poses paired by index: folder of frame-XXXXXX.pose.txt, "
                        "a text file of 4x4 matrices, or a TUM trajectory; written as nav_msgs/Odometry")
    parser.add_argument("--world-frame", default="world", help="header.frame_id of the odometry (default: world)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    parser.add_argument("--frame-id", default="camera_optical_frame")
    parser.add_argument("--namespace", default="/camera", help="topic prefix (default: /camera)")
    args = parser.parse_args(argv)
    try:
        summary = make_bag(args.source, args.output, depth_dir=args.depth, pattern=args.pattern,
                           depth_pattern=args.depth_pattern, intrinsics=args.intrinsics, hfov_deg=args.hfov,
                           max_frames=args.max_frames, stride=args.stride, start=args.start, resize=args.resize,
                           fps=args.fps, compressed=args.compressed, storage=args.storage, frame_id=args.frame_id,
                           namespace=args.namespace, poses=args.poses, world_frame=args.world_frame,
                           depth_scale=args.depth_scale)
    except (ValueError, OSError) as err:  # the input's fault: its reason, without a traceback
        print(f"nut_ros_make_bag: {err}", file=sys.stderr)
        return 1
    i = summary.intrinsics
    print(f"wrote {summary.frames} frames ({summary.width}x{summary.height}, fx={i.fx:.1f} fy={i.fy:.1f} "
          f"cx={i.cx:.1f} cy={i.cy:.1f}) to {summary.path}")
    for name, topic in summary.topics.items():
        print(f"  {name}: {topic}")
    for note in summary.notes:
        print(f"nut_ros_make_bag: warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
