"""Input messages -> pipeline Frame: bad input is a ConversionError or an adaptation note, never a crash (ROS-free:
the messages are rosbags objects, which the conversions accept like rclpy ones)."""
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros.conversions import (ConversionError, depth_to_image, intrinsics_to_camera_info, msg_class,
                                     numpy_to_image)
from nut_ros.ros.input_sync import Matched
from nut_ros.ros.inputs import depth_metres, frame_from_messages

F = "rosbags"
STAMP = 1_234_000_000_567
RGB = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
K = Intrinsics(30.0, 30.0, 15.5, 11.5, 32, 24)


def image(rgb=RGB, encoding="rgb8", frame_id="cam"):
    return numpy_to_image(rgb, encoding, STAMP, frame_id, F)


def test_frame_carries_pixels_stamp_frame_id_and_intrinsics():
    built = frame_from_messages(Matched(STAMP, image(), None, intrinsics_to_camera_info(K, STAMP, "cam", F)), 0.001)
    f = built.frame
    assert f.stamp_ns == STAMP and f.frame_id == "cam" and f.intrinsics == K and f.depth_m is None
    np.testing.assert_array_equal(f.rgb, RGB)
    assert built.notes == []
    assert frame_from_messages(Matched(STAMP, image()), 0.001, frame_id="override").frame.frame_id == "override"


def test_bgr_and_mono_images_become_rgb():
    bgr = frame_from_messages(Matched(STAMP, image(RGB[:, :, ::-1].copy(), "bgr8")), 0.001).frame.rgb
    np.testing.assert_array_equal(bgr, RGB)
    mono = frame_from_messages(Matched(STAMP, image(RGB[:, :, 0].copy(), "mono8")), 0.001).frame.rgb
    assert mono.shape == (24, 32, 3)


@pytest.mark.parametrize("mutate, field", [
    (lambda m: setattr(m, "encoding", "yuv422_weird"), "Image.encoding"),
    (lambda m: setattr(m, "data", m.data[:100]), "Image.data"),
    (lambda m: setattr(m, "step", 10), "Image.step"),
    (lambda m: setattr(m, "width", 0), "Image.height/width"),
])
def test_broken_images_raise_conversion_errors_naming_the_field(mutate, field):
    msg = image()
    mutate(msg)
    with pytest.raises(ConversionError, match=field.replace(".", r"\.")):
        frame_from_messages(Matched(STAMP, msg), 0.001)


def test_depth_16uc1_uses_depth_scale_and_invalid_values_become_nan():
    raw = np.array([[0, 1000], [2500, 65535]], np.uint16)
    msg = numpy_to_image(raw, "16UC1", STAMP, "cam", F)
    np.testing.assert_allclose(depth_metres(msg, 0.001), [[np.nan, 1.0], [2.5, 65.535]])
    np.testing.assert_allclose(depth_metres(msg, 0.0001), [[np.nan, 0.1], [0.25, 6.5535]], rtol=1e-6)


def test_depth_32fc1_nan_inf_zero_negative_become_nan():
    d = np.array([[np.nan, np.inf], [0.0, -1.0], [1.5, 2.0]], np.float32)
    out = depth_metres(depth_to_image(d, STAMP, "cam", "32FC1", F), 0.001)
    assert np.isnan(out[:2]).all() and out[2].tolist() == [1.5, 2.0]


def test_depth_of_another_size_is_resized_onto_the_image_unless_its_aspect_differs():
    depth = depth_to_image(np.full((12, 16), 2.0, np.float32), STAMP, "cam", "32FC1", F)
    built = frame_from_messages(Matched(STAMP, image(), depth), 0.001)
    assert built.frame.depth_m.shape == (24, 32) and np.all(built.frame.depth_m == 2.0)
    assert "resized" in built.notes[0]
    other_aspect = depth_to_image(np.full((24, 24), 2.0, np.float32), STAMP, "cam", "32FC1", F)
    built = frame_from_messages(Matched(STAMP, image(), other_aspect), 0.001)  # not aligned: the frame goes RGB only
    assert built.frame.depth_m is None and "another aspect ratio" in built.notes[0] and "ignored" in built.notes[0]


def test_camera_info_of_another_size_is_scaled_or_ignored():
    half = Intrinsics(15.0, 15.0, 7.5, 5.5, 16, 12)
    built = frame_from_messages(Matched(STAMP, image(), None, intrinsics_to_camera_info(half, STAMP, "cam", F)), 1e-3)
    assert built.frame.intrinsics == half.scaled(32, 24) and "scaled" in built.notes[0]

    other_aspect = Intrinsics(15.0, 15.0, 7.5, 7.5, 16, 16)
    built = frame_from_messages(Matched(STAMP, image(), None, intrinsics_to_camera_info(other_aspect, STAMP, "cam", F)),
                                1e-3)
    assert built.frame.intrinsics is None and "ignored" in built.notes[0]


def test_uncalibrated_camera_info_is_ignored_with_a_note():
    info = intrinsics_to_camera_info(K, STAMP, "cam", F)
    info.k = np.zeros(9)
    built = frame_from_messages(Matched(STAMP, image(), None, info), 1e-3)
    assert built.frame.intrinsics is None and "CameraInfo ignored" in built.notes[0]


def test_compressed_images_are_decoded():
    from nut_ros.ros.conversions import compress_image

    msg = compress_image(RGB, "rgb8", "png", stamp_ns=STAMP, frame_id="cam", flavor=F)
    assert msg_class("sensor_msgs/msg/CompressedImage", F) is type(msg)
    np.testing.assert_array_equal(frame_from_messages(Matched(STAMP, msg), 1e-3).frame.rgb, RGB)
