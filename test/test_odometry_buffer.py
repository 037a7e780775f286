"""The odometry pose buffer in the per-frame path, without DDS: poses kept by time (not by count), no pose across an
odometry dropout, stamps that jump back (a looping bag) or a glitch stamped far ahead, two odometry sources on one
topic, the mount from TF not known yet or changing, the wait for odometry that arrives after the image, and the counts
/diagnostics shows."""
import threading
import time

import numpy as np
import pytest

from nut_ros.ros.odometry import PoseBuffer, mount_matrix, pose_matrix, pose_to_odometry
from nut_ros.ros.processor import ODOMETRY_SOURCE_TIMEOUT_S, FrameProcessor, ProcessorSettings

FLAVOR = "rosbags"
T0 = 1_000 * 10**9
MS = 10**6


def at(x: float) -> np.ndarray:
    return pose_matrix((x, 0.0, 0.0), (0, 0, 0, 1))


class StubPipeline:
    """What the processor reads of a pipeline outside ``process``."""

    motion_prior = "none"
    config = None


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def processor(**settings) -> tuple[FrameProcessor, Clock]:
    clock = Clock()
    return FrameProcessor(StubPipeline(), ProcessorSettings(use_odometry=True, **settings), clock, FLAVOR), clock


def odom(stamp_ns: int, x: float, frame: str = "odom", child: str = "base"):
    return pose_to_odometry(at(x), stamp_ns, frame, child, FLAVOR)


