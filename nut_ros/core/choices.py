"""The names that parameters and command lines choose from, and the defaults the node's parameters share with the
pipeline, in a module without heavy imports: the node checks its parameters before it imports torch or OpenCV, and
the modules that act on a choice import its names from here; with the argparse types the command lines share."""
import argparse
import math

#: inference backends (``nut_ros.pipeline.backends.make_backend``)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
#: where the velocities' motion comes from (``ModelConfig.motion_prior``; the pipeline also takes "auto")
MOTION_PRIORS = ("none", "flow", "learned")
#: OpenCV DIS presets, then OpenCV-contrib's sparse-to-dense flow (``nut_ros.core.motion_prior``); the node also
#: takes "auto" (``motion_prior.choose_flow_preset``)
DIS_PRESET_NAMES = ("ultrafast", "fast", "medium")
FLOW_PRESETS = (*DIS_PRESET_NAMES, "sparse_to_dense")
#: depth from the camera's own motion for frames without a depth image (``PipelineConfig.depth_from_motion``)
DEPTH_FROM_MOTION = ("auto", "off")
#: how a view between a pair's frames is rendered (``PipelineConfig.interp_blend``)
INTERP_BLENDS = ("joint", "per_frame")
#: seconds: a longer gap between processed frames' stamps starts a new stream (``PipelineConfig.max_gap_s``)
MAX_GAP_S = 1.0
#: most views rendered per frame (``render_times``): each is a render and its messages, so the list is bounded
MAX_VIEWS = 8
#: the pair times a view may show: 0 the previous frame, 1 the newest, up to 2 a prediction one interval ahead
RENDER_TIME_RANGE = (0.0, 2.0)


def positive(kind: type):
    """An argparse type: a finite number of ``kind`` above 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
        return value
    return parse
