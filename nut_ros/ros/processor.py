"""The per-frame path shared by the node, the replay evaluation and the demo; ROS-free apart from message types.

``FrameProcessor`` takes input messages as they arrive (image, depth, CameraInfo, odometry), matches them by stamp
(``input_sync.StampMatcher``), counts images lost on the way (``LossCounter``), builds the pipeline ``Frame``
(``inputs``, with the camera pose from odometry), pushes it through the ``StreamingPipeline``, runs the perception
stage on the result when it is on (``nut_ros.perception``: obstacles every frame, the local map when due) and builds
the output messages (``outputs``, ``obstacle_msgs``), keeping the health counters the node publishes.
``build_pipeline`` and ``processor_settings`` turn the node's parameters into the pipeline and the processor, for
the node and replay alike. The node calls ``add_*`` from its callbacks and ``process`` from its worker thread; replay
calls both in bag order with a clock that follows the bag's stamps.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nut_ros.geometry.rectify import Rectifier
from nut_ros.pipeline.types import Frame, StepResult
from nut_ros.ros.conversions import ConversionError, points_to_pointcloud2
from nut_ros.ros.health import NodeHealth
from nut_ros.ros.input_sync import LossCounter, Matched, StampMatcher
from nut_ros.ros.inputs import KnownIntrinsics, frame_from_messages
from nut_ros.ros.msg_types import check_stamp, check_time
from nut_ros.ros.obstacle_msgs import map_messages, obstacle_markers, obstacles_to_msg
from nut_ros.ros.odometry import IDENTITY, PoseBuffer, odometry_pose
from nut_ros.ros.outputs import STEP_OUTPUTS, VIEW_OUTPUTS, step_messages, view_messages
from nut_ros.ros.params import NodeParams
from nut_ros.ros.stop_signals import stop_requested
from nut_ros.ros.topics import MAP_OUTPUTS, OUTPUT_TYPES, length_output, output_types, switch_of

#: seconds (of the processor's clock) of odometry from other frames only, without any from the latched source, after
#: which the other frames are taken instead
ODOMETRY_SOURCE_TIMEOUT_S = 2.0
#: how the node's warning begins when its network failed to compile and runs eagerly (the demo looks for it)
COMPILE_FALLBACK = "compile: true failed while warming up"


#: how long a frame is held for the odometry pose at or after its stamp, when the odometry is close behind the images
#: (:meth:`FrameProcessor.await_pose`): odometry at 10 Hz brings a pose every 0.1 s, plus its transport
ODOMETRY_WAIT_S = 0.15


@dataclass
class ProcessorSettings:
    """What the per-frame path needs from the node's parameters (``NodeParams.processor_settings``)."""

    depth_source: str = "auto"  # auto | topic | none
    depth_scale: float = 0.001
    sync_tolerance_s: float = 0.02
    sync_buffer: int = 10
    depth_timeout_s: float = 1.0
    info_timeout_s: float | None = None  # None: depth_timeout_s
    frame_id: str = ""
    max_input_pixels: int = 0  # 0: no cap
    rectify: bool = False  # rectify the images of a CameraInfo with lens distortion (nut_ros.geometry.rectify)
    outputs: frozenset = frozenset(VIEW_OUTPUTS + STEP_OUTPUTS)
    use_odometry: bool = False
    camera_mount: np.ndarray | None = None  # T_child<-camera_optical; None: identity
    mount_from_tf: bool = False  # the node sets the mount from TF (camera_frame): no pose until it has
    perception: tuple | None = None  # (ObstacleParams, MapParams): the perception stage runs; None: it does not
    perception_compile: bool = False  # torch.compile the stage's dense part (on a GPU, inside its CUDA graphs)
    map_frame: str = ""  # frame of the map with odometry; empty: the odometry's header.frame_id
    keyframe_frame: str = ""  # map frame without odometry (the first camera frame); empty: <image frame_id>_keyframe
    marker_lifetime_s: float = NodeParams.marker_lifetime

    def __post_init__(self):
        """``ValueError`` for values the per-frame path cannot use (also on ``dataclasses.replace``)."""
        for name in ("depth_scale", "sync_tolerance_s", "marker_lifetime_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.outputs, (set, frozenset)) or not self.outputs <= set(OUTPUT_TYPES):
            raise ValueError(f"outputs must be a set of output names ({', '.join(OUTPUT_TYPES)}), got "
                             f"{self.outputs!r}")


@dataclass
class Outcome:
    """What happened to one matched frame: ``result`` and ``messages`` when processed, else ``drop`` says why."""

    frame: Frame | None = None
    result: StepResult | None = None
    messages: list[tuple[str, int, Any]] = field(default_factory=list)  # (output name, stamp ns, message)
    drop: str | None = None
    notes: list[str] = field(default_factory=list)


class FrameProcessor:
    """Matching, frame building, pipeline, output messages and health counters of one camera stream."""

    def __init__(self, pipeline, settings: ProcessorSettings, clock: Callable[[], float] = time.monotonic,
                 flavor: str = "auto", serialized_gaussians: bool = False):
        self.pipeline, self.settings = pipeline, settings
        self.flavor, self.serialized_gaussians = flavor, serialized_gaussians
        self.matcher = StampMatcher(settings.depth_source, int(settings.sync_tolerance_s * 1e9), settings.sync_buffer,
                                    settings.depth_timeout_s, clock, settings.info_timeout_s)
        self.losses = LossCounter()
        mount = None if settings.mount_from_tf else IDENTITY if settings.camera_mount is None else settings.camera_mount
        self.poses = PoseBuffer(mount) if settings.use_odometry else None
        self._clock = clock
        self.odometry_source: tuple[str, str] | None = None  # (header.frame_id, child_frame_id) of the odometry used
        self._other_source: tuple[tuple[str, str], float] | None = None  # another source, since when it alone came
        self.known_intrinsics = KnownIntrinsics()  # for frames whose CameraInfo is invalid
        self.rectifier = Rectifier() if settings.rectify else None
        self.health = NodeHealth()
        self._unmatched_seen = 0
        self.last_intrinsics = None
        self.metric, self.depth_source = False, "none"
        self.perception = None
        if settings.perception is not None:
            from nut_ros.perception import PerceptionProcessor

            self.perception = PerceptionProcessor(*settings.perception, compile=settings.perception_compile)
        self._compile_error_noted = False
        self._fit_kernel_noted = False
        self.odometry_frame = ""  # header.frame_id of the last usable odometry message
        self.image_frame = ""  # header.frame_id of the last image built into a frame
        self._map_frame_noted = False
        self._pose_resets = 0  # the pose buffer's resets the perception stage has restarted for
        self._frame_resets = 0  # the pose buffer's resets when the last frame's pose was read
        self._map_points_output: str | None = None  # where the last map's points went (map_points or its twin)

    # -- inputs (cheap; the node's executor thread) ----------------------------------------------------------------
    def add_image(self, msg, seq: int | None = None, publisher: Any = None) -> Matched | None:
        """Count and buffer an image; the newest complete match (or None). Bad stamps are counted drops."""
        self.health.count(received=1)
        try:
            stamp = check_time(msg.header.stamp, "image header.stamp")
        except ConversionError:
            stamp = None
        lost = self.losses.add(stamp, seq, publisher)
        if lost:
            self.health.count(lost=lost)
        if stamp is None:
            self.health.count(dropped_invalid=1)
            return None
        return self._counted(self.matcher.add_image(stamp, msg))

    def add_depth(self, msg) -> Matched | None:
        """Buffer a depth image; the newest complete match (or None). Bad stamps are counted (``depth_rejected``)."""
        try:
            stamp = check_time(msg.header.stamp, "depth header.stamp")
        except ConversionError:
            self.health.count(depth_rejected=1)
            return None
        return self._counted(self.matcher.add_depth(stamp, msg))

    def add_info(self, msg) -> Matched | None:
        """Buffer a CameraInfo; the match it completes (or None). Bad stamps are counted (``camera_info_rejected``)."""
        try:
            stamp = check_time(msg.header.stamp, "CameraInfo header.stamp")
        except ConversionError:
            self.health.count(camera_info_rejected=1)
            return None
        return self._counted(self.matcher.add_info(stamp, msg))

    def poll(self) -> Matched | None:
        """An image whose wait for its depth ended without a message since (:meth:`StampMatcher.poll`), if any."""
        return self._counted(self.matcher.poll())

    def add_odometry(self, msg) -> str | None:
        """Buffer an odometry pose; the reason when the message is unusable, or a note on the pose buffer (cleared,
        a glitch dropped, the source switched), else None. Unusable messages are counted (``odometry_rejected``).

        The first usable message latches the source, its ``header.frame_id`` and ``child_frame_id``: messages of
        other frames (two sources on one topic) are ignored, unless one other source alone has come for
        ``ODOMETRY_SOURCE_TIMEOUT_S``; then it is taken and the poses cleared (and, with the mount from TF, the
        mount forgotten until the node looks it up for the new child frame)."""
        if self.poses is None:
            return None
        try:
            stamp, pose = check_time(msg.header.stamp, "odometry header.stamp"), odometry_pose(msg)
        except (ConversionError, ValueError) as err:
            self.health.count(odometry_rejected=1)
            return f"odometry ignored: {err}"
        source, note = (msg.header.frame_id, msg.child_frame_id), None
        if self.odometry_source is not None and source != self.odometry_source:
            old = "{!r} -> {!r}".format(*self.odometry_source)
            now = self._clock()
            if self._other_source is None or self._other_source[0] != source:
                self._other_source = (source, now)
            if now - self._other_source[1] <= ODOMETRY_SOURCE_TIMEOUT_S:
                self.health.count(odometry_rejected=1)
                return ("odometry of {!r} -> {!r} ignored: the odometry used is of ".format(*source) + old +
                        " (two sources on one topic? remap odom to one of them)")
            note = ("odometry now of {!r} -> {!r}: ".format(*source) + f"only it came for over "
                    f"{ODOMETRY_SOURCE_TIMEOUT_S:g} s, none of {old}; the poses of {old} are cleared")
            if not (self.settings.mount_from_tf and self.poses.set_mount(None)):
                self.poses.clear()
        self.odometry_source, self._other_source = source, None
        far = float(np.abs(pose[:3, 3]).max())
        if self.perception is not None and far > self.perception.map.reach:
            self.health.count(odometry_rejected=1)
            return (f"odometry ignored: its position lies {far:.0f} m from the origin of {msg.header.frame_id!r}, "
                    f"beyond the {self.perception.map.reach:.0f} m the local map reaches at map_voxel "
                    f"{self.perception.map.p.voxel} m: publish the odometry in a local frame")
        buffered = self.poses.add(stamp, pose)
        self.odometry_frame = msg.header.frame_id
        return note or buffered

    def _counted(self, matched: Matched | None) -> Matched | None:
        new = self.matcher.unmatched - self._unmatched_seen
        if new:  # images superseded or evicted while waiting for their depth or a first CameraInfo
            self.health.count(dropped_invalid=new, unpaired=new)
            self._unmatched_seen = self.matcher.unmatched
        return matched

    # -- processing (the node's worker thread) ---------------------------------------------------------------------
    def update(self, **changes) -> None:
        """Change settings between frames (``outputs``, ``depth_scale``, ``frame_id``, ``max_input_pixels``,
        ``sync_tolerance_s``, ``marker_lifetime_s``) or the pipeline's (``render_times``, ``interp_window``,
        ``interp_samples``, ``interp_blend``)."""
        pipeline_fields = {f.name for f in dataclasses.fields(self.pipeline.config)}
        ours = {k: v for k, v in changes.items() if k not in pipeline_fields}
        theirs = {k: v for k, v in changes.items() if k in pipeline_fields}
        # both checked before either applies (ValueError): a refused change leaves everything as it was
        settings = dataclasses.replace(self.settings, **ours)
        config = dataclasses.replace(self.pipeline.config, **theirs)
        self.settings, self.pipeline.config = settings, config
        self.matcher.tolerance_ns = int(settings.sync_tolerance_s * 1e9)

    def await_pose(self, stamp_ns: int, timeout_s: float = ODOMETRY_WAIT_S) -> None:
        """With odometry, wait (at most ``timeout_s``) while the pose at or after ``stamp_ns`` is still to come, so
        that the frame's pose is interpolated rather than held or missing (the node's worker thread waits; its
        executor adds the poses)."""
        if self.poses is not None:
            self.poses.wait_covered(stamp_ns, timeout_s)

    def pose_pending(self, stamp_ns: int) -> bool:
        """With odometry, whether the pose at or after ``stamp_ns`` is still to come (:meth:`PoseBuffer.pending`)."""
        return self.poses is not None and self.poses.pending(stamp_ns)

    def build(self, matched: Matched) -> tuple[Frame, list[str]]:
        """The pipeline frame of a match (raises ``ConversionError``), and notes on what was adapted."""
        s = self.settings
        pose = None
        notes = []
        self.image_frame = matched.image.header.frame_id
        if not (self.image_frame or s.frame_id):
            notes.append("image header.frame_id is empty and so is the frame_id parameter: the outputs name no frame, "
                         "which RViz and TF cannot place (set frame_id to the camera's optical frame)")
        if self.poses is not None:
            pose, self._frame_resets = self.poses.camera_pose_and_resets(matched.stamp_ns)
            if pose is None:
                why = "" if self.poses.mount is not None else " (the camera mount is not known yet)"
                notes.append(f"no odometry at the image stamp{why}: frame used without a camera pose")
        built = frame_from_messages(matched, s.depth_scale, s.frame_id, s.max_input_pixels, pose,
                                    self.known_intrinsics, self.rectifier)
        self.health.count(depth_rejected=int(built.depth_rejected), camera_info_rejected=int(built.info_invalid))
        return built.frame, built.notes + notes

    def process(self, matched: Matched, push: Callable[[Frame], StepResult | None] | None = None,
                arrived: float | None = None) -> Outcome:
        """Build the frame, push it (``push`` defaults to the pipeline's) and build the output messages."""
        try:
            frame, notes = self.build(matched)
        except ConversionError as err:
            self.health.count(dropped_invalid=1)
            return Outcome(drop=str(err))
        drops_before = Counter(self.pipeline.stats.drops)
        unusable_before = self.pipeline.stats.depth_unusable
        try:
            result = (push or self.pipeline.push)(frame)
        except ValueError as err:
            self.health.count(dropped_invalid=1)
            return Outcome(frame, drop=str(err), notes=notes)
        unusable = self.pipeline.stats.depth_unusable - unusable_before
        if unusable or "depth_invalid" in self.pipeline.stats.drops - drops_before:
            notes.append(self._unusable_depth_note(used=bool(unusable)))
        if unusable:
            self.health.count(depth_unusable=unusable)
        if result is None:
            reasons = ", ".join((self.pipeline.stats.drops - drops_before).keys()) or "held out"
            self.health.count(dropped_invalid=1)
            return Outcome(frame, drop=f"frame at {frame.stamp_ns} ns dropped by the pipeline: {reasons}",
                           notes=notes)
        try:
            messages = self.messages(result, frame.frame_id)
        except ConversionError as err:  # e.g. a predicted view stamped past the end of ROS time
            self.health.count(dropped_invalid=1)
            return Outcome(frame, result, drop=str(err), notes=notes)
        if self.perception is not None:
            messages += self.perception_messages(result, frame)
            if self.perception.compile_error and not self._compile_error_noted:
                self._compile_error_noted = True
                notes.append(f"perception_compile failed, the perception stage runs without it: "
                             f"{self.perception.compile_error}")
            if self.perception.fit_kernel_error and not self._fit_kernel_noted:
                self._fit_kernel_noted = True
                notes.append(f"the camera-motion fit's Triton kernel failed, the fit runs in torch: "
                             f"{self.perception.fit_kernel_error}")
            notes += self._map_frame_note()
        self.metric, self.depth_source = result.metric, result.depth_source
        self.health.count(processed=1, frames_without_pose=int(self.poses is not None and frame.camera_pose is None))
        total = {} if arrived is None else {"total": (time.perf_counter() - arrived) * 1e3}
        self.health.record_latency({**result.latency_ms, **total})
        return Outcome(frame, result, messages, notes=notes)

    def _map_frame_note(self) -> list[str]:
        """Once: a warning when ``map_frame`` names another frame than the odometry's (the map's coordinates are the
        odometry's; ``map_frame`` only names them)."""
        map_frame, odometry = self.settings.map_frame, self.odometry_frame
        if self._map_frame_noted or not map_frame or not odometry or map_frame == odometry:
            return []
        self._map_frame_noted = True
        return [f"map_frame {map_frame!r} is not the odometry's frame {odometry!r}: the map's coordinates are in "
                f"{odometry!r} and only labelled {map_frame!r} (no transform is applied): set map_frame to "
                f"{odometry!r} or leave it empty"]

    def _unusable_depth_note(self, used: bool) -> str:
        config = self.pipeline.config
        what = (f"under {config.min_valid_depth_fraction:.0%} of its pixels within {config.depth_min_m:g}-"
                f"{config.depth_max_m:g} m")
        if used:
            return f"depth image unusable ({what}): frame used without depth (RGB only)"
        return (f"depth image unusable ({what}): frame dropped to keep the stream's depth; after "
                f"{config.max_gap_s:g} s of such images a new stream starts without depth")

    def messages(self, result: StepResult, frame_id: str) -> list[tuple[str, int, Any]]:
        """``(output name, stamp, message)`` of the enabled outputs, views in time order, then the step's."""
        enabled = set(self.settings.outputs)
        for view in result.views:
            check_stamp(view.stamp_ns, f"view at pair time {view.pair_time}")
        out = []
        views = sorted(result.views, key=lambda v: v.pair_time)
        for view, msgs in zip(views, view_messages(result, frame_id, enabled & set(VIEW_OUTPUTS), self.flavor)):
            out += [(name, view.stamp_ns, msg) for name, msg in msgs.items()]
        step = step_messages(result, frame_id, enabled & set(STEP_OUTPUTS), self.flavor, self.serialized_gaussians)
        out += [(name, result.stamp_ns, msg) for name, msg in step.items()]
        return out

    def perception_messages(self, result: StepResult, frame: Frame) -> list[tuple[str, int, Any]]:
        """Run the perception stage on ``result``: the obstacles (camera optical frame, every frame, empty too) and,
        when due, the local map (odometry frame with odometry, else ``keyframe_frame``), for the enabled outputs. The
        map's points go to ``map_points`` or ``relative/map_points`` by its scale; when the scale changes (the map
        starts again), the latched topic holding the old map gets an empty cloud at once (once enabled, if its
        switch is off), so neither keeps a map that no longer holds."""
        s, enabled = self.settings, self.settings.outputs
        # the pose buffer was cleared before this frame's pose was read: the odometry frame no longer holds (a reset
        # after the read shows in the next frame, whose pose is the first in the new frame)
        if self._frame_resets != self._pose_resets:
            self._pose_resets = self._frame_resets
            self.perception.restart()
        out = self.perception.update(result, frame.camera_pose)
        out.obstacles.frame_id = s.frame_id or frame.frame_id
        messages = []
        if "obstacles" in enabled:
            messages.append(("obstacles", result.stamp_ns, obstacles_to_msg(out.obstacles, self.flavor)))
        if "obstacle_markers" in enabled:
            messages.append(("obstacle_markers", result.stamp_ns,
                             obstacle_markers(out.obstacles, s.marker_lifetime_s, self.flavor)))
        if out.fixed_frame == "odometry":
            fixed = s.map_frame or self.odometry_frame
        else:
            fixed = s.keyframe_frame or f"{s.frame_id or self.image_frame}_keyframe"
        points_output = length_output("map_points", self.perception.map.metric)
        stale = self._map_points_output
        if stale not in (None, points_output) and stale in enabled:
            empty = points_to_pointcloud2(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                                          result.stamp_ns, fixed, self.flavor)
            messages.append((stale, result.stamp_ns, empty))
            self._map_points_output = None
        if out.map_due and enabled & set(MAP_OUTPUTS):
            snapshot = self.perception.map_snapshot()
            points, gaussians = map_messages(snapshot, result.stamp_ns, fixed, result.depth_source, self.flavor)
            messages += [(name, result.stamp_ns, msg) for name, msg in zip((points_output, "map"), (points, gaussians))
                         if name in enabled]
            if points_output in enabled:
                self._map_points_output = points_output
        self.health.record_latency(out.latency_ms)
        return messages

    def diagnostic_values(self) -> dict[str, str | float | int]:
        """What /diagnostics adds to the stats message's numbers: the motion prior the velocities come from
        (learned, flow or none), the inputs' rejection counts and the perception stage's values.

        ``frames_pending``: images held now, waiting for their depth image (within ``sync_tolerance``) or a first
        CameraInfo; ``frames_unpaired``: images dropped (counted in ``frames_dropped_invalid``) because a newer one
        was matched first or the wait outlasted the buffer; ``depth_rejected``: depth images dropped for an invalid
        stamp, and frames whose matched depth image was not used (another frame_id or aspect ratio than the image's);
        ``camera_info_rejected``: CameraInfos dropped for an invalid stamp, and frames whose matched CameraInfo was
        invalid; ``odometry_rejected``: odometry messages not used (invalid, of another source, out of the local map's
        reach, a glitch in the stamps, before the mount from TF is known); ``odometry_resets``: times the pose buffer
        was cleared (stamps jumping back, a mount or source change); ``frames_without_pose``: frames processed without
        a pose with use_odometry."""
        h, poses = self.health, self.poses
        return {"motion_prior": self.pipeline.motion_prior, "frames_depth_unusable": h.depth_unusable,
                "frames_pending": self.matcher.pending, "frames_unpaired": h.unpaired,
                "depth_rejected": h.depth_rejected, "camera_info_rejected": h.camera_info_rejected,
                "odometry_rejected": h.odometry_rejected + (poses.rejected if poses is not None else 0),
                "odometry_resets": poses.resets if poses is not None else 0,
                "frames_without_pose": h.frames_without_pose, **self.perception_values()}

    def perception_values(self) -> dict[str, float | int]:
        """Diagnostics of the perception stage (mean latencies, frames skipped, frames without obstacle detection
        because no depth image gave their depth, frames of an odometry stream without a pose); empty when it is
        off."""
        if self.perception is None:
            return {}
        return {"latency_obstacles_ms": self.health.mean_latency("obstacles"),
                "latency_map_ms": self.health.mean_latency("map"),
                "perception_frames_skipped": self.perception.frames_skipped,
                "perception_frames_without_depth_image": self.perception.frames_without_depth_image,
                "perception_frames_without_pose": self.perception.frames_without_pose}

    def note_intrinsics(self, intrinsics) -> str | None:
        """A log line when the camera's intrinsics changed (the first ones are not a change)."""
        changed = intrinsics is not None and self.last_intrinsics is not None and intrinsics != self.last_intrinsics
        if intrinsics is not None:
            self.last_intrinsics = intrinsics
        return f"CameraInfo changed: {intrinsics}" if changed else None


def rectifies(mode: str, image_topic: str) -> bool:
    """Whether the images of ``image_topic`` are rectified (``rectify`` mode): auto, unless a part of the topic's
    name starts with ``image_rect`` (image_proc's ``image_rect``, ``image_rect_color``), is ``rect`` or holds
    ``rectified`` or ``undistort``."""
    named = any(part.startswith("image_rect") or part == "rect" or "rectified" in part or "undistort" in part
                for part in image_topic.split("/"))
    return mode == "always" or mode == "auto" and not named


def processor_settings(p: NodeParams, image_topic: str = "") -> ProcessorSettings:
    """The per-frame path's settings from the node's parameters; ``image_topic``: the resolved topic of the images
    (for ``rectify: auto``)."""
    from nut_ros.ros.odometry import mount_matrix

    enabled = frozenset(n for n in output_types(p.perception) if n != "stats" and getattr(p, f"publish_{switch_of(n)}"))
    return ProcessorSettings(depth_source=p.depth_source, depth_scale=p.depth_scale,
                             sync_tolerance_s=p.sync_tolerance, sync_buffer=p.sync_buffer,
                             depth_timeout_s=p.depth_timeout, frame_id=p.frame_id,
                             max_input_pixels=p.max_input_pixels, rectify=rectifies(p.rectify, image_topic),
                             outputs=enabled, use_odometry=p.use_odometry,
                             camera_mount=mount_matrix(p.camera_mount),
                             perception=p.perception_params() if p.perception else None,
                             perception_compile=p.perception_compile, map_frame=p.map_frame,
                             keyframe_frame=p.keyframe_frame, marker_lifetime_s=p.marker_lifetime)


def build_pipeline(p: NodeParams, log=None):
    """Backend and ``StreamingPipeline`` for the parameters (imports torch); raises with the reason on failure."""
    from nut_ros.core.motion_prior import choose_flow_preset
    from nut_ros.pipeline.backends import default_checkpoint, make_backend
    from nut_ros.pipeline.stream import StreamingPipeline
    from nut_ros.pipeline.types import PipelineConfig

    weights = Path(p.checkpoint) if p.checkpoint else default_checkpoint(p.model)
    random_init = p.random_init and p.backend == "torch" and not weights.exists()
    if p.random_init and not random_init and log is not None:
        log.info(f"random_init ignored: weights exist at {weights}")
    options = ({"bf16": p.bf16, "compile": p.compile, "cuda_graphs": p.cuda_graphs and p.device.startswith("cuda")}
               if p.backend == "torch" else {})
    if p.backend == "torch" and p.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():  # say so, instead of a loader error that seems to blame the weights
            raise RuntimeError(f"device {p.device}: torch {torch.__version__} sees no CUDA device (built for CUDA "
                               f"{torch.version.cuda or 'none'}); set device: cpu")
    try:
        backend = make_backend(p.backend, p.model, p.checkpoint or None, p.device, random_init=random_init,
                               **options)
    except Exception as err:  # noqa: BLE001 - name the weights in whatever the loader raised
        source = "random weights" if random_init else str(weights if p.backend == "torch" else p.checkpoint)
        raise RuntimeError(f"cannot load {p.backend} backend from {source}: {type(err).__name__}: {err}") from err
    config = backend.model_config
    if p.checkpoint and config.name != p.model:
        raise ValueError(f"checkpoint {p.checkpoint} holds model {config.name!r}, but parameter model is {p.model!r}")
    native = config.image_size
    if p.input_width and (p.input_height, p.input_width) != tuple(native):
        raise ValueError(f"input size {p.input_width}x{p.input_height} differs from the model's "
                         f"{native[1]}x{native[0]}")
    if random_init and log is not None:
        log.warning(f"no weights at {weights}: running with a randomly initialised model (random_init: true)")
    pipeline = StreamingPipeline(backend, PipelineConfig(
        render_times=tuple(p.render_times), motion_prior=p.motion_prior,
        flow_preset=choose_flow_preset(p.flow_preset, p.perception),
        flow_max_width=p.flow_max_width, flow_check=p.flow_check, interp_window=p.interp_window,
        interp_samples=p.interp_samples, interp_blend=p.interp_blend, depth_from_motion=p.depth_from_motion,
        motion_depth_width=p.motion_depth_width, opencv_threads=p.opencv_threads, network_depth=p.network_depth,
        max_gap_s=p.max_gap_s))
    if p.perception and log is not None:  # the obstacles' velocities come from the Gaussians' motion
        if pipeline.motion_prior != "flow":
            log.warning(f"perception with motion prior {pipeline.motion_prior!r}: the obstacles' velocities come "
                        f"from the Gaussians' motion, and motion_prior flow gives better ones (docs/ROS_SETUP.md)")
        elif pipeline.flow_prior.preset != "sparse_to_dense":
            log.warning(f"perception with the motion prior's flow {pipeline.flow_prior.preset}: the obstacles "
                        "measured more precise with sparse_to_dense (flow_preset: auto picks it where OpenCV has the "
                        "contrib modules, pip: opencv-contrib-python-headless)")
    return pipeline


def warm_up(p: NodeParams, build: Callable[[NodeParams, Any], Any], log) -> tuple[Any, float]:
    """``(pipeline, seconds)``: ``build(p, log)``'s pipeline once it has warmed up. With ``compile`` on, a network
    that fails to compile (e.g. no C++ compiler on a CPU host, which Inductor's CPU kernels need) does not leave the
    node unconfigured: ``build`` makes the pipeline again without ``compile``, with a warning. Any other failure is
    raised."""
    pipeline = build(p, log)
    try:
        return pipeline, pipeline.warm_up()
    except Exception as err:  # noqa: BLE001 - only a compile failure is caught (below); the rest is raised again
        if stop_requested() or not (p.compile and p.backend == "torch" and compile_failure(err)):
            raise
        log.warning(f"{COMPILE_FALLBACK}, the network runs eagerly (slower: docs/BENCHMARKS.md): "
                    f"{type(err).__name__}: {str(err)[:500]}")
    pipeline = None  # (the failed one's memory is free before the eager one loads)
    pipeline = build(dataclasses.replace(p, compile=False), log)
    return pipeline, pipeline.warm_up()


def compile_failure(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, is torch.compile's (Dynamo's or Inductor's, the C++ compiler
    of its CPU kernels included)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError

    while err is not None:
        if isinstance(err, (TorchDynamoException, CppCompileError)):
            return True
        err = err.__cause__ or err.__context__
    return False