def test_poses_are_kept_by_time_not_by_count():
    """At 1 kHz a frame stamped 1 s before the newest odometry still finds its pose (200 messages were 0.2 s)."""
    poses = PoseBuffer()
    for i in range(3000):  # 3 s at 1 kHz
        poses.add(T0 + i * MS, at(i * 1e-3))
    assert np.allclose(poses.camera_pose(T0 + 2000 * MS + MS // 2)[:3, 3], [2.0005, 0, 0])
    assert np.allclose(poses.camera_pose(T0 + 10 * MS)[:3, 3], [0.01, 0, 0])
    for i in range(3000, 12_000):  # 12 s in all: the first 2 s are past the 10 s window
        poses.add(T0 + i * MS, at(i * 1e-3))
    assert poses.camera_pose(T0 + 1000 * MS) is None and len(poses) == 10_001
    capped = PoseBuffer(capacity=500)
    for i in range(1000):
        capped.add(T0 + i * MS, at(i * 1e-3))
    assert len(capped) == 500 and capped.camera_pose(T0 + 400 * MS) is None, "a hard cap on the count"


def test_an_odometry_dropout_is_not_bridged():
    """Poses further apart than 0.5 s are not interpolated: a 5 s dropout leaves the frames inside it without a
    pose (those within 50 ms of either side take that side's pose)."""
    poses = PoseBuffer()
    for i in range(11):
        poses.add(T0 + i * 100 * MS, at(0.1 * i))  # 0 .. 1 s
    for i in range(11):
        poses.add(T0 + (6_000 + i * 100) * MS, at(50.0 + 0.1 * i))  # from 6 s
    assert np.allclose(poses.camera_pose(T0 + 550 * MS)[:3, 3], [0.55, 0, 0]), "10 Hz odometry interpolates"
    assert poses.camera_pose(T0 + 3_000 * MS) is None
    assert np.allclose(poses.camera_pose(T0 + 1_020 * MS)[:3, 3], [1.0, 0, 0])
    assert np.allclose(poses.camera_pose(T0 + 5_980 * MS)[:3, 3], [50.0, 0, 0])
    assert poses.rejected == 0 and poses.resets == 0


def test_a_glitch_stamped_far_ahead_is_dropped_and_counted():
    proc, _ = processor()
    for i in range(5):
        assert proc.add_odometry(odom(T0 + i * 10 * MS, 0.01 * i)) is None
    assert proc.add_odometry(odom(T0 + 100 * 10**9, 99.0)) is None  # a glitch, or the end of a dropout?
    assert proc.poses.camera_pose(T0 + 45 * MS) is not None, "the history stays"
    assert proc.poses.camera_pose(T0 + 200 * MS) is None, "not interpolated towards it meanwhile"
    note = proc.add_odometry(odom(T0 + 50 * MS, 0.05))  # the old stamps go on: it was a glitch
    assert note is not None and "glitch" in note
    for i in range(6, 10):
        proc.add_odometry(odom(T0 + i * 10 * MS, 0.01 * i))
    assert np.allclose(proc.poses.camera_pose(T0 + 75 * MS)[:3, 3], [0.075, 0, 0])
    assert proc.poses.camera_pose(T0 + 10**9) is None, "nothing brackets a later image"
    values = proc.diagnostic_values()
    assert values["odometry_rejected"] == 1 and values["odometry_resets"] == 0


@pytest.mark.parametrize("jump_s", [30.0, 0.6])
def test_stamps_jumping_back_clear_the_poses_and_the_new_ones_are_kept(jump_s):
    """A looping bag or a simulation reset: the full buffer is cleared (said and counted) and the new timeline's
    poses are used."""
    proc, _ = processor()
    start = T0 + 60 * 10**9
    for i in range(3000):  # 30 s at 100 Hz
        proc.add_odometry(odom(start + i * 10 * MS, 0.0))
    back = start + 3000 * 10 * MS - int(jump_s * 1e9)
    note = proc.add_odometry(odom(back, 5.0))
    assert note is not None and "jumped back" in note
    for i in range(1, 10):
        proc.add_odometry(odom(back + i * 10 * MS, 5.0 + 0.01 * i))
    assert np.allclose(proc.poses.camera_pose(back + 45 * MS)[:3, 3], [5.045, 0, 0])
    assert len(proc.poses) == 10 and proc.diagnostic_values()["odometry_resets"] == 1


def test_a_second_odometry_source_on_the_topic_is_ignored_until_the_first_stops():
    proc, clock = processor()
    for i in range(10):  # two sources interleaved: wheel odometry in odom, visual odometry in vo
        clock.now = i * 0.01
        assert proc.add_odometry(odom(T0 + i * 10 * MS, 0.01 * i)) is None
        problem = proc.add_odometry(odom(T0 + i * 10 * MS + 5 * MS, 7.0, "vo", "camera"))
        assert problem is not None and "'vo' -> 'camera' ignored" in problem and "'odom' -> 'base'" in problem
    assert np.allclose(proc.poses.camera_pose(T0 + 45 * MS)[:3, 3], [0.045, 0, 0]), "not blended with vo"
    assert proc.diagnostic_values()["odometry_rejected"] == 10 and proc.odometry_source == ("odom", "base")
    notes = []  # odom stops; vo goes on alone, at 10 Hz
    for k in range(1, 30):
        clock.now = 0.09 + 0.1 * k
        notes.append(proc.add_odometry(odom(T0 + (90 + 100 * k) * MS, 7.0, "vo", "camera")))
        if notes[-1] is not None and "now of 'vo' -> 'camera'" in notes[-1]:
            break
    assert ODOMETRY_SOURCE_TIMEOUT_S - 1e-9 < clock.now - 0.09 < ODOMETRY_SOURCE_TIMEOUT_S + 0.11, "alone for 2 s"
    assert all("ignored" in n for n in notes[:-1]) and "poses of 'odom' -> 'base' are cleared" in notes[-1]
    assert proc.odometry_source == ("vo", "camera") and proc.odometry_frame == "vo"
    assert proc.poses.camera_pose(T0 + 45 * MS) is None, "the odom poses are gone"
    stamp = T0 + (90 + 100 * k) * MS
    assert np.allclose(proc.poses.camera_pose(stamp)[:3, 3], [7.0, 0, 0])
    assert proc.add_odometry(odom(stamp + 10 * MS, 0.0)) is not None, "now odom is the other source"


def test_with_the_mount_from_tf_nothing_is_posed_until_it_is_known_and_a_change_clears_the_poses():
    proc, _ = processor(mount_from_tf=True, camera_mount=mount_matrix([0.0, 0.0, 9.0, 0.0, 0.0, 0.0]))
    for i in range(5):
        proc.add_odometry(odom(T0 + i * 10 * MS, 0.0))
    assert len(proc.poses) == 0 and proc.poses.camera_pose(T0 + 20 * MS) is None, "not with camera_mount meanwhile"
    assert proc.diagnostic_values()["odometry_rejected"] == 5
    assert not proc.poses.set_mount(mount_matrix([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])), "the first mount is no change"
    for i in range(5, 10):
        proc.add_odometry(odom(T0 + i * 10 * MS, 0.0))
    assert np.allclose(proc.poses.camera_pose(T0 + 70 * MS)[:3, 3], [0, 0, 1.0])
    assert not proc.poses.set_mount(mount_matrix([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])), "the same mount again"
    assert proc.poses.set_mount(mount_matrix([0.0, 0.0, 2.0, 0.0, 0.0, 0.0])), "another mount"
    assert proc.poses.camera_pose(T0 + 70 * MS) is None, "no pose of the old mount's odometry under the new one"
    proc.add_odometry(odom(T0 + 100 * MS, 0.0))
    assert np.allclose(proc.poses.camera_pose(T0 + 100 * MS)[:3, 3], [0, 0, 2.0])
    assert proc.diagnostic_values()["odometry_resets"] == 1


def test_frames_processed_without_a_pose_are_counted():
    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig
    from nut_ros.ros.conversions import numpy_to_image

    pipeline = StreamingPipeline(make_backend("torch", "tiny", device="cpu", random_init=True),
                                 PipelineConfig(motion_prior="none", depth_from_motion="off"))
    proc = FrameProcessor(pipeline, ProcessorSettings(depth_source="none", info_timeout_s=0.0, use_odometry=True),
                          flavor=FLAVOR)
    for i in range(3):
        stamp = T0 + i * 100 * MS
        if i:  # the first frame comes before any odometry
            proc.add_odometry(odom(stamp, 0.01 * i))
        image = numpy_to_image(np.full((48, 64, 3), 40 * i, np.uint8), "rgb8", stamp, "cam", FLAVOR)
        outcome = proc.process(proc.add_image(image))
        assert outcome.drop is None and (outcome.frame.camera_pose is None) == (i == 0)
    assert proc.diagnostic_values()["frames_without_pose"] == 1


def test_a_frame_waits_for_the_odometry_close_behind_it():
    """Odometry at 10 Hz arriving after the image: the worker waits for the pose after the image's stamp (added by
    another thread 60 ms later) and interpolates it; stopped odometry, or odometry on another clock, is not waited
    for; a pose that does not come ends the wait at its timeout."""
    poses = PoseBuffer()
    poses.add(T0, at(0.0))
    image = T0 + 70 * MS  # the pose at T0 + 100 ms is on its way
    assert poses.pending(image) and not poses.pending(T0 - MS)
    late = threading.Timer(0.06, lambda: poses.add(T0 + 100 * MS, at(0.1)))
    late.start()
    start = time.monotonic()
    assert poses.wait_covered(image, timeout_s=2.0)
    assert 0.03 < time.monotonic() - start < 1.0
    assert np.allclose(poses.camera_pose(image)[:3, 3], [0.07, 0, 0]), "interpolated, not held at 0.1"
    start = time.monotonic()
    assert not poses.wait_covered(T0 + 150 * MS, timeout_s=0.1)  # nothing comes: the timeout ends it
    assert 0.09 < time.monotonic() - start < 1.0
    start = time.monotonic()
    assert not poses.pending(T0 + 5_000 * MS), "odometry stopped 4.9 s before the image: not waited for"
    assert not poses.wait_covered(T0 + 5_000 * MS, timeout_s=2.0) and time.monotonic() - start < 0.5
    assert not PoseBuffer().pending(T0) and not PoseBuffer().wait_covered(T0, timeout_s=2.0)
    late.join()


def test_the_processor_waits_only_with_odometry():
    proc, _ = processor()
    proc.poses.add(T0, at(0.0))
    assert proc.pose_pending(T0 + 50 * MS)
    threading.Timer(0.05, lambda: proc.add_odometry(odom(T0 + 100 * MS, 0.1))).start()
    proc.await_pose(T0 + 50 * MS, timeout_s=2.0)
    assert not proc.pose_pending(T0 + 50 * MS)
    assert np.allclose(proc.poses.camera_pose(T0 + 50 * MS)[:3, 3], [0.05, 0, 0])
    plain = FrameProcessor(StubPipeline(), ProcessorSettings(), Clock(), FLAVOR)
    start = time.monotonic()
    plain.await_pose(T0, timeout_s=2.0)
    assert not plain.pose_pending(T0) and time.monotonic() - start < 0.5


def test_a_replayed_frame_waits_for_odometry_recorded_after_it(tmp_path):
    """In a bag, 10 Hz odometry recorded 40 ms after its stamp and 30 Hz images: each image is handed on once the pose
    after its stamp has been read (or 0.15 s of bag time later), so every frame's pose is interpolated."""
    from nut_ros.ros.bag_io import BagClock, BagWriter
    from nut_ros.ros.images import numpy_to_image
    from nut_ros.tools.replay_eval import replay_matches

    stamps = [T0 + 50 * MS + i * 33 * MS for i in range(11)]  # (after the first pose is read)
    records = [(s, "/cam/image", numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", s, "cam", FLAVOR))
               for s in stamps]
    records += [(T0 + i * 100 * MS + 40 * MS, "/odom", odom(T0 + i * 100 * MS, 0.1 * i)) for i in range(5)]
    bag = tmp_path / "bag"
    with BagWriter(bag, storage="sqlite3") as w:
        for t, topic, msg in sorted(records, key=lambda r: r[0]):
            w.write(topic, t, msg)
    clock = BagClock()
    proc = FrameProcessor(StubPipeline(), ProcessorSettings(use_odometry=True, depth_source="none", info_timeout_s=0),
                          clock, FLAVOR)
    got = []
    for matched in replay_matches(bag, proc, clock, "/cam/image", None, None, "/odom"):
        pose = proc.poses.camera_pose(matched.stamp_ns)  # as the frame is built now
        got.append((matched.stamp_ns, None if pose is None else pose[0, 3]))
    assert [s for s, _ in got] == stamps
    for stamp, x in got:
        assert x is not None and abs(x - (stamp - T0) / 1e9) < 1e-9, (stamp, x)
