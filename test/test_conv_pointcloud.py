"""numpy <-> sensor_msgs/PointCloud2 and CameraInfo <-> Intrinsics."""
import numpy as np
import pytest

from nut_ros.core.geometry import Intrinsics
from nut_ros.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from nut_ros.ros.cdr import deserialize, serialize
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import msg_class, uint8_field
from nut_ros.ros.pointcloud import pack_rgb, pointcloud2_to_points, points_to_pointcloud2, unpack_rgb

FLAVORS = ["rosbags", pytest.param("rclpy", marks=pytest.mark.ros)]
RNG = np.random.default_rng(1)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("with_rgb", [True, False])
def test_pointcloud_roundtrip(flavor, with_rgb):
    xyz = RNG.normal(size=(1000, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, (1000, 3)).astype(np.uint8) if with_rgb else None
    msg = points_to_pointcloud2(xyz, rgb, 42, "cam_optical", flavor)
    msg = deserialize(serialize(msg), "sensor_msgs/msg/PointCloud2", flavor)
    assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (1, 1000, 16 if with_rgb else 12, True)
    assert [f.name for f in msg.fields] == ["x", "y", "z"] + (["rgb"] if with_rgb else [])
    back_xyz, back_rgb = pointcloud2_to_points(msg)
    assert np.array_equal(back_xyz, xyz)
    assert back_rgb is None if rgb is None else np.array_equal(back_rgb, rgb)


def test_packed_rgb_matches_pcl_bit_layout():
    packed = pack_rgb(np.array([[255, 128, 1]], np.uint8))
    assert packed.dtype == np.float32 and packed.view(np.uint32)[0] == 0x00FF8001
    assert np.array_equal(unpack_rgb(packed), [[255, 128, 1]])


def test_is_dense_false_with_nan():
    xyz = np.array([[0, 0, 1], [np.nan, 0, 1]], np.float32)
    assert points_to_pointcloud2(xyz, flavor="rosbags").is_dense is False


@pytest.mark.parametrize("flavor", FLAVORS)
def test_foreign_layout_float64_bigendian_padded_organised(flavor):
    """A 2x3 organised cloud with float64 xyz, uint32 rgba, an extra field, row padding and big-endian data."""
    h, w, point_step, row_step = 2, 3, 40, 3 * 40 + 8
    xyz = RNG.normal(size=(h * w, 3))
    rgb = RNG.integers(0, 256, (h * w, 3)).astype(np.uint8)
    rec = np.zeros(h * w, np.dtype({"names": ["x", "y", "z", "intensity", "rgba"],
                                    "formats": [">f8", ">f8", ">f8", ">f4", ">u4"],
                                    "offsets": [0, 8, 16, 24, 32], "itemsize": point_step}))
    rec["x"], rec["y"], rec["z"], rec["intensity"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], 9.0
    rec["rgba"] = pack_rgb(rgb).view(np.uint32) | 0xFF000000
    data = np.zeros((h, row_step), np.uint8)
    data[:, : w * point_step] = rec.view(np.uint8).reshape(h, -1)
    field = msg_class("sensor_msgs/msg/PointField", flavor)
    fields = [field(name=n, offset=o, datatype=t, count=1)
              for n, o, t in [("x", 0, 8), ("y", 8, 8), ("z", 16, 8), ("intensity", 24, 7), ("rgba", 32, 6)]]
    msg = points_to_pointcloud2(np.zeros((1, 3), np.float32), flavor=flavor)
    msg.height, msg.width, msg.fields, msg.is_bigendian = h, w, fields, True
    msg.point_step, msg.row_step, msg.data = point_step, row_step, uint8_field(data, flavor)
    back_xyz, back_rgb = pointcloud2_to_points(deserialize(serialize(msg), "sensor_msgs/msg/PointCloud2", flavor))
    np.testing.assert_array_equal(back_xyz, xyz.astype(np.float32))
    np.testing.assert_array_equal(back_rgb, rgb)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_malformed_pointclouds(flavor):
    def cloud(**changes):
        msg = points_to_pointcloud2(np.zeros((10, 3), np.float32), flavor=flavor)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    field = msg_class("sensor_msgs/msg/PointField", flavor)
    cases = {
        r"PointCloud2\.data": cloud(data=uint8_field(np.zeros(50, np.uint8), flavor)),
        r"PointCloud2\.row_step": cloud(row_step=10),
        r"PointCloud2\.fields: needs": cloud(fields=[field(name="x", offset=0, datatype=7, count=1)]),
        r"PointCloud2\.fields\[y\]\.datatype": cloud(fields=[field(name="y", offset=0, datatype=99, count=1)]),
        r"PointCloud2\.fields\[z\]\.offset": cloud(fields=[field(name="z", offset=10, datatype=7, count=1)]),
    }
    for pattern, msg in cases.items():
        with pytest.raises(ConversionError, match=pattern):
            pointcloud2_to_points(msg)
    with pytest.raises(ConversionError, match=r"xyz: expected shape"):
        points_to_pointcloud2(np.zeros((5, 2)), flavor=flavor)
    with pytest.raises(ConversionError, match=r"rgb: expected shape"):
        points_to_pointcloud2(np.zeros((5, 3)), np.zeros((4, 3), np.uint8), flavor=flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_camera_info_roundtrip_and_errors(flavor):
    intr = Intrinsics(fx=525.0, fy=524.5, cx=319.5, cy=239.25, width=640, height=480)
    msg = deserialize(serialize(intrinsics_to_camera_info(intr, 7, "cam", flavor)), "sensor_msgs/msg/CameraInfo",
                      flavor)
    assert camera_info_to_intrinsics(msg) == intr
    assert list(msg.p[:4]) == [525.0, 0.0, 319.5, 0.0] and msg.distortion_model == "plumb_bob"
    msg.k = np.zeros(9)
    with pytest.raises(ConversionError, match=r"CameraInfo\.k"):
        camera_info_to_intrinsics(msg)
    msg = intrinsics_to_camera_info(intr, flavor=flavor)
    msg.width = 0
    with pytest.raises(ConversionError, match=r"CameraInfo\.width"):
        camera_info_to_intrinsics(msg)


def _project(k: Intrinsics, point) -> np.ndarray:
    return np.array([k.fx * point[0] / point[2] + k.cx, k.fy * point[1] / point[2] + k.cy])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_camera_info_roi_and_binning_give_the_published_images_intrinsics(flavor):
    """A point lands on the same sensor pixel through the calibrated intrinsics and through the ROI's and the
    binned image's: cropping shifts it by the ROI's offset, binning b puts full pixel u at (u + 0.5) / b - 0.5."""
    full = Intrinsics(fx=500.0, fy=502.0, cx=319.5, cy=241.0, width=640, height=480)
    point = np.array([0.3, -0.2, 2.0])
    u, v = _project(full, point)
    msg = intrinsics_to_camera_info(full, flavor=flavor)
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 160, 120, 320, 240
    crop = camera_info_to_intrinsics(msg)
    assert (crop.width, crop.height, crop.fx, crop.fy) == (320, 240, 500.0, 502.0)
    assert np.allclose(_project(crop, point), (u - 160, v - 120))
    msg.binning_x = msg.binning_y = 2
    binned = camera_info_to_intrinsics(msg)
    assert (binned.width, binned.height, binned.fx) == (160, 120, 250.0)
    assert np.allclose(_project(binned, point), ((u - 160 + 0.5) / 2 - 0.5, (v - 120 + 0.5) / 2 - 0.5))
    msg.roi.width = msg.roi.height = 0  # the default ROI: the whole image, binned
    assert camera_info_to_intrinsics(msg) == full.scaled(320, 240)
    msg.roi.x_offset, msg.roi.width, msg.roi.height = 400, 320, 240
    with pytest.raises(ConversionError, match=r"CameraInfo\.roi: .* outside"):
        camera_info_to_intrinsics(msg)


@pytest.mark.parametrize("last_row", [(0, 0, 0), (0, 0, 2), (0.01, 0, 1)])
def test_camera_info_with_a_non_pinhole_last_row_is_refused(last_row):
    msg = intrinsics_to_camera_info(Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480), flavor="rosbags")
    k = np.array(msg.k, np.float64)
    k[6:] = last_row
    msg.k = k
    with pytest.raises(ConversionError, match="last row"):
        camera_info_to_intrinsics(msg)
