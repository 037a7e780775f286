"""Input messages -> pipeline Frame, without DDS: an invalid CameraInfo in a good stream keeps the last valid
intrinsics (no guessed field of view, no stream restart), depth of another camera (frame_id) is not used as
aligned, an undecodable depth image is one without valid pixels, rectified images take their intrinsics from P, raw
images of a distorting lens are rectified when asked (``rectify``), and the inputs' rejections (and the images held
for their depth) are counted in /diagnostics."""
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.geometry.rectify import Rectifier
from nut_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info, lens_of
from nut_ros.ros.conversions import depth_to_image, numpy_to_image
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.inputs import KnownIntrinsics, frame_from_messages
from nut_ros.ros.processor import rectifies

F = "rosbags"
T0 = 1_000 * 10**9
K = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)


def image(stamp=T0, frame_id="cam", value=100):
    return numpy_to_image(np.full((48, 64, 3), value, np.uint8), "rgb8", stamp, frame_id, F)


def info(stamp=T0, k=K):
    return intrinsics_to_camera_info(k, stamp, "cam", F)


def corrupt(msg, case):
    if case == "0x0":
        msg.width = msg.height = 0
    else:
        msg.k = np.zeros(9)
    return msg


@pytest.mark.parametrize("case", ["0x0", "K zero"])
def test_an_invalid_camera_info_takes_the_last_valid_intrinsics_of_the_image_size(case):
    known = KnownIntrinsics()
    assert frame_from_messages(Matched(T0, image(), None, info()), 1e-3, known_intrinsics=known).frame.intrinsics == K
    built = frame_from_messages(Matched(T0 + 1, image(), None, corrupt(info(T0 + 1), case)), 1e-3,
                                known_intrinsics=known)
    assert built.frame.intrinsics == K and built.info_invalid
    assert any("CameraInfo ignored" in n and "last valid intrinsics of 64x48 images" in n for n in built.notes)
    other_size = numpy_to_image(np.zeros((24, 32, 3), np.uint8), "rgb8", T0 + 2, "cam", F)
    built = frame_from_messages(Matched(T0 + 2, other_size, None, corrupt(info(T0 + 2), case)), 1e-3,
                                known_intrinsics=known)
    assert built.frame.intrinsics is None and built.info_invalid, "no valid intrinsics known for 32x24 images"


def test_known_intrinsics_keep_a_bounded_number_of_image_sizes_the_least_recently_used_forgotten():
    known = KnownIntrinsics(sizes=2)
    k = [Intrinsics.from_fov(w, h, 60.0) for w, h in ((64, 48), (32, 24), (16, 12))]
    known.remember(64, 48, k[0])
    known.remember(32, 24, k[1])
    assert known.get(64, 48) == k[0]  # 64x48 is now the most recently used
    known.remember(16, 12, k[2])
    assert len(known) == 2 and known.get(32, 24) is None
    assert known.get(64, 48) == k[0] and known.get(16, 12) == k[2]


def test_one_corrupt_camera_info_in_a_good_stream_neither_guesses_nor_restarts_the_stream():
    from nut_ros.pipeline.backends import make_backend
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig
    from nut_ros.ros.processor import FrameProcessor, ProcessorSettings

    pipeline = StreamingPipeline(make_backend("torch", "tiny", device="cpu", random_init=True),
                                 PipelineConfig(motion_prior="none", depth_from_motion="off"))
    processor = FrameProcessor(pipeline, ProcessorSettings(depth_source="none"), flavor=F)
    used = []
    for i in range(3):
        stamp = T0 + i * 10**8
        msg = info(stamp)
        processor.add_info(corrupt(msg, "K zero") if i == 1 else msg)
        outcome = processor.process(processor.add_image(image(stamp, value=40 * i)))
        assert outcome.drop is None, outcome.drop
        used.append(outcome.frame.intrinsics)
    assert used == [K, K, K]
    assert pipeline.stats.resets["input_changed"] == 0
    assert processor.diagnostic_values()["camera_info_rejected"] == 1


