"""nut_ros: online feed-forward dynamic Gaussian splatting from a monocular camera stream."""

__version__ = "0.1.0"
