"""Readers of RGB-D sequences with camera poses (image folders, no ROS) for the evaluation suite: 7-Scenes, TUM RGB-D.

Each yields :class:`SequenceFrame`: the pipeline's :class:`~nut_ros.pipeline.types.Frame` (RGB, stamp, intrinsics,
``camera_pose`` = T_world<-camera optical frame in metres) and the ground-truth depth in metres (NaN invalid, at the
depth image's own size, which may differ from the RGB's). Layouts are those of ``../shared/data/CATALOG.md``.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nut_ros.core.geometry import Intrinsics
from nut_ros.core.rotations import quaternion_pose
from nut_ros.geometry.rectify import Lens, lens_maps
from nut_ros.pipeline.types import Frame

SEVEN_SCENES_HZ = 30.0


@dataclass
class SequenceFrame:
    frame: Frame
    depth_m: np.ndarray  # [h, w] float32 ground truth, NaN where invalid


def depth_mm(path: Path) -> np.ndarray:
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    d[(d <= 0) | (d >= 65.0)] = np.nan
    return d


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def seven_scenes(folder: Path, indices) -> Iterator[SequenceFrame]:
    """7-Scenes frames ``frame-NNNNNN`` (30 Hz, no stamps; K from ``camera-intrinsics.txt``; depth is not
    pixel-registered to the colour image, see CATALOG.md)."""
    folder = Path(folder)
    K = np.loadtxt(folder / "camera-intrinsics.txt")
    for i in indices:
        stem = folder / f"frame-{i:06d}"
        rgb = read_rgb(Path(f"{stem}.color.jpg"))
        k = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], rgb.shape[1], rgb.shape[0])
        frame = Frame(rgb, round(i * 1e9 / SEVEN_SCENES_HZ), intrinsics=k,
                      camera_pose=np.loadtxt(f"{stem}.pose.txt"))
        yield SequenceFrame(frame, depth_mm(Path(f"{stem}.depth.png")))


#: TUM freiburg1 colour camera (640x480): fx, fy, cx, cy and the distortion d0..d4
TUM_FR1 = ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633))


def undistort_tum(image: np.ndarray, interpolation: int) -> np.ndarray:
    """A TUM fr1 image (any size of the 640x480 view: colour, or depth with ``INTER_NEAREST``) undistorted onto the
    pinhole camera of the same intrinsics (:data:`TUM_FR1`), 0 outside the distorted view."""
    h, w = image.shape[:2]
    return cv2.remap(image, *_tum_maps(h, w), interpolation, borderValue=0)


@functools.lru_cache(maxsize=4)
def _tum_maps(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    (fx, fy, cx, cy), dist = TUM_FR1
    k = tuple((np.diag([w / 640, h / 480, 1.0]) @ np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])).ravel())
    return lens_maps(Lens("plumb_bob", k, dist, tuple(np.eye(3).ravel()), k, w, h))


def tum_pose_at(groundtruth: np.ndarray, stamp: float) -> np.ndarray | None:
    """The 4x4 pose at ``stamp`` from TUM ``groundtruth.txt`` rows (time tx ty tz qx qy qz qw, 100 Hz): position
    interpolated linearly, rotation by normalised lerp along the shorter arc; None outside the rows' times."""
    times = groundtruth[:, 0]
    if not times[0] <= stamp <= times[-1]:
        return None
    j = int(np.clip(np.searchsorted(times, stamp), 1, len(times) - 1))
    a = (stamp - times[j - 1]) / max(times[j] - times[j - 1], 1e-9)
    q0, q1 = groundtruth[j - 1, 4:8], groundtruth[j, 4:8]
    q1 = q1 if np.dot(q0, q1) >= 0 else -q1
    return quaternion_pose((1 - a) * groundtruth[j - 1, 1:4] + a * groundtruth[j, 1:4], (1 - a) * q0 + a * q1)


def tum_rows(folder: Path) -> list[list[str]]:
    """The rows of a TUM sequence's ``frames.txt`` (index, colour stamp, ...), comments left out."""
    return [line.split() for line in (Path(folder) / "frames.txt").read_text().splitlines() if not line.startswith("#")]


def tum_groundtruth(folder: Path) -> np.ndarray:
    """A TUM sequence's ``groundtruth.txt`` rows (time tx ty tz qx qy qz qw) for :func:`tum_pose_at`."""
    return np.array([[float(v) for v in line.split()]
                     for line in (Path(folder) / "groundtruth.txt").read_text().splitlines()
                     if line and not line.startswith("#")])


def tum_depth(folder: Path, index: str) -> np.ndarray:
    """The Kinect depth of frame ``index`` in metres, undistorted as the colour (nearest), NaN where there is none."""
    depth = undistort_tum(np.nan_to_num(depth_mm(Path(folder) / "depth" / f"{index}.png")), cv2.INTER_NEAREST)
    depth[depth <= 0] = np.nan
    return depth


def tum_frame_count(folder: Path) -> int:
    return len(tum_rows(folder))


def tum(folder: Path, indices) -> Iterator[SequenceFrame]:
    """TUM RGB-D fr1 frames, undistorted (colour bilinear, depth nearest) so that the pinhole model holds; poses
    from ``groundtruth.txt`` interpolated to the colour stamps (:func:`tum_pose_at`)."""
    folder = Path(folder)
    rows, gt = tum_rows(folder), tum_groundtruth(folder)
    fx, fy, cx, cy = TUM_FR1[0]
    for i in indices:
        index, stamp = rows[i][0], float(rows[i][1])
        pose = tum_pose_at(gt, stamp)
        rgb = undistort_tum(read_rgb(folder / "rgb" / f"{index}.jpg"), cv2.INTER_LINEAR)
        depth = tum_depth(folder, index)
        k = Intrinsics(fx, fy, cx, cy, rgb.shape[1], rgb.shape[0])
        yield SequenceFrame(Frame(rgb, round(stamp * 1e9), intrinsics=k, camera_pose=pose), depth)