def test_depth_from_another_camera_frame_is_not_used_as_aligned():
    depth = depth_to_image(np.full((48, 64), 2.0, np.float32), T0, "camera_depth_optical_frame", "32FC1", F)
    built = frame_from_messages(Matched(T0, image(frame_id="camera_color_optical_frame"), depth), 1e-3)
    assert built.frame.depth_m is None and built.depth_rejected
    (note,) = built.notes
    assert "'camera_depth_optical_frame'" in note and "'camera_color_optical_frame'" in note
    assert "aligned_depth_to_color" in note
    for image_frame, depth_frame in (("cam", "cam"), ("cam", ""), ("", "depth")):  # same frame, or one unset
        depth.header.frame_id = depth_frame
        built = frame_from_messages(Matched(T0, image(frame_id=image_frame), depth), 1e-3)
        assert built.frame.depth_m is not None and not built.depth_rejected, (image_frame, depth_frame)


@pytest.mark.parametrize("case", ["mono16", "truncated", "over max_pixels"])
def test_an_undecodable_depth_image_is_one_without_valid_pixels(case):
    """Not an invalid frame: a depth image without valid pixels, like a blinded sensor's (the pipeline drops such a
    frame in a stream with depth, and a longer run of them starts a stream without depth)."""
    big = case == "over max_pixels"  # (the image's 64x48 is under the cap, the depth's 128x96 over it)
    depth = depth_to_image(np.full((96, 128) if big else (48, 64), 2.0, np.float32), T0, "cam", "32FC1", F)
    if case == "mono16":
        depth.encoding = "mono16"
    elif case == "truncated":
        depth.data = bytes(depth.data)[:100]
    built = frame_from_messages(Matched(T0, image(), depth), 1e-3, max_pixels=5000 if big else 0)
    depth_m = built.frame.depth_m
    assert depth_m.shape == (48, 64) and np.isnan(depth_m).all() and not built.depth_rejected
    (note,) = built.notes
    assert note.startswith("depth image not decodable: ") and note.endswith("without valid pixels"), note


def test_images_waiting_for_their_depth_are_in_the_diagnostics():
    from nut_ros.ros.processor import FrameProcessor, ProcessorSettings

    class StubPipeline:
        motion_prior = "none"

    processor = FrameProcessor(StubPipeline(), ProcessorSettings(depth_source="topic"), flavor=F)
    processor.add_info(info())
    for i in range(3):
        assert processor.add_image(image(T0 + i * 10**8)) is None
    assert processor.diagnostic_values()["frames_pending"] == 3
    depth = depth_to_image(np.ones((48, 64), np.float32), T0 + 2 * 10**8, "cam", "32FC1", F)
    assert processor.add_depth(depth).stamp_ns == T0 + 2 * 10**8, "the newest image meets its depth"
    values = processor.diagnostic_values()
    assert values["frames_pending"] == 0 and values["frames_unpaired"] == 2, "the two older ones are dropped"
    h = processor.health
    assert h.dropped_invalid == h.unpaired == 2, "unpaired images count among the dropped, as PipelineStats says"


def test_rectified_images_take_their_intrinsics_from_p():
    """image_proc's image_rect carries the raw camera's CameraInfo: K and d of the distorted images, P of the
    rectified ones. With distortion and a valid P the intrinsics are P's; without distortion K's; with distortion
    and no valid P K's, with the note that nothing is undistorted."""
    msg = info()
    msg.p = np.array([55.0, 0, 30.0, 0, 0, 56.0, 22.0, 0, 0, 0, 1, 0])
    assert camera_info_to_intrinsics(msg) == K, "no distortion: K"
    msg.d = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    rect = Intrinsics(55.0, 56.0, 30.0, 22.0, 64, 48)
    assert camera_info_to_intrinsics(msg) == rect
    built = frame_from_messages(Matched(T0, image(), None, msg), 1e-3)
    assert built.frame.intrinsics == rect
    assert any("P[:3, :3]" in n and "image_rect" in n for n in built.notes), built.notes
    msg.binning_x = msg.binning_y = 2  # binning and ROI apply to P as to K
    assert camera_info_to_intrinsics(msg) == rect.scaled(32, 24)
    msg.binning_x = msg.binning_y = 0
    msg.p = np.zeros(12)
    assert camera_info_to_intrinsics(msg) == K
    built = frame_from_messages(Matched(T0, image(), None, msg), 1e-3)
    assert any("no valid P" in n and "image_rect" in n for n in built.notes), built.notes


