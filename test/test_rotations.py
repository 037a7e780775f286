"""Quaternion <-> rotation matrix (nut_ros.core.rotations), at every angle, 180 degrees included."""
import itertools

import numpy as np
import pytest

from nut_ros.core.rotations import matrix_to_quaternion, quaternion_pose, quaternion_to_matrix, rotation_angle


def _axis_angle(axis, angle) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    skew = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def _signed_permutations():
    """The 24 rotations that map axes onto axes (a camera looking along a world axis)."""
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            r = np.zeros((3, 3))
            r[range(3), perm] = signs
            if np.linalg.det(r) > 0:
                yield r


@pytest.mark.parametrize("r", list(_signed_permutations()))
def test_axis_aligned_rotations_round_trip(r):
    q = matrix_to_quaternion(r)
    assert np.isclose(np.linalg.norm(q), 1) and q[3] >= 0
    np.testing.assert_allclose(quaternion_to_matrix(q), r, atol=1e-12)


def test_random_rotations_round_trip_at_every_angle_including_half_turns():
    rng = np.random.default_rng(3)
    axes = rng.normal(size=(300, 3))
    angles = np.concatenate([rng.uniform(-np.pi, np.pi, 100), np.full(100, np.pi), np.pi - rng.uniform(0, 1e-6, 100)])
    for axis, angle in zip(axes, angles):
        r = _axis_angle(axis, angle)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-9)


def test_quaternion_convention_is_ros_xyzw():
    yaw90 = quaternion_to_matrix([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90 degrees about z
    np.testing.assert_allclose(yaw90 @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(yaw90), [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    pose = quaternion_pose([1.0, 2.0, 3.0], [0, 0, 2 * np.sin(np.pi / 4), 2 * np.cos(np.pi / 4)])  # not unit
    np.testing.assert_allclose(pose[:3, :3], yaw90, atol=1e-12)
    np.testing.assert_allclose(pose[:, 3], [1, 2, 3, 1])
    with pytest.raises(ValueError, match="invalid orientation quaternion"):
        quaternion_to_matrix([0, 0, 0, 0])


def test_the_rotation_angle_is_the_axis_angle_magnitude_at_every_angle():
    rng = np.random.default_rng(4)
    for axis, angle in zip(rng.normal(size=(50, 3)), np.concatenate([rng.uniform(0, np.pi, 48), [0.0, np.pi]])):
        assert rotation_angle(_axis_angle(axis, angle)) == pytest.approx(angle, abs=1e-6)
        assert rotation_angle(_axis_angle(axis, -angle)) == pytest.approx(angle, abs=1e-6)
    assert rotation_angle(np.eye(3) * (1 + 1e-12)) == 0.0  # a trace past 3 by rounding: clipped, no NaN
