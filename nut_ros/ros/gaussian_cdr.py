"""Direct CDR encoding of ``nut_ros_msgs/GaussianSet`` from a GaussianCloud (no message object).

A 150k-Gaussian set is ~10 MB; building an rclpy message and serialising it copies the arrays three times. This
writes the little-endian CDR stream (XCDR1, as rmw_fastrtps and rosbag2 use) with one copy per array, for
``Publisher.publish(bytes)`` and ``BagWriter.write_raw``. Decoders (rclpy, rosbags) read it like any other message.
"""
from __future__ import annotations

import struct

import numpy as np

from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.gaussian_msgs import LAYOUT

CDR_LE_HEADER = b"\x00\x01\x00\x00"  # encapsulation: plain CDR, little endian, no options


def _string(text: str, offset: int) -> tuple[bytes, int]:
    """A CDR string (uint32 length incl. NUL, bytes, NUL) aligned to 4 at ``offset``; returns (bytes, new offset)."""
    pad = -offset % 4
    data = text.encode() + b"\x00"
    chunk = b"\x00" * pad + struct.pack("<I", len(data)) + data
    return chunk, offset + len(chunk)


def gaussian_set_cdr(cloud: GaussianCloud, stamp_ns: int, frame_id: str, valid_time_ns: int | None = None,
                     depth_source: str = "none") -> bytes:
    """Serialised GaussianSet equal (field by field) to serialising ``gaussian_cloud_to_msg`` with the same args."""
    count = cloud.count
    valid_time_ns = stamp_ns if valid_time_ns is None else valid_time_ns
    parts: list = [CDR_LE_HEADER]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    head = struct.pack("<iI", sec, nanosec)
    frame, offset = _string(frame_id, len(head))
    parts += [head, frame]
    sec, nanosec = divmod(int(valid_time_ns), 1_000_000_000)
    tail = b"\x00" * (-offset % 4) + struct.pack("<iII?", sec, nanosec, count, bool(cloud.metric))
    offset += len(tail)
    source, offset = _string(depth_source, offset)
    parts += [tail, source]
    for name, width in LAYOUT.items():
        values = np.ascontiguousarray(getattr(cloud, name), dtype="<f4")
        if values.size != count * width:
            raise ConversionError(f"GaussianCloud.{name}: expected {count} x {width} values, got shape {values.shape}")
        parts.append(b"\x00" * (-offset % 4) + struct.pack("<I", values.size))
        parts.append(memoryview(values.reshape(-1).view(np.uint8)))
        offset += len(parts[-2]) + values.nbytes
    return b"".join(parts)
