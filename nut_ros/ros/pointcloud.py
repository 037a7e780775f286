"""numpy <-> ``sensor_msgs/PointCloud2`` (x, y, z float32 and optional packed ``rgb``) without sensor_msgs_py.

Colour uses the PCL/RViz convention: ``rgb`` is a float32 field whose bits are the uint32 ``0x00RRGGBB``.
Reading accepts any cloud whose x/y/z fields are FLOAT32 or FLOAT64 and whose ``rgb``/``rgba`` field is
FLOAT32 or UINT32, honouring ``point_step``, ``row_step`` padding and ``is_bigendian``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import as_uint8, make_header, msg_class, uint8_field

# sensor_msgs/PointField datatype constants -> numpy type
POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT32 = 7


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[N, 3]`` colours -> float32 ``[N]`` whose bits are ``0x00RRGGBB``."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """float32 or uint32 ``[N]`` packed colours -> uint8 ``[N, 3]``."""
    bits = np.ascontiguousarray(packed).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=1).astype(np.uint8)


def points_to_pointcloud2(xyz: np.ndarray, rgb: np.ndarray | None = None, stamp_ns: int = 0, frame_id: str = "",
                          flavor: str = "auto"):
    """An unorganised (height 1) PointCloud2 of ``xyz`` float ``[N, 3]`` with optional uint8 ``rgb`` ``[N, 3]``.

    ``is_dense`` is true when every coordinate is finite.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ConversionError(f"xyz: expected shape [N, 3], got {xyz.shape}")
    if rgb is not None and (np.shape(rgb) != xyz.shape):
        raise ConversionError(f"rgb: expected shape {xyz.shape} like xyz, got {np.shape(rgb)}")
    names = ["x", "y", "z"] + (["rgb"] if rgb is not None else [])
    points = np.empty(xyz.shape[0], dtype=np.dtype({"names": names, "formats": ["<f4"] * len(names)}))
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        points["rgb"] = pack_rgb(rgb)
    field_cls = msg_class("sensor_msgs/msg/PointField", flavor)
    fields = [field_cls(name=n, offset=4 * i, datatype=FLOAT32, count=1) for i, n in enumerate(names)]
    return msg_class("sensor_msgs/msg/PointCloud2", flavor)(
        header=make_header(stamp_ns, frame_id, flavor), height=1, width=xyz.shape[0], fields=fields,
        is_bigendian=False, point_step=points.dtype.itemsize, row_step=points.nbytes,
        data=uint8_field(points.view(np.uint8), flavor), is_dense=bool(np.isfinite(xyz).all()))


def _field_dtype(msg: Any) -> dict[str, tuple[np.dtype, int]]:
    order = ">" if msg.is_bigendian else "<"
    out = {}
    for field in msg.fields:
        if int(field.datatype) not in POINTFIELD_DTYPES:
            raise ConversionError(f"PointCloud2.fields[{field.name}].datatype: unknown datatype {field.datatype}")
        if int(field.offset) + np.dtype(POINTFIELD_DTYPES[int(field.datatype)]).itemsize > int(msg.point_step):
            raise ConversionError(f"PointCloud2.fields[{field.name}].offset: {field.offset} "
                                  f"beyond point_step {msg.point_step}")
        out[field.name] = (np.dtype(order + POINTFIELD_DTYPES[int(field.datatype)]), int(field.offset))
    return out


def pointcloud2_to_points(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(xyz float32 [N, 3], rgb uint8 [N, 3] or None)`` from a PointCloud2 (N = height * width, row-major)."""
    fields = _field_dtype(msg)
    for axis in "xyz":
        if axis not in fields or fields[axis][0].kind != "f":
            raise ConversionError(f"PointCloud2.fields: needs float fields x, y, z (got {sorted(fields)})")
    height, width, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    if row_step < width * point_step:
        raise ConversionError(f"PointCloud2.row_step: {row_step} is smaller than "
                              f"width * point_step = {width * point_step}")
    data = as_uint8(msg.data, "PointCloud2.data")
    if data.size < height * row_step:
        raise ConversionError(f"PointCloud2.data: {data.size} bytes, expected height * row_step = {height * row_step}")
    rows = data[: height * row_step].reshape(height, row_step)[:, : width * point_step]
    records = np.ascontiguousarray(rows).reshape(-1)
    color_name = next((n for n in ("rgb", "rgba") if n in fields), None)
    layout = {n: fields[n] for n in ("x", "y", "z") + ((color_name,) if color_name else ())}
    points = records.view(np.dtype({"names": list(layout), "formats": [d for d, _ in layout.values()],
                                    "offsets": [o for _, o in layout.values()], "itemsize": point_step}))
    xyz = np.empty((points.size, 3), dtype=np.float32)
    xyz[:, 0], xyz[:, 1], xyz[:, 2] = points["x"], points["y"], points["z"]
    if color_name is None:
        return xyz, None
    color_dtype = fields[color_name][0]
    if color_dtype.itemsize != 4:
        raise ConversionError(f"PointCloud2.fields[{color_name}].datatype: packed colour must be 4 bytes")
    return xyz, unpack_rgb(points[color_name].astype(color_dtype.newbyteorder("=")))
