"""``nut_ros.pipeline.types.GaussianCloud`` <-> ``nut_ros_msgs/GaussianSet`` (flat float32 structure of arrays)."""
from __future__ import annotations

from typing import Any

import numpy as np

from nut_ros.pipeline.types import GaussianCloud
from nut_ros.ros.errors import ConversionError
from nut_ros.ros.msg_types import as_float32, float32_field, make_header, make_time, msg_class, stamp_to_ns

# field -> values per Gaussian
LAYOUT = {"positions": 3, "scales": 3, "rotations": 4, "opacities": 1, "colors": 3, "velocities": 3}


def gaussian_cloud_to_msg(cloud: GaussianCloud, stamp_ns: int, frame_id: str, valid_time_ns: int | None = None,
                          depth_source: str = "none", flavor: str = "auto"):
    """A GaussianSet of ``cloud`` (``valid_time`` defaults to ``stamp_ns``)."""
    count = cloud.count
    fields = {}
    for name, width in LAYOUT.items():
        values = np.asarray(getattr(cloud, name))
        if values.size != count * width:
            raise ConversionError(f"GaussianCloud.{name}: expected {count} x {width} values, got shape {values.shape}")
        fields[name] = float32_field(values, flavor)
    return msg_class("nut_ros_msgs/msg/GaussianSet", flavor)(
        header=make_header(stamp_ns, frame_id, flavor),
        valid_time=make_time(stamp_ns if valid_time_ns is None else valid_time_ns, flavor),
        count=count, metric=bool(cloud.metric), depth_source=depth_source, **fields)


def msg_to_gaussian_cloud(msg: Any) -> GaussianCloud:
    """A GaussianCloud of float32 arrays (views of the message buffers where possible) from a GaussianSet."""
    count = int(msg.count)
    arrays = {name: as_float32(getattr(msg, name), f"GaussianSet.{name}", count, width)
              for name, width in LAYOUT.items()}
    arrays["opacities"] = arrays["opacities"].reshape(count)
    return GaussianCloud(metric=bool(msg.metric), **arrays)


def gaussian_set_times_ns(msg: Any) -> tuple[int, int]:
    """``(header stamp, valid_time)`` of a GaussianSet in nanoseconds."""
    return stamp_to_ns(msg.header.stamp), stamp_to_ns(msg.valid_time)
