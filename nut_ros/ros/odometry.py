"""Camera poses from odometry, free of ROS: ``T_world<-camera_optical`` (4x4 float64, metres) at an image stamp.

``nav_msgs/Odometry`` gives the pose of its ``child_frame_id`` (the robot base, or the camera itself) in
``header.frame_id`` (the world/odom frame). The camera's mounting on that child frame, ``T_child<-camera_optical``,
comes from the ``camera_mount`` parameter ``[x, y, z, roll, pitch, yaw]`` (metres, radians; rotation
``Rz(yaw) Ry(pitch) Rx(roll)`` as in ``static_transform_publisher``) or from TF. The pose at an image stamp is
interpolated between the two odometry messages around it (linear in translation, spherical in rotation), when they
are at most 0.5 s apart (``PoseBuffer``).
"""
from __future__ import annotations

import bisect
import threading
import time
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


#: the mount of odometry that is the camera's own
IDENTITY = np.eye(4)
IDENTITY.flags.writeable = False


class PoseBuffer:
    """Recent stamped poses ``T_world<-child``; ``camera_pose(stamp)`` interpolates and applies the mount.

    Poses are kept by time: those stamped within ``window_ns`` (10 s) of the newest, at most ``capacity`` of them
    (20000: odometry at 2 kHz over the whole window, 1.3 MB; at a higher rate the window shrinks). Out-of-order
    messages are inserted in stamp order. A stamp before the first or after the last pose by more than
    ``tolerance_ns`` (50 ms) has no pose (the odometry is late or missing): None; nor has a stamp between two poses
    more than ``max_gap_ns`` (0.5 s) apart (an odometry dropout is not bridged) unless it lies within
    ``tolerance_ns`` of one of them (that pose, unchanged).

    A message stamped more than ``max_gap_ns`` before the newest pose means the stamps jumped back (a simulation
    reset, a looping bag): the buffer is cleared and the message kept (counted in ``resets``, said in the note
    ``add`` returns). Unless the newest pose was itself stamped more than ``max_gap_ns`` after the one before it and
    the message goes on from that one: then the newest pose was a glitch stamped ahead and is dropped instead
    (counted in ``rejected``, said in the note); meanwhile it bracketed no image, the gap being too long.

    Odometry often arrives a little after the image it brackets (another sensor, another process): ``wait_covered``
    waits, bounded, for the pose at or after an image's stamp, so that the pose is interpolated rather than held.

    ``mount`` None means not known yet (until TF has it): no stamp has a pose and nothing is buffered (counted in
    ``rejected``). ``set_mount`` to another mount clears the buffer, so that no pose pair spans two mounts.
    Thread-safe: the node adds poses on its executor thread and reads them on its worker thread.
    """

    def __init__(self, mount: np.ndarray | None = IDENTITY, capacity: int = 20_000, tolerance_ns: int = 50_000_000,
                 window_ns: int = 10_000_000_000, max_gap_ns: int = 500_000_000):
        self.mount = None if mount is None else np.asarray(mount, dtype=np.float64)
        self.capacity, self.tolerance_ns = capacity, tolerance_ns
        self.window_ns, self.max_gap_ns = window_ns, max_gap_ns
        self._stamps: deque[int] = deque()
        self._poses: deque[np.ndarray] = deque()
        self.rejected = 0  # messages dropped: glitches, and all while the mount is not known
        self.resets = 0  # times the buffer was cleared (stamps jumping back, a mount change, ``clear``)
        self._lock = threading.Lock()  # a stamp and its pose are added and read together
        self._added = threading.Condition(self._lock)  # notified with every pose buffered

    def __len__(self) -> int:
        return len(self._stamps)

    def set_mount(self, mount: np.ndarray | None) -> bool:
        """Use ``mount`` (None: not known) from now on; True when it replaced another known mount, which clears the
        buffer (counted in ``resets``)."""
        mount = None if mount is None else np.asarray(mount, dtype=np.float64)
        with self._lock:
            changed = self.mount is not None and (mount is None or not np.allclose(mount, self.mount, atol=1e-9))
            if changed:
                self._clear()
            self.mount = mount
        return changed

    def clear(self) -> None:
        """Forget every pose (counted in ``resets``)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()
        self.resets += 1

    def add(self, stamp_ns: int, pose: np.ndarray) -> str | None:
        """Buffer a pose; a note when this dropped a glitch or cleared the buffer (see the class)."""
        with self._lock:
            if self.mount is None:
                self.rejected += 1
                return None
            note = None
            stamps, gap = self._stamps, self.max_gap_ns
            if stamps and stamps[-1] - stamp_ns > gap:
                ahead = stamps[-1] - stamps[-2] if len(stamps) > 1 else 0
                if ahead > gap and stamp_ns >= stamps[-2] - gap:
                    note = (f"odometry stamped {ahead / 1e9:.3f} s after the pose before it dropped: the next "
                            f"message went on from that pose (a glitch)")
                    stamps.pop()
                    self._poses.pop()
                    self.rejected += 1
                else:
                    note = (f"odometry stamps jumped back by {(stamps[-1] - stamp_ns) / 1e9:.3f} s (a simulation "
                            f"reset or a looping bag?): poses cleared")
                    self._clear()
            self._insert(stamp_ns, pose)
            self._added.notify_all()
            return note

    def pending(self, stamp_ns: int) -> bool:
        """Whether the pose at or after ``stamp_ns`` is still to come: the newest pose lies before it by at most
        ``max_gap_ns`` (odometry close behind the images). Odometry that stopped, or whose stamps are far from the
        images' (another clock), is not pending."""
        with self._lock:
            return self._pending(stamp_ns)

    def _pending(self, stamp_ns: int) -> bool:
        return bool(self._stamps) and 0 < stamp_ns - self._stamps[-1] <= self.max_gap_ns

    def wait_covered(self, stamp_ns: int, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` while the pose at ``stamp_ns`` is :meth:`pending` (another thread adds the
        poses); True when a pose at or after ``stamp_ns`` is buffered."""
        deadline = time.monotonic() + timeout_s
        with self._added:
            while self._pending(stamp_ns):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._added.wait(left)
            return bool(self._stamps) and self._stamps[-1] >= stamp_ns

    def _insert(self, stamp_ns: int, pose: np.ndarray) -> None:
        stamps = self._stamps
        i = bisect.bisect_right(stamps, stamp_ns)
        stamps.insert(i, stamp_ns)
        self._poses.insert(i, pose)
        # the window ends at the newest pose, or at the one before while the newest may be a glitch far ahead
        end = stamps[-2] if len(stamps) > 1 and stamps[-1] - stamps[-2] > self.max_gap_ns else stamps[-1]
        while len(stamps) > self.capacity or stamps[0] < end - self.window_ns:
            stamps.popleft()
            self._poses.popleft()

    def camera_pose(self, stamp_ns: int) -> np.ndarray | None:
        """``T_world<-camera_optical`` at ``stamp_ns``, or None when the odometry does not cover it."""
        return self.camera_pose_and_resets(stamp_ns)[0]

    def camera_pose_and_resets(self, stamp_ns: int) -> tuple[np.ndarray | None, int]:
        """:meth:`camera_pose` and the count of resets it was read after (the odometry frame it is in), together."""
        with self._lock:
            base, mount, resets = self._base(stamp_ns), self.mount, self.resets
        return (None if base is None or mount is None else base @ mount), resets

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
        if s1 - s0 <= self.max_gap_ns:
            return interpolate_pose(self._poses[i - 1], self._poses[i], (stamp_ns - s0) / (s1 - s0))
        if stamp_ns - s0 <= self.tolerance_ns:
            return self._poses[i - 1]
        return self._poses[i] if s1 - stamp_ns <= self.tolerance_ns else None


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
