"""Our conversions against the ROS reference implementations: ``cv_bridge`` (images, compressed images) and
``sensor_msgs_py.point_cloud2`` (clouds), byte for byte, in both directions."""
import numpy as np
import pytest

from nut_ros.ros.compressed import compress_image, decompress_image
from nut_ros.ros.encodings import ENCODINGS
from nut_ros.ros.images import image_to_depth_m, image_to_numpy, image_to_rgb, numpy_to_image
from nut_ros.ros.pointcloud import pack_rgb, pointcloud2_to_points, points_to_pointcloud2

from test_conv_images import _pixels  # noqa: E402  random pixels of every encoding

RNG = np.random.default_rng(7)


def _same_message(a, b):
    assert (a.header.stamp.sec, a.header.stamp.nanosec, a.header.frame_id) == \
        (b.header.stamp.sec, b.header.stamp.nanosec, b.header.frame_id)
    assert (a.height, a.width, a.encoding, a.is_bigendian, a.step) == (b.height, b.width, b.encoding,
                                                                        b.is_bigendian, b.step)
    assert bytes(a.data) == bytes(b.data)


#: newer sensor_msgs names of yuv422 and yuv422_yuy2 that cv_bridge does not know (it raises "Unrecognized image
#: encoding"); we read them as their older names
CV_BRIDGE_UNKNOWN = ("uyvy", "yuyv")


@pytest.mark.ros
@pytest.mark.cv_bridge
@pytest.mark.parametrize("encoding", [e for e in ENCODINGS if e not in CV_BRIDGE_UNKNOWN])
def test_images_equal_cv_bridge_both_ways(encoding):
    from cv_bridge import CvBridge

    bridge = CvBridge()
    pixels = _pixels(encoding)
    ours = numpy_to_image(pixels, encoding, 1_700_000_000_000_000_123, "cam", "rclpy")
    theirs = bridge.cv2_to_imgmsg(pixels, encoding=encoding)
    theirs.header = ours.header
    _same_message(ours, theirs)
    assert np.array_equal(image_to_numpy(theirs), bridge.imgmsg_to_cv2(ours))
    assert np.array_equal(image_to_numpy(ours), bridge.imgmsg_to_cv2(ours, desired_encoding="passthrough"))


@pytest.mark.ros
@pytest.mark.cv_bridge
@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
                                      "bayer_grbg8", "yuv422", "yuv422_yuy2"])
def test_rgb_view_equals_cv_bridge_rgb8(encoding):
    from cv_bridge import CvBridge

    msg = numpy_to_image(_pixels(encoding, 8, 10), encoding, 0, "cam", "rclpy")
    assert np.array_equal(image_to_rgb(msg), CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))


@pytest.mark.ros
@pytest.mark.cv_bridge
def test_8uc3_is_read_as_bgr_where_cv_bridge_refuses_colour_conversion():
    """A documented difference: 8UC3 has no channel order; we read it in OpenCV's (BGR), cv_bridge refuses."""
    from cv_bridge import CvBridge, CvBridgeError

    pixels = _pixels("8UC3")
    msg = numpy_to_image(pixels, "8UC3", 0, "cam", "rclpy")
    with pytest.raises(CvBridgeError, match="not a color format"):
        CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    assert np.array_equal(image_to_rgb(msg), pixels[:, :, ::-1])


@pytest.mark.ros
@pytest.mark.cv_bridge
@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_equals_cv_bridge_in_metres(encoding):
    from cv_bridge import CvBridge

    msg = numpy_to_image(_pixels(encoding), encoding, 0, "cam", "rclpy")
    raw = CvBridge().imgmsg_to_cv2(msg).astype(np.float32)
    expected = raw / np.float32(1000.0) if encoding == "16UC1" else raw
    expected[~(expected > 0)] = np.nan
    np.testing.assert_array_equal(image_to_depth_m(msg), expected)


@pytest.mark.ros
@pytest.mark.cv_bridge
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_images_equal_cv_bridge(fmt):
    from cv_bridge import CvBridge

    bridge = CvBridge()
    bgr = _pixels("bgr8", 32, 48)
    ours = compress_image(bgr, "bgr8", fmt, flavor="rclpy")
    theirs = bridge.cv2_to_compressed_imgmsg(bgr, dst_format="jpg" if fmt == "jpeg" else "png")
    pixels, encoding = decompress_image(ours)
    assert encoding == "bgr8" and np.array_equal(pixels, bridge.compressed_imgmsg_to_cv2(ours))
    their_pixels, _ = decompress_image(theirs)
    assert np.array_equal(their_pixels, bridge.compressed_imgmsg_to_cv2(theirs))
    if fmt == "png":  # lossless: all four equal the input
        assert np.array_equal(pixels, bgr) and np.array_equal(their_pixels, bgr)


@pytest.mark.ros
@pytest.mark.ros_tools
@pytest.mark.parametrize("with_rgb", [True, False])
def test_pointcloud_equals_sensor_msgs_py_both_ways(with_rgb):
    from sensor_msgs.msg import PointField
    from sensor_msgs_py import point_cloud2
    from std_msgs.msg import Header

    xyz = RNG.normal(size=(500, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, (500, 3)).astype(np.uint8) if with_rgb else None
    ours = points_to_pointcloud2(xyz, rgb, 1_700_000_000_000_000_007, "cam", "rclpy")
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(("x", "y", "z", "rgb")[:4 if with_rgb else 3])]
    columns = [xyz[:, 0], xyz[:, 1], xyz[:, 2]] + ([pack_rgb(rgb)] if with_rgb else [])
    points = np.rec.fromarrays(columns, names=[f.name for f in fields])
    theirs = point_cloud2.create_cloud(Header(stamp=ours.header.stamp, frame_id="cam"), fields, points)
    assert (ours.height, ours.width, ours.point_step, ours.row_step, ours.is_bigendian) == \
        (theirs.height, theirs.width, theirs.point_step, theirs.row_step, theirs.is_bigendian)
    assert ours.is_dense and not theirs.is_dense, "ours says the cloud has no invalid points; create_cloud never does"
    assert [(f.name, f.offset, f.datatype, f.count) for f in ours.fields] == \
        [(f.name, f.offset, f.datatype, f.count) for f in theirs.fields]
    assert bytes(ours.data) == bytes(theirs.data)
    read = point_cloud2.read_points(ours, field_names=("x", "y", "z"))
    assert np.array_equal(np.stack([read["x"], read["y"], read["z"]], axis=1), xyz)
    back_xyz, back_rgb = pointcloud2_to_points(theirs)
    assert np.array_equal(back_xyz, xyz) and (back_rgb is None if rgb is None else np.array_equal(back_rgb, rgb))
