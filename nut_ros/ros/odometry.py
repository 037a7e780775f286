"""Camera poses from odometry, free of ROS: ``T_world<-camera_optical`` (4x4 float64, metres) at an image stamp.

``nav_msgs/Odometry`` gives the pose of its ``child_frame_id`` (the robot base, or the camera itself) in
``header.frame_id`` (the world/odom frame). The camera's mounting on that child frame, ``T_child<-camera_optical``,
comes from the ``camera_mount`` parameter ``[x, y, z, roll, pitch, yaw]`` (metres, radians; rotation
``Rz(yaw) Ry(pitch) Rx(roll)`` as in ``static_transform_publisher``) or from TF. The pose at an image stamp is
interpolated between the two odometry messages around it (linear in translation, spherical in rotation).
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from nut_ros.core.rotations import matrix_to_quaternion, quaternion_pose, quaternion_to_matrix


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def mount_matrix(mount: list[float]) -> np.ndarray:
    """``T_child<-camera_optical`` from ``[x, y, z, roll, pitch, yaw]``."""
    if len(mount) != 6 or not np.all(np.isfinite(mount)):
        raise ValueError(f"camera_mount must be 6 finite numbers [x, y, z, roll, pitch, yaw], got {mount!r}")
    t = np.eye(4)
    t[:3, :3] = rpy_matrix(*mount[3:])
    t[:3, 3] = mount[:3]
    return t


def pose_matrix(position, orientation) -> np.ndarray:
    """4x4 from a position ``(x, y, z)`` and a quaternion ``(x, y, z, w)``."""
    t = quaternion_pose(position, orientation)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"invalid position {tuple(position)}")
    return t


def odometry_pose(msg: Any) -> np.ndarray:
    """``T_frame<-child`` of a ``nav_msgs/Odometry`` (either message flavor)."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    return pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def _slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
    else:
        theta = np.arccos(dot)
        q = (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


def interpolate_pose(t0: np.ndarray, t1: np.ndarray, s: float) -> np.ndarray:
    """Pose a fraction ``s`` of the way from ``t0`` to ``t1``."""
    q = _slerp(matrix_to_quaternion(t0[:3, :3]), matrix_to_quaternion(t1[:3, :3]), s)
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(q)
    out[:3, 3] = (1 - s) * t0[:3, 3] + s * t1[:3, 3]
    return out


class PoseBuffer:
    """Recent stamped poses ``T_world<-child``; ``camera_pose(stamp)`` interpolates and applies the mount.

    A stamp before the first or after the last buffered pose by more than ``tolerance_ns`` has no pose (the
    odometry is late or missing): ``None``. Out-of-order messages are inserted in stamp order. Thread-safe: the node
    adds poses on its executor thread and reads them on its worker thread.
    """

    def __init__(self, mount: np.ndarray | None = None, capacity: int = 200, tolerance_ns: int = 50_000_000):
        self.mount = np.eye(4) if mount is None else np.asarray(mount, dtype=np.float64)
        self.tolerance_ns = tolerance_ns
        self._stamps: deque[int] = deque(maxlen=capacity)
        self._poses: deque[np.ndarray] = deque(maxlen=capacity)
        self._lock = threading.Lock()  # a stamp and its pose are added and read together

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, pose: np.ndarray) -> None:
        with self._lock:
            self._add(stamp_ns, pose)

    def _add(self, stamp_ns: int, pose: np.ndarray) -> None:
        i = bisect.bisect_right(self._stamps, stamp_ns)
        if i == len(self._stamps):
            self._stamps.append(stamp_ns)
            self._poses.append(pose)
            return
        if len(self._stamps) == self._stamps.maxlen:  # full: the oldest goes (or the new one, if it is older)
            if i == 0:
                return
            self._stamps.popleft()
            self._poses.popleft()
            i -= 1
        self._stamps.insert(i, stamp_ns)
        self._poses.insert(i, pose)

    def camera_pose(self, stamp_ns: int) -> np.ndarray | None:
        """``T_world<-camera_optical`` at ``stamp_ns``, or None when the odometry does not cover it."""
        with self._lock:
            base = self._base(stamp_ns)
        return None if base is None else base @ self.mount

    def _base(self, stamp_ns: int) -> np.ndarray | None:
        """``T_world<-child`` at ``stamp_ns`` (interpolated), or None."""
        if not self._stamps:
            return None
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            return self._poses[i]
        if i == 0:
            return self._poses[0] if self._stamps[0] - stamp_ns <= self.tolerance_ns else None
        if i == len(self._stamps):
            return self._poses[-1] if stamp_ns - self._stamps[-1] <= self.tolerance_ns else None
        s0, s1 = self._stamps[i - 1], self._stamps[i]
        return interpolate_pose(self._poses[i - 1], self._poses[i], (stamp_ns - s0) / (s1 - s0))


def pose_to_odometry(pose: np.ndarray, stamp_ns: int, frame_id: str, child_frame_id: str, flavor: str = "auto"):
    """``nav_msgs/Odometry`` holding ``pose`` (``T_frame<-child``), zero twist, unknown covariances (all zero)."""
    from nut_ros.ros.msg_types import make_header, msg_class

    m = lambda name: msg_class(f"geometry_msgs/msg/{name}", flavor)  # noqa: E731
    x, y, z, w = matrix_to_quaternion(pose[:3, :3])
    tx, ty, tz = (float(v) for v in pose[:3, 3])
    zero = m("Vector3")(x=0.0, y=0.0, z=0.0)
    return msg_class("nav_msgs/msg/Odometry", flavor)(
        header=make_header(stamp_ns, frame_id, flavor), child_frame_id=child_frame_id,
        pose=m("PoseWithCovariance")(pose=m("Pose")(position=m("Point")(x=tx, y=ty, z=tz),
                                                    orientation=m("Quaternion")(x=float(x), y=float(y), z=float(z),
                                                                                w=float(w))),
                                     covariance=np.zeros(36)),
        twist=m("TwistWithCovariance")(twist=m("Twist")(linear=zero, angular=zero), covariance=np.zeros(36)))


def read_poses(path: str | Path) -> list[np.ndarray]:
    """Camera-to-world 4x4 poses, one per frame in order, from one of:

    * a folder of 7-Scenes ``frame-XXXXXX.pose.txt`` files (a 4x4 matrix each);
    * a text file of 4x4 matrices (4 rows of 4 numbers per frame, or 16 numbers per line);
    * a TUM trajectory (``stamp tx ty tz qx qy qz qw`` per line; ``#`` comments).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("frame-*.pose.txt"))
        if not files:
            raise FileNotFoundError(f"no frame-XXXXXX.pose.txt files in {path}")
        return [_matrix(np.loadtxt(f, dtype=np.float64), f) for f in files]
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    widths = {len(r) for r in rows}
    if widths == {8}:  # TUM
        return [pose_matrix([float(v) for v in r[1:4]], [float(v) for v in r[4:8]]) for r in rows]
    values = np.array([[float(v) for v in r] for r in rows]) if widths in ({4}, {16}) else None
    if values is None or values.size % 16:
        raise ValueError(f"{path}: expected TUM lines (8 numbers), 4x4 matrices (4 rows of 4) or 16 numbers per line")
    return [_matrix(m, path) for m in values.reshape(-1, 4, 4)]


def _matrix(m: np.ndarray, source) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64).reshape(4, 4)
    if not np.all(np.isfinite(m)) or not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise ValueError(f"{source}: not a rigid 4x4 pose (last row {m[3].tolist()})")
    return m
