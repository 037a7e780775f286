"""What the perception stage hands to the ROS layer (plain numpy, no ROS)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Obstacle:
    """One tracked moving object; fields map one to one onto ``nav2_dynamic_msgs/Obstacle`` (plus covariances,
    confidence and age). Position and velocity are in the frame of the :class:`ObstacleList`; the velocity is the
    motion over the ground (the camera's own motion removed), expressed in that frame's axes."""

    id: uuid.UUID
    position: np.ndarray  # [3] box centre
    velocity: np.ndarray  # [3] per second
    size: np.ndarray  # [3] box extents along the frame's axes
    position_covariance: np.ndarray  # [3, 3]
    velocity_covariance: np.ndarray  # [3, 3]
    confidence: float  # in (0, 1]: detections over frames tracked
    age: int  # frames since the track was created


@dataclass
class ObstacleList:
    """The obstacles of one frame, in the camera optical frame of that frame (``frame_id``)."""

    stamp_ns: int
    frame_id: str
    metric: bool  # True: metres and m/s; False: the pipeline's relative units
    obstacles: list[Obstacle] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.obstacles)


@dataclass
class PerceptionOutput:
    """One :meth:`nut_ros.perception.processor.PerceptionProcessor.update` result."""

    obstacles: ObstacleList
    camera_pose: np.ndarray  # [4, 4] T_fixed<-camera of this frame (odometry, or integrated from the key frame)
    fixed_frame: str  # "odometry" (the poses' world frame) or "keyframe" (first camera frame of the stream)
    map_due: bool  # the map changed and its snapshot period has elapsed: publish ``processor.map_snapshot()``
    moving_gaussians: int  # Gaussians classified as moving this frame
    latency_ms: dict[str, float] = field(default_factory=dict)
