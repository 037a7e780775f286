"""The per-frame path without DDS: stamps, the pixel cap, intrinsics plausibility, loss counting, odometry into
``Frame.camera_pose`` (also from a bag written by ``nut_ros_make_bag --poses``), and prediction past the end of
ROS time."""
import struct
import zlib

import cv2
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.core.rotations import matrix_to_quaternion
from nut_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from nut_ros.ros.compressed import MAX_JPEG_SEGMENTS, compress_depth, compress_image, encoded_size
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.images import numpy_to_image
from nut_ros.ros.input_sync import LossCounter, Matched
from nut_ros.ros.inputs import frame_from_messages
from nut_ros.ros.msg_types import MAX_STAMP_NS, make_time
from nut_ros.ros.odometry import (PoseBuffer, interpolate_pose, mount_matrix, odometry_pose, pose_matrix,
                                  pose_to_odometry, read_poses, rpy_matrix)

FLAVOR = "rosbags"  # no rclpy needed
K = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
T0 = 1_000 * 10**9


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` followed by junk: what a decompression bomb looks like."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\x00" * 64)


def _image(stamp=T0, w=64, h=48):
    return numpy_to_image(np.full((h, w, 3), 100, np.uint8), "rgb8", stamp, "cam", FLAVOR)


@pytest.mark.parametrize("fmt, size", [("png", (640, 480)), ("jpeg", (1280, 720)), ("jpeg", (33, 17))])
def test_encoded_size_reads_the_header(fmt, size):
    msg = compress_image(np.zeros((size[1], size[0], 3), np.uint8), "rgb8", fmt, flavor=FLAVOR)
    assert encoded_size(np.frombuffer(bytes(msg.data), np.uint8)) == size
    with pytest.raises(ConversionError, match="no PNG or JPEG header"):
        encoded_size(b"\x00" * 32)


def test_encoded_size_walks_past_large_jpeg_metadata():
    """Camera JPEGs can carry over 64 KiB of EXIF, ICC or comments before the frame header."""
    jpeg = bytes(compress_image(np.zeros((240, 320, 3), np.uint8), "rgb8", "jpeg", flavor=FLAVOR).data)
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"x" * 65533  # two full-size COM segments after SOI
    big = jpeg[:2] + comment * 2 + jpeg[2:]
    assert cv2.imdecode(np.frombuffer(big, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
    assert encoded_size(np.frombuffer(big, np.uint8)) == (320, 240) == encoded_size(big)
    with pytest.raises(ConversionError, match="no PNG or JPEG header"):
        encoded_size(big[:70000])  # cut inside the metadata
    strided = np.zeros(2 * len(big), np.uint8)
    strided[::2] = np.frombuffer(big, np.uint8)
    assert encoded_size(strided[::2]) == (320, 240)  # a view that is not contiguous


def test_encoded_size_walks_a_bounded_number_of_segments():
    """Crafted data (millions of empty segments or fill bytes) must not hold the worker thread for seconds."""
    jpeg = bytes(compress_image(np.zeros((24, 32, 3), np.uint8), "rgb8", "jpeg", flavor=FLAVOR).data)
    empty_comment = b"\xff\xfe\x00\x02"
    for count, found in ((MAX_JPEG_SEGMENTS - 64, True), (MAX_JPEG_SEGMENTS, False), (1_000_000, False)):
        crafted = jpeg[:2] + empty_comment * count + jpeg[2:]
        if found:
            assert encoded_size(crafted) == (32, 24)
        else:
            with pytest.raises(ConversionError, match="no PNG or JPEG header"):
                encoded_size(crafted)
    with pytest.raises(ConversionError, match="no PNG or JPEG header"):
        encoded_size(b"\xff\xd8\xff\xda\x00\x02" + b"\xff\xc0\x00\x11\x08" * 100)  # into scan data: stop


@pytest.mark.parametrize("case", ["raw", "png", "compressedDepth"])
def test_pixel_cap_is_checked_before_decoding(case):
    image = _image()
    matched = Matched(T0, image)
    if case == "raw":  # 20000 x 20000 claimed, 9 KB present
        image.width, image.height, image.step = 20000, 20000, 60000
    elif case == "png":  # a 16000 x 16000 PNG would need 768 MB decoded
        matched.image = compress_image(np.zeros((4, 4, 3), np.uint8), "rgb8", "png", stamp_ns=T0, flavor=FLAVOR)
        matched.image.data = np.frombuffer(_png_claiming(16000, 16000), np.uint8)
    else:
        depth = compress_depth(np.ones((48, 64), np.float32), "32FC1", stamp_ns=T0, flavor=FLAVOR)
        depth.data = np.concatenate([np.asarray(depth.data)[:12], np.frombuffer(_png_claiming(16000, 16000),
                                                                                np.uint8)])
        matched.depth = depth
        built = frame_from_messages(matched, 0.001, max_pixels=3840 * 2160)  # a depth image without valid pixels
        assert np.isnan(built.frame.depth_m).all() and "more than max_input_pixels=8294400" in built.notes[0]
        return
    with pytest.raises(ConversionError, match="more than max_input_pixels=8294400"):
        frame_from_messages(matched, 0.001, max_pixels=3840 * 2160)


def test_images_under_the_cap_and_no_cap_decode():
    assert frame_from_messages(Matched(T0, _image()), 0.001, max_pixels=64 * 48).frame.rgb.shape == (48, 64, 3)
    assert frame_from_messages(Matched(T0, _image()), 0.001, max_pixels=0).frame.rgb.shape == (48, 64, 3)


@pytest.mark.parametrize("k, fragment", [
    ((1e-40, 60.0, 31.5, 23.5), "implausible fx=1e-40"),
    ((1e-3, 1e-3, 31.5, 23.5), "implausible fx=0.001"),
    ((60.0, 1e6, 31.5, 23.5), "implausible fy=1e+06"),
    ((60.0, 60.0, 1e12, 23.5), "principal point cx=1e+12"),
    ((60.0, 60.0, 31.5, -100.0), "principal point cy=-100"),
])
def test_implausible_intrinsics_are_rejected_like_an_invalid_k(k, fragment):
    info = intrinsics_to_camera_info(Intrinsics(*k, 64, 48), flavor=FLAVOR)
    with pytest.raises(ConversionError) as err:
        camera_info_to_intrinsics(info)
    assert fragment in str(err.value)
    built = frame_from_messages(Matched(T0, _image(), info=info), 0.001)
    assert built.frame.intrinsics is None and any("CameraInfo ignored" in n for n in built.notes)


def test_non_finite_distortion_is_rejected_like_an_invalid_k():
    info = intrinsics_to_camera_info(K, flavor=FLAVOR)
    info.d = [float("nan")] * 5
    built = frame_from_messages(Matched(T0, _image(), info=info), 0.001)
    assert built.frame.intrinsics is None and any("CameraInfo.d" in n for n in built.notes), built.notes


@pytest.mark.parametrize("k", [(60.0, 60.0, 31.5, 23.5), (10.0, 10.0, 31.5, 23.5), (2000.0, 2000.0, -20.0, 60.0)])
def test_plausible_intrinsics_pass(k):
    assert camera_info_to_intrinsics(intrinsics_to_camera_info(Intrinsics(*k, 64, 48), flavor=FLAVOR)).fx == k[0]


def test_lens_distortion_is_named_in_a_note_not_silently_ignored():
    """nut_ros treats the images as pinhole images with K: a CameraInfo with distortion gets a note saying so and
    what to feed instead; one without distortion gets none."""
    info = intrinsics_to_camera_info(Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48), flavor=FLAVOR)
    assert not any("distortion" in n for n in frame_from_messages(Matched(T0, _image(), info=info), 0.001).notes)
    info.d = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    built = frame_from_messages(Matched(T0, _image(), info=info), 0.001)
    assert built.frame.intrinsics is not None and built.frame.intrinsics.fx == 60.0
    assert any("lens distortion" in n and "image_rect" in n for n in built.notes)


def test_unrepresentable_stamps_are_refused():
    assert make_time(MAX_STAMP_NS, FLAVOR).sec == 2**31 - 1
    for ns in (MAX_STAMP_NS + 1, -1):
        with pytest.raises(ConversionError, match="cannot be represented"):
            make_time(ns, FLAVOR)
    image = _image()
    image.header.stamp.nanosec = 1_500_000_000
    with pytest.raises(ConversionError, match="not a valid ROS time"):
        frame_from_messages(Matched(T0, image), 0.001)


def test_loss_counter_from_sequence_numbers_per_publisher():
    losses = LossCounter()
    assert [losses.add(T0, seq, "a") for seq in (1, 2, 5, 6)] == [0, 0, 2, 0]
    assert losses.add(T0, 10, "b") == 0, "a new publisher starts its own sequence"
    assert losses.add(T0, 3, "a") == 0, "an older sample (reordered) is not a loss"
    assert losses.lost == 2


def test_loss_counter_an_image_with_an_unreadable_stamp_arrived():
    """A refused stamp still advances its publisher's sequence, and leaves the stamp baseline as it was."""
    losses = LossCounter()
    assert [losses.add(stamp, seq, "a") for stamp, seq in ((T0, 1), (None, 2), (T0 + 10**8, 3))] == [0, 0, 0]
    period = 10**8
    assert [losses.add(stamp) for stamp in (T0 + i * period for i in range(2, 7))] == [0] * 5
    assert losses.add(None) == 0 and losses.add(T0 + 7 * period) == 0, "an extra image between two frames"
    assert losses.add(None) == 0 and losses.add(T0 + 9 * period) == 0, "an image in the slot of frame 8: not lost"
    assert losses.add(T0 + 11 * period) == 1, "the frame period is still 0.1 s: frame 10 was lost"
    assert losses.lost == 1


def test_loss_counter_keeps_a_bounded_number_of_publishers():
    """A driver restarted again and again is a new publisher each time: only the most recent ones are kept."""
    losses = LossCounter()
    for p in range(10_000):
        losses.add(T0, 1, p)
    assert len(losses._last_seq) == LossCounter.MAX_PUBLISHERS
    assert losses.add(T0, 4, 9_999) == 2, "the newest publisher's sequence is still followed"


def test_loss_counter_from_stamp_gaps_without_sequence_numbers():
    losses = LossCounter()
    period = 33_333_333
    stamps = [T0 + i * period for i in (0, 1, 2, 3, 4, 7, 8, 9, 10)]
    assert [losses.add(s) for s in stamps] == [0, 0, 0, 0, 0, 2, 0, 0, 0]
    assert losses.add(T0 + 100 * 10**9) == 0, "a jump of minutes is a new stream, not a loss"


def test_loss_counter_takes_a_burst_of_near_equal_stamps_for_no_frame_rate():
    losses = LossCounter()
    burst = [T0 + i * 1_000 for i in range(5)]  # a driver flushing buffered frames, 1 us apart
    assert [losses.add(s) for s in burst] == [0] * 5
    period = 33_333_333
    assert [losses.add(burst[-1] + i * period) for i in range(1, 6)] == [0] * 5, "ordinary frames lose nothing"
    assert losses.add(burst[-1] + 8 * period) == 2 and losses.lost == 2


def test_mount_and_interpolation():
    r = rpy_matrix(0.1, -0.2, 0.3)
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    optical = mount_matrix([0.1, 0.0, 0.5, -np.pi / 2, 0.0, -np.pi / 2])  # the usual base -> optical rotation
    assert np.allclose(optical[:3, 2], [1, 0, 0]), "the optical z axis looks along the base's x (forward)"
    t0 = pose_matrix((0, 0, 0), (0, 0, 0, 1))
    t1 = pose_matrix((2, 0, 0), (0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)))  # 90 deg about z
    mid = interpolate_pose(t0, t1, 0.5)
    assert np.allclose(mid[:3, 3], [1, 0, 0]) and np.isclose(np.degrees(np.arctan2(mid[1, 0], mid[0, 0])), 45.0)
    with pytest.raises(ValueError, match="camera_mount must be 6"):
        mount_matrix([0, 0, 0])


def test_half_turn_poses_interpolate_and_round_trip_through_odometry():
    """A camera looking straight down with its x along -y of the world (a half turn about (1, -1, 0)): the
    off-diagonal differences of its rotation vanish, so only the diagonal tells the quaternion's signs."""
    down = np.eye(4)
    down[:3, :3] = [[0, -1, 0], [-1, 0, 0], [0, 0, -1]]
    down[:3, 3] = (1.0, 2.0, 3.0)
    np.testing.assert_allclose(interpolate_pose(down, down, 0.3), down, atol=1e-12)
    back = odometry_pose(pose_to_odometry(down, T0, "odom", "camera", "rosbags"))
    np.testing.assert_allclose(back, down, atol=1e-12)


def test_pose_buffer_interpolates_at_the_image_stamp_and_applies_the_mount():
    mount = mount_matrix([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # camera 1 m above the base
    poses = PoseBuffer(mount, capacity=4, tolerance_ns=10**7)
    for i in (0, 2, 1):  # out of order is fine
        poses.add(T0 + i * 10**8, pose_matrix((i, 0, 0), (0, 0, 0, 1)))
    at = poses.camera_pose(T0 + 15 * 10**7)
    assert np.allclose(at[:3, 3], [1.5, 0, 1.0])
    assert poses.camera_pose(T0 + 3 * 10**8) is None, "beyond the newest odometry: no pose (no extrapolation)"
    assert poses.camera_pose(T0 - 10**9) is None
    for i in range(3, 8):
        poses.add(T0 + i * 10**8, pose_matrix((i, 0, 0), (0, 0, 0, 1)))
    assert len(poses) == 4 and poses.camera_pose(T0) is None, "bounded: the oldest poses went"


def test_the_mount_is_applied_in_the_odometry_childs_frame():
    """camera = base @ mount: a base turned 90 degrees about z puts a mount 0.5 m forward (its x) at +y of the
    world, and turns the camera with it."""
    mount = mount_matrix([0.5, 0.0, 0.0, 0.0, 0.0, 0.3])  # 0.5 m along the base's x, 0.3 rad of yaw
    poses = PoseBuffer(mount)
    poses.add(T0, pose_matrix((1.0, 2.0, 0.0), (0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4))))
    at = poses.camera_pose(T0)
    np.testing.assert_allclose(at[:3, 3], [1.0, 2.5, 0.0], atol=1e-12)
    assert np.isclose(np.arctan2(at[1, 0], at[0, 0]), np.pi / 2 + 0.3)


def test_poses_interpolate_along_the_shorter_arc_at_a_constant_rate():
    def yaw(degrees):
        half = np.radians(degrees) / 2
        return pose_matrix((0, 0, 0), (0, 0, np.sin(half), np.cos(half)))

    def heading(t):
        return np.degrees(np.arctan2(t[1, 0], t[0, 0]))

    assert np.isclose(heading(interpolate_pose(yaw(0), yaw(90), 0.25)), 22.5)  # slerp (a linear blend: 21.6)
    assert np.isclose(abs(heading(interpolate_pose(yaw(170), yaw(-170), 0.5))), 180.0)  # across +-180, not via 0


def test_a_pose_read_while_another_thread_adds_pairs_each_stamp_with_its_pose():
    """The node adds odometry on its executor thread and reads poses on its worker thread. An addition inserts the
    new stamp, then its pose: a read from another thread between the two must wait, not pair stamps and poses of
    different messages."""
    import threading
    from collections import deque

    poses = PoseBuffer(capacity=4, tolerance_ns=0)
    for i in range(4):
        poses.add(T0 + i * 10**8, pose_matrix((i, 0, 0), (0, 0, 0, 1)))
    read = []

    class ReadMidway(deque):
        def insert(self, i, pose):  # the new stamp is in, its pose not yet: another thread reads
            reader = threading.Thread(target=lambda: read.append(poses.camera_pose(T0 + 25 * 10**7)))
            reader.start()
            reader.join(timeout=0.2)  # (with the buffer guarded it waits for this addition to finish)
            self.reader = reader
            super().insert(i, pose)

    poses._poses = ReadMidway(poses._poses)
    poses.add(T0 + 4 * 10**8, pose_matrix((4, 0, 0), (0, 0, 0, 1)))
    poses._poses.reader.join()
    assert len(read) == 1 and np.isclose(read[0][0, 3], 2.5)  # halfway between the poses at 2 and 3


def test_odometry_message_roundtrip():
    pose = pose_matrix((1.0, -2.0, 0.5), (0.1, 0.2, 0.3, 0.9))
    msg = pose_to_odometry(pose, T0, "world", "cam", FLAVOR)
    assert msg.child_frame_id == "cam" and msg.header.frame_id == "world"
    np.testing.assert_allclose(odometry_pose(msg), pose, atol=1e-12)


def test_read_poses_in_three_formats(tmp_path):
    poses = [pose_matrix((i, 0.5 * i, 0), (0, 0, np.sin(i / 10), np.cos(i / 10))) for i in range(3)]
    scenes = tmp_path / "seq"
    scenes.mkdir()
    for i, p in enumerate(poses):
        np.savetxt(scenes / f"frame-{i:06d}.pose.txt", p)
    (tmp_path / "m.txt").write_text("\n".join(" ".join(map(str, p.reshape(-1))) for p in poses))
    tum = []
    for i, p in enumerate(poses):
        tum.append(" ".join(map(str, [i * 0.1, *p[:3, 3], *matrix_to_quaternion(p[:3, :3])])))
    (tmp_path / "tum.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(tum))
    for source in (scenes, tmp_path / "m.txt", tmp_path / "tum.txt"):
        got = read_poses(source)
        assert len(got) == 3 and all(np.allclose(a, b, atol=1e-9) for a, b in zip(got, poses)), source
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="expected TUM lines"):
        read_poses(tmp_path / "bad.txt")


def test_make_bag_poses_reach_frame_camera_pose_through_the_replay_path(tmp_path):
    """nut_ros_make_bag --poses writes nav_msgs/Odometry; the per-frame path puts it into Frame.camera_pose."""
    from nut_ros.ros.bag_io import BagClock, bag_topics
    from nut_ros.tools.make_bag import main as make_bag_main
    from nut_ros.tools.replay_eval import replay_matches, replay_processor

    frames = tmp_path / "rgb"
    frames.mkdir()
    poses = []
    for i in range(4):
        cv2.imwrite(str(frames / f"frame-{i:06d}.color.png"), np.full((48, 64, 3), 40 * i, np.uint8))
        poses.append(pose_matrix((0.1 * i, 0, 0), (0, 0, 0, 1)))
        np.savetxt(frames / f"frame-{i:06d}.pose.txt", poses[-1])
    assert make_bag_main([str(frames), str(tmp_path / "bag"), "--pattern", "*.color.png", "--poses", str(frames),
                          "--fps", "10"]) == 0
    assert bag_topics(tmp_path / "bag")["/camera/odom"] == "nav_msgs/msg/Odometry"

    class NoPipeline:  # only frame building is exercised here
        config = None

    clock = BagClock()
    processor = replay_processor(NoPipeline(), clock, None, "/camera/camera_info", "/camera/odom")
    built = [processor.build(m)[0] for m in replay_matches(tmp_path / "bag", processor, clock, "/camera/image_raw",
                                                           None, "/camera/camera_info", "/camera/odom")]
    assert len(built) == 4
    for frame, pose in zip(built, poses):
        assert frame.camera_pose is not None and frame.camera_pose.dtype == np.float64
        np.testing.assert_allclose(frame.camera_pose, pose, atol=1e-9)


def test_prediction_past_the_end_of_ros_time_is_refused_not_wrapped():
    """A view predicted beyond 2**31 s cannot be stamped: the frame is a counted drop with the reason."""
    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig
    from nut_ros.ros.processor import FrameProcessor, ProcessorSettings

    pipeline = StreamingPipeline(make_backend("torch", "tiny", device="cpu"),
                                 PipelineConfig(render_times=(1.0, 2.0), motion_prior="none"))
    processor = FrameProcessor(pipeline, ProcessorSettings(depth_source="none", info_timeout_s=0.0), flavor=FLAVOR)
    last = MAX_STAMP_NS - 5 * 10**8
    outcomes = []
    for stamp in (last - 10**9, last):
        image = numpy_to_image(np.full((48, 64, 3), 90, np.uint8), "rgb8", stamp, "cam", FLAVOR)
        outcomes.append(processor.process(processor.add_image(image)))
    assert outcomes[0].drop is None, "the first frame renders only t = 1"
    assert outcomes[1].drop is not None and "cannot be represented" in outcomes[1].drop
    assert processor.health.processed == 1 and processor.health.dropped_invalid == 1


def test_loss_warning_names_the_fix():
    from nut_ros.ros.transport import PROFILE_ENV, choose_reliability, fastdds_profile_path, loss_advice

    assert PROFILE_ENV in loss_advice("best_effort") and str(fastdds_profile_path()) in loss_advice("best_effort")
    assert "queue depth" in loss_advice("reliable")
    chosen = loss_advice("best_effort", "best_effort")  # the user chose best effort: the setting is the fix
    assert "input_reliability is best_effort" in chosen and "auto or reliable" in chosen
    assert "a publisher offers only best effort" in loss_advice("best_effort", "auto")
    assert choose_reliability("auto", ["reliable", "reliable"]) == "reliable"
    assert choose_reliability("auto", ["reliable", "best_effort"]) == "best_effort"
    assert choose_reliability("auto", []) == "best_effort" and choose_reliability("reliable", []) == "reliable"


def test_node_parameters_reach_the_pipeline():
    """The geometry and motion parameters of the node are the pipeline's settings (params file -> PipelineConfig)."""
    import dataclasses

    from nut_ros.ros.params import NodeParams
    from nut_ros.ros.processor import build_pipeline

    p = dataclasses.replace(NodeParams(), random_init=True, checkpoint="/nonexistent/tiny.safetensors",
                            depth_from_motion="off", motion_depth_width=128, network_depth=True, interp_window=0.5,
                            motion_prior="none", opencv_threads=2, max_gap_s=5.0)
    import cv2

    before = cv2.getNumThreads()
    try:
        cfg = build_pipeline(p).config
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
    assert (cfg.depth_from_motion, cfg.motion_depth_width, cfg.network_depth, cfg.interp_window, cfg.motion_prior,
            cfg.opencv_threads, cfg.max_gap_s) == ("off", 128, True, 0.5, "none", 2, 5.0)


class _Log:
    """A logger that keeps what it is given (warnings and infos alike)."""

    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)

    info = warning


def test_the_node_flow_preset_auto_depends_on_perception(monkeypatch):
    """flow_preset auto: DIS medium, sparse_to_dense (OpenCV contrib present) for a node whose obstacles use the flow;
    a preset given is kept; perception on DIS flow (no contrib) or without classical flow is logged."""
    import dataclasses

    import cv2

    from nut_ros.core.motion_prior import sparse_to_dense_available
    from nut_ros.ros.params import NodeParams
    from nut_ros.ros.processor import build_pipeline

    p = dataclasses.replace(NodeParams(), random_init=True, checkpoint="/nonexistent/tiny.safetensors")
    assert p.flow_preset == "auto"
    for_obstacles = "sparse_to_dense" if sparse_to_dense_available() else "medium"
    for perception, preset, expected in ((False, "auto", "medium"), (False, "fast", "fast"),
                                         (True, "auto", for_obstacles)):
        cfg = build_pipeline(dataclasses.replace(p, perception=perception, flow_preset=preset)).config
        assert cfg.flow_preset == expected, (perception, preset)

    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    log = _Log()
    pipeline = build_pipeline(dataclasses.replace(p, perception=True), log)
    assert pipeline.flow_settings.startswith("medium") and any("sparse_to_dense" in w for w in log.warnings)
    log = _Log()
    build_pipeline(dataclasses.replace(p, perception=True, motion_prior="none"), log)
    assert any("motion prior 'none'" in w for w in log.warnings)


def test_a_cuda_device_without_cuda_says_so():
    import dataclasses

    import torch

    from nut_ros.ros.params import NodeParams
    from nut_ros.ros.processor import build_pipeline

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        build_pipeline(dataclasses.replace(NodeParams(), device="cuda"))


def test_a_network_that_fails_to_compile_runs_eagerly(monkeypatch):
    """compile: true on a host where Inductor cannot build its CPU kernels (here: no C++ compiler) warms up eagerly,
    with a warning, instead of leaving the node unconfigured; without compile the error is raised."""
    import dataclasses

    import torch

    from nut_ros.pipeline.backends import TorchBackend
    from nut_ros.ros.params import NodeParams
    from nut_ros.ros.processor import COMPILE_FALLBACK, build_pipeline, warm_up

    # no C++ compiler for Inductor, and no cached kernels (they would need none): Inductor's own patch, undone after
    no_compiler = torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False})
    p = dataclasses.replace(NodeParams(), random_init=True, checkpoint="/nonexistent/tiny.safetensors", compile=True,
                            depth_from_motion="off")
    log = _Log()
    built = []

    def build(params, log):
        built.append(params.compile)
        return build_pipeline(params, log)

    with no_compiler:
        pipeline, seconds = warm_up(p, build, log)
    assert built == [True, False] and seconds > 0
    assert isinstance(pipeline.backend, TorchBackend) and pipeline.backend._encode == pipeline.backend.model.encode
    assert any(w.startswith(f"{COMPILE_FALLBACK}, the network runs eagerly") for w in log.warnings)

    # anything but a compile failure is raised, with compile on or off
    for compiled in (True, False):
        broken = build_pipeline(dataclasses.replace(p, compile=False), log)
        monkeypatch.setattr(broken, "warm_up", lambda: (_ for _ in ()).throw(RuntimeError("no frames")))
        with pytest.raises(RuntimeError, match="no frames"):
            warm_up(dataclasses.replace(p, compile=compiled), lambda params, log: broken, log)
    assert built == [True, False]