def test_raw_images_of_a_distorting_lens_are_rectified_with_their_depth_when_asked():
    """With a rectifier, the image and its aligned depth of a distorted CameraInfo are remapped onto the camera of the
    frame's intrinsics (P's), as the rectifier maps them, images of a lower resolution by the lens scaled to them;
    not without distortion, nor with binning, a K that is no camera or an unknown model, which a note says."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)
    depth = rng.uniform(0.5, 4.0, (48, 64)).astype(np.float32)
    msg = info()
    msg.p = np.array([55.0, 0, 30.0, 0, 0, 56.0, 22.0, 0, 0, 0, 1, 0])
    raw = numpy_to_image(pixels, "rgb8", T0, "cam", F)
    depth_msg = depth_to_image(depth, T0, "cam", flavor=F)
    built = frame_from_messages(Matched(T0, raw, depth_msg, msg), 1e-3, rectifier=Rectifier())
    assert np.array_equal(built.frame.rgb, pixels), "no distortion: as it is"
    msg.d = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    built = frame_from_messages(Matched(T0, raw, depth_msg, msg), 1e-3, rectifier=Rectifier())
    lens = lens_of(msg)
    assert np.array_equal(built.frame.rgb, Rectifier().rgb(lens, pixels))
    np.testing.assert_array_equal(built.frame.depth_m, Rectifier().depth(lens, depth))
    assert not np.array_equal(built.frame.rgb, pixels) and built.frame.intrinsics == camera_info_to_intrinsics(msg)
    assert built.notes == []
    small = numpy_to_image(pixels[::2, ::2], "rgb8", T0, "cam", F)  # a lower resolution of the calibrated camera
    built = frame_from_messages(Matched(T0, small, None, msg), 1e-3, rectifier=Rectifier())
    assert np.array_equal(built.frame.rgb, Rectifier().rgb(lens.scaled(32, 24), pixels[::2, ::2]))
    assert built.frame.intrinsics == camera_info_to_intrinsics(msg).scaled(32, 24)
    msg.binning_x = msg.binning_y = 2
    built = frame_from_messages(Matched(T0, small, None, msg), 1e-3, rectifier=Rectifier())
    assert np.array_equal(built.frame.rgb, pixels[::2, ::2]) and any("not rectified" in n for n in built.notes)
    msg.binning_x = msg.binning_y = 0
    k, msg.k = msg.k, np.zeros(9)  # P valid (the intrinsics), but no raw camera to undistort
    built = frame_from_messages(Matched(T0, raw, None, msg), 1e-3, rectifier=Rectifier())
    assert np.array_equal(built.frame.rgb, pixels) and any("CameraInfo.k" in n for n in built.notes), built.notes
    msg.k = k
    msg.distortion_model = "kannala_brandt"
    built = frame_from_messages(Matched(T0, raw, None, msg), 1e-3, rectifier=Rectifier())
    assert np.array_equal(built.frame.rgb, pixels)
    assert any("kannala_brandt" in n and "not rectified" in n for n in built.notes), built.notes


def test_the_lens_is_the_raw_camera_turned_onto_p_or_onto_k_without_a_valid_p():
    """image_geometry's rectification: K and d of the raw images, R (all zeros: no turn), P[:3, :3]; K for a P that is
    no camera. A region of interest covering the whole image is no region."""
    msg = info()
    msg.d = np.array([-0.3, 0.1, 0.001, 0.0, 0.0, 0.02, 0.0, 0.0])
    msg.distortion_model = "rational_polynomial"
    turn = np.array([[1.0, 0, 0], [0, 0.995, -0.0998], [0, 0.0998, 0.995]])
    msg.r = turn.ravel()
    msg.p = np.array([55.0, 0, 30.0, -3.0, 0, 56.0, 22.0, 0, 0, 0, 1, 0])
    lens = lens_of(msg)
    assert (lens.model, lens.d, lens.width, lens.height) == ("rational_polynomial", tuple(msg.d), 64, 48)
    assert lens.k == tuple(np.asarray(msg.k, float)) and lens.r == tuple(turn.ravel())
    assert lens.p == (55.0, 0, 30.0, 0, 56.0, 22.0, 0, 0, 1)
    msg.r, msg.p = np.zeros(9), np.zeros(12)
    lens = lens_of(msg)
    assert lens.r == tuple(np.eye(3).ravel()) and lens.p == lens.k
    msg.roi.width, msg.roi.height = 64, 48
    pixels = np.random.default_rng(2).integers(0, 255, (48, 64, 3), np.uint8)
    built = frame_from_messages(Matched(T0, numpy_to_image(pixels, "rgb8", T0, "cam", F), None, msg), 1e-3,
                                rectifier=Rectifier())
    assert built.notes == [] and np.array_equal(built.frame.rgb, Rectifier().rgb(lens, pixels))


def test_a_frame_whose_camera_info_is_corrupt_is_rectified_by_the_last_lens():
    """It takes the last valid intrinsics (P's), so its images must be rectified as the frames before were."""
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)
    raw = numpy_to_image(pixels, "rgb8", T0, "cam", F)
    msg = info()
    msg.d = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    msg.p = np.array([55.0, 0, 30.0, 0, 0, 56.0, 22.0, 0, 0, 0, 1, 0])
    known, rectifier = KnownIntrinsics(), Rectifier()
    good = frame_from_messages(Matched(T0, raw, None, msg), 1e-3, known_intrinsics=known, rectifier=rectifier)
    bad = frame_from_messages(Matched(T0, raw, None, corrupt(msg, "0x0")), 1e-3, known_intrinsics=known,
                              rectifier=rectifier)
    assert bad.info_invalid and bad.frame.intrinsics == good.frame.intrinsics
    assert np.array_equal(bad.frame.rgb, good.frame.rgb) and not np.array_equal(bad.frame.rgb, pixels)


