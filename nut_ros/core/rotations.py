"""Rotation matrices and unit quaternions, numpy float64. Quaternions are ``(x, y, z, w)``, ROS's order
(geometry_msgs/Quaternion, TUM trajectories)."""
from __future__ import annotations

import numpy as np


def quaternion_to_matrix(q_xyzw) -> np.ndarray:
    """3x3 rotation of a quaternion (normalised here); ``ValueError`` for a zero or non-finite one."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"invalid orientation quaternion (x, y, z, w) = {tuple(q.tolist())}")
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def quaternion_pose(t, q_xyzw) -> np.ndarray:
    """4x4 pose from a translation and a quaternion (x, y, z, w; normalised here)."""
    pose = np.eye(4)
    pose[:3, :3] = quaternion_to_matrix(q_xyzw)
    pose[:3, 3] = t
    return pose


def matrix_to_quaternion(r) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` with ``w >= 0`` of a 3x3 rotation, by Shepperd's method: the component
    with the largest magnitude is taken from the diagonal and the others from sums and differences over it, so
    every angle is exact, 180 degrees included (where the off-diagonal differences all vanish)."""
    m = np.asarray(r, dtype=np.float64)
    trace = np.trace(m)
    q = np.zeros(4)  # x, y, z, w
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        q[:] = (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(max(0.0, 1 + m[i, i] - m[j, j] - m[k, k]))
        q[i], q[j], q[k], q[3] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s, (m[k, j] - m[j, k]) / s
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def rotation_angle(r) -> float:
    """Angle (radians, in [0, pi]) of the 3x3 rotation ``r``, from its trace (clipped against rounding)."""
    return float(np.arccos(np.clip((np.trace(np.asarray(r, dtype=np.float64)) - 1) / 2, -1.0, 1.0)))