@pytest.mark.parametrize("mode, topic, rectified", [
    ("auto", "/camera/color/image_raw", True), ("auto", "/camera/image_rect_color", False),
    ("auto", "/oak/rgb/image_rect/compressed", False), ("auto", "/cam/rectified/image", False),
    ("auto", "/direct_cam/image_raw", True), ("auto", "/cam/rect/image", False), ("auto", "/cam/image_undistorted", False),
    ("always", "/camera/image_rect", True),
    ("never", "/camera/image_raw", False)])
def test_rectify_auto_rectifies_unless_the_topic_says_its_images_are(mode, topic, rectified):
    assert rectifies(mode, topic) == rectified


def test_rejected_depth_camera_info_and_odometry_are_counted():
    from nut_ros.ros.odometry import pose_to_odometry
    from nut_ros.ros.processor import FrameProcessor, ProcessorSettings

    class StubPipeline:
        motion_prior = "none"

    processor = FrameProcessor(StubPipeline(), ProcessorSettings(use_odometry=True), flavor=F)
    depth = depth_to_image(np.ones((48, 64), np.float32), T0, "cam", "32FC1", F)
    depth.header.stamp.nanosec = 1_500_000_000  # not a valid ROS time
    assert processor.add_depth(depth) is None
    bad_info = info()
    bad_info.header.stamp.nanosec = 1_500_000_000
    assert processor.add_info(bad_info) is None
    odom = pose_to_odometry(np.eye(4), T0, "odom", "base", F)
    odom.pose.pose.position.x = float("nan")
    assert "odometry ignored" in processor.add_odometry(odom)
    values = processor.diagnostic_values()
    assert (values["depth_rejected"], values["camera_info_rejected"], values["odometry_rejected"]) == (1, 1, 1)
    foreign = depth_to_image(np.ones((48, 64), np.float32), T0, "other_camera", "32FC1", F)
    processor.build(Matched(T0, image(), foreign, corrupt(info(), "0x0")))
    values = processor.diagnostic_values()
    assert (values["depth_rejected"], values["camera_info_rejected"]) == (2, 2)


@pytest.mark.parametrize("header_frame, parameter, warned", [("", "", True), ("", "cam_optical", False),
                                                            ("cam", "", False)])
def test_an_image_without_a_frame_id_is_said_unless_the_parameter_names_one(header_frame, parameter, warned):
    from nut_ros.ros.processor import FrameProcessor, ProcessorSettings

    class StubPipeline:
        motion_prior = "none"

    processor = FrameProcessor(StubPipeline(), ProcessorSettings(depth_source="none", frame_id=parameter), flavor=F)
    frame, notes = processor.build(Matched(T0, image(frame_id=header_frame), None, info()))
    assert frame.frame_id == (parameter or header_frame)
    assert any("header.frame_id is empty" in n for n in notes) == warned, notes
