"""The per-frame perception stage: moving obstacles with stable ids, and the persistent local map.

One :class:`PerceptionProcessor` per camera stream; call :meth:`PerceptionProcessor.update` with every
:class:`~nut_ros.pipeline.types.StepResult` the pipeline returns (and the frame's odometry pose when the robot has
one). Per frame it

1. thins the live Gaussians to at most ``max_gaussians`` (fixed stride) and keeps the opaque ones in range and,
   with a metric depth input, those on it (:func:`on_input_depth`: the network invents a depth where the sensor
   gave none, such as an undistorted image's border and the holes of a real depth camera, and the flow near
   those borders clings to them);
2. gets the camera's motion over the pair as the apparent velocity field of static points: from the two odometry
   poses, else fitted robustly to the Gaussians' velocities (:mod:`nut_ros.perception.ego_motion`), and integrates
   the pose in the key frame (the stream's first camera frame) when there is no odometry;
3. takes each Gaussian's velocity over the ground as its velocity minus that field (turned into the current
   camera's axes by the pair's rotation), with the depth rate replaced
   by the one measured against the Gaussians of ``change_baseline`` frames back where known
   (:mod:`nut_ros.perception.depth_change`) and, with odometry, the image-plane velocity by the shift of the depth
   pattern since that frame where it is clear (``shift_max``, ``shift_min_gain``), averages it over the Gaussian's
   image cell (``score_cell_px``: a mover's flow is coherent, much of the static noise is not) and marks it moving
   when that (optical z weighted by ``depth_rate_weight``) exceeds its threshold where the depth rate is known
   (not at depth edges, on grazing surfaces or in space the earlier frame did not see: the flow is unreliable
   there). The threshold is ``moving_speed + moving_speed_per_m · z`` (for pairs of ``floor_interval_s``; ×2 at
   twice that frame rate) plus, per component, the error that grows with the camera's own motion: ``flow_error_ratio
   · |static field_xy|`` for the image plane (flow and odometry stamps err by a share of the apparent motion;
   ``learned_flow_error_ratio`` when the learned flow head made the velocities; up to ``1 + edge_flow_gain`` times
   that within ``edge_flow_px`` of the image's edge, where the flow's window is cut, and ``flow_error_growth`` more
   per ``flow_error_knee_px`` of the pair's static displacement beyond that knee, where pairs far apart move the
   view further than the flow follows) and that times the surface slope
   for the depth rate (the older depths, registered with that error, read as a depth change ``slope ·``
   displacement on a slanted surface);
4. clusters the moving Gaussians (voxel connected components) into objects of at least ``min_cluster_gaussians``
   (fewer beyond ``min_cluster_depth``, as the image area of an object falls, though only full-sized clusters
   start a track), cuts each to its depth layer
   (``depth_band`` around its median depth: a mover's flow bleeds onto the floor and wall the voxels connect it
   to), keeps those whose members span neither more than ``max_size`` (structure whose flow is wrong) nor less
   than ``min_width`` across the view (slivers along depth edges; with odometry, along an image axis where the
   image's edge cuts the object, ``border_px``, such a sliver is kept but starts no track), boxes each between its
   members' ``box_trim`` quantiles (a few stray members do not stretch it; a cut box reaches out past the edge), and
   tracks them in the fixed frame (:mod:`nut_ros.perception.tracking`; velocities mostly from the tracks'
   positions, ``velocity_std``; a track starts confirmed from a cluster of ``birth_members`` whose measured
   depth rate reaches ``birth_depth_rate``);
   confirmed tracks are reported in the current camera optical frame with their velocity over the ground;
5. offers a subset of the static Gaussians, moved into the fixed frame, to the :class:`LocalMap`: those of the map's
   own ``min_opacity`` and ``max_range`` (beyond the obstacles' ``max_range`` none is tested for motion).

Obstacles come only from frames whose depth came from a depth image (``depth_image_only``): depth from the camera's
own motion assumes a static scene, and the obstacles found on it were nearly all false (the parameter's comment has
the figures); such frames still feed the local map, and the tracks are dropped.

Steps 1-3 and the choice of the map's candidates run in torch on the device that holds the Gaussians
(``StepResult.device_cloud``, the pipeline's cloud table where it left it, e.g. on the GPU; else the numpy cloud on
the CPU), as functions of tensors only (:mod:`nut_ros.perception.dense`): on a GPU they are captured once per stream
settings as a CUDA graph and replayed per frame (``cuda_graphs``), with the per-frame numbers (camera motion, pose,
intervals) uploaded into it without waiting. The host gets, in one download, the moving Gaussians (clustering and
tracking are numpy, and scipy's assignment, on the host: hundreds of points) and the counts; the map's candidates
stay on the device, where the map is (:mod:`nut_ros.perception.local_map`, inserting waits for nothing; on a GPU
every candidate slot is offered between queueing the download and waiting for it, moved into the fixed frame and
the counted ones of a trusted frame marked inside the dense graph (:class:`~nut_ros.perception.dense.Offer`), and
the insertion is one graph replay too, so the host clusters and tracks while the device runs the insertion).
Without odometry the camera-motion fit (its sample of ``ego_samples`` selected rows spread at a random offset the
host draws, the same on the CPU; on a GPU one Triton kernel for its reweighting rounds) runs in the same call as
steps 1-3 (:func:`~nut_ros.perception.dense.fit_then_find`): the device moves the pose by the fitted motion and
makes the map's camera row from it, and the fit's result and the pose come down with the moving Gaussians, so a
frame has one graph and one wait with odometry or without. A frame of an odometry stream without a pose fits first
and then searches (two calls).

With ``compile`` (a GPU with ``cuda_graphs`` only) the dense functions go through ``torch.compile`` before their
graphs are captured: the graphs then replay Inductor's fused kernels instead of the eager operations. Each plan
compiles once per process, on the first frame that uses it (tens of seconds; torch's on-disk cache shortens later
starts); on the CPU the rows are not padded to a fixed count, so every frame's shapes would compile anew, and
``compile`` is ignored.
Where compiling fails the stage goes on eager and says why in ``compile_error``.

Without odometry a stream restart (``result.paired`` false) or a change of units restarts the key frame, the tracks
and the map; with odometry only a change of units does, and a stream restart (a gap past the pipeline's
``max_gap_s``) or time going back restarts the tracks and the depth-rate memory (a track coasted over the gap would
be reported where its object is not). A frame of an odometry stream without a pose (the odometry late or lost) keeps
the stream: its camera motion is fitted as without odometry and moves the last pose (``frames_without_pose``), and
the next pose from odometry is not compared with that estimate. :meth:`PerceptionProcessor.restart` (the node calls it
when its odometry poses are cleared: stamps jumping back, another source, another camera mount) restarts the stream
with the next frame, as a change of units does. When the map restarts, it is due at once, so the published map never
outlives the one it showed.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from nut_ros.core.geometry import Intrinsics, project
from nut_ros.core.rotations import matrix_to_quaternion
from nut_ros.perception import fit_kernel
from nut_ros.perception.clustering import Clusters, cluster_points, cluster_stats, group_median
from nut_ros.perception.dense import (CANDIDATE_SPLIT, Found, Offer, Rows, StageInputs, StagePlan, affine_rows,
                                      candidate_slots, depth_change, downloaded_part, find_moving, fit_sample,
                                      fit_then_find, frame_tensor, frame_trusted, select_rows, unpack)
from nut_ros.perception.ego_motion import MotionField, field_from_poses, field_of, fit_trusted, pose_step
from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams, ObstacleParams
from nut_ros.perception.tensors import Uploader, download, download_queued, one_thread
from nut_ros.perception.tracking import Detection, MultiObjectTracker
from nut_ros.perception.types import Obstacle, ObstacleList, PerceptionOutput
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.types import CLOUD_COLUMNS, GaussianCloud, StepResult

UNMEASURED_RATE_STD = 1e3  # m/s: the tracker's noise of an object's depth rate that was not measured (no weight)


def fewest_members(op: ObstacleParams, depth):
    """The fewest moving Gaussians a cluster at ``depth`` (its members' median, optical z) needs before its depth
    band: ``min_cluster_gaussians`` up to ``min_cluster_depth``, beyond it falling as the object's image area
    (``(min_cluster_depth / depth)²``)."""
    return op.min_cluster_gaussians * np.minimum(1.0, (op.min_cluster_depth / np.maximum(depth, 1e-6)) ** 2)


def cut_by_border(points: np.ndarray, labels: np.ndarray, n: int, k: Intrinsics, border_px: float) -> np.ndarray:
    """Per cluster (``labels`` 0..n-1 of camera-frame ``points``) and image axis (x, y): -1 where a member lies
    within ``border_px`` pixels of the image's low edge (left, top) of camera ``k``, +1 of its high edge, 0 neither
    or both (the image's edge cuts the object there: only part of it is seen); ``[n, 2]`` int, all 0 when
    ``border_px`` is 0."""
    cut = np.zeros((n, 2), np.int64)
    if border_px <= 0 or n == 0:
        return cut
    for axis, (pixel, size) in enumerate(zip(project(points, k), (k.width, k.height))):
        low = np.bincount(labels, weights=pixel < border_px - 0.5, minlength=n) > 0
        high = np.bincount(labels, weights=pixel > size - 0.5 - border_px, minlength=n) > 0
        cut[:, axis] = high.astype(np.int64) - low
    return cut


class PerceptionProcessor:
    """Obstacles and local map from a stream of pipeline results (see the module docstring)."""

    def __init__(self, obstacles: ObstacleParams = ObstacleParams(), local_map: MapParams = MapParams(),
                 seed: int | None = None, cuda_graphs: bool = True, compile: bool = False):
        self.op, self.mp = obstacles, local_map
        self.tracker = MultiObjectTracker(obstacles, seed)
        self.map = LocalMap(local_map, cuda_graphs=cuda_graphs)
        self.change = depth_change(obstacles)
        self._rng = np.random.default_rng(seed)
        self._upload_depth, self._upload_frame = Uploader(), Uploader()
        self._pad: torch.Tensor | None = None  # on a GPU: the frame's rows padded with NaN rows (see _padded) ...
        self._pad_filled = 0  # ... of which the last frame filled this many
        self.reset()  # the stream's state
        # a cluster's mean velocity as a measurement, camera axes: the depth rate is 1/depth_rate_weight noisier
        z_std = obstacles.velocity_std / obstacles.depth_rate_weight
        self._velocity_cov = np.diag([obstacles.velocity_std ** 2] * 2 + [z_std ** 2])
        self._map_s = 0.0
        self.frames_skipped = 0  # frames that could detect but had no trusted camera motion: they detect nothing
        self.frames_without_depth_image = 0  # frames without detections because no depth image gave their depth
        self.frames_without_pose = 0  # frames of an odometry stream without a pose (camera motion fitted instead)
        self.cuda_graphs = cuda_graphs  # on a GPU, replay the dense stage as CUDA graphs (else launch it op by op)
        self._plan: StagePlan | None = None  # the plan of the graphed call running now
        # what the graphs capture: the dense functions as they are, or compiled (no fullgraph: past torch's
        # recompile limit, many plans in one process, a function runs eager instead of failing)
        self._dense = {fn: torch.compile(fn, dynamic=False) if compile else fn
                       for fn in (fit_sample, find_moving, fit_then_find)}
        self.compile_error: str | None = None  # why compiling failed (the stage then runs eager)
        self._graph_dense()

    def _graph_dense(self) -> None:
        """One :class:`GraphedCall` per dense function (as :attr:`_dense` holds it: compiled or not)."""
        self._graphed = {fn: GraphedCall(lambda *inputs, fn=dense: fn(StageInputs(*inputs), self._plan),
                                         key=lambda: (self._plan,)) for fn, dense in self._dense.items()}

    @property
    def fit_kernel_error(self) -> str | None:
        """Why the camera-motion fit's Triton kernel could not run on this GPU (the torch fit runs then), or None."""
        return fit_kernel.error

    def restart(self) -> None:
        """Start the stream again with the next frame, as a change of units does: the fixed frame no longer holds
        (the odometry's source or the camera's mount changed). The emptied map is due at once."""
        self._frame_lost = True

    def reset(self) -> None:
        """Forget tracks, map and key frame."""
        self._frame_lost = False  # restart() was called
        self.tracker.reset()
        self.map.reset()
        self.change.reset()
        self._pose = np.eye(4)  # T_fixed<-camera of the last frame
        self._stamp_ns: int | None = None
        self._odometry: bool | None = None  # the stream has odometry (held frames included)
        self._metric: bool | None = None
        self._posed = False  # the last frame's pose came from odometry
        self._registered = False  # this frame and the last have odometry poses (their depths are placed by them)
        self._trusted_field: MotionField | None = None  # the last trusted camera motion (fitted, or odometry's)
        self._map_stamp_ns: int | None = None  # stamp of the last map snapshot that was due
        self._map_changed = False

    def map_snapshot(self) -> GaussianCloud:
        """The local map in the fixed frame (a copy)."""
        return self.map.snapshot()

    def update(self, result: StepResult, camera_pose: np.ndarray | None = None) -> PerceptionOutput:
        """Process one pipeline result; ``camera_pose`` is the frame's 4x4 T_world<-camera_optical (odometry)."""
        table = result.device_cloud
        with one_thread(torch.device("cpu") if table is None else table.device):
            return self._update(result, camera_pose)

    def _update(self, result: StepResult, camera_pose: np.ndarray | None) -> PerceptionOutput:
        start = time.perf_counter()
        cloud = result.gaussians
        posed = camera_pose is not None
        # a frame of an odometry stream without a pose (the odometry late or lost): the stream goes on in the
        # odometry frame, its camera motion fitted as without odometry, from the last pose; unless it is unpaired
        # (a gap: nothing to fit from), changes units or follows restart(), which restart the stream in the key frame
        held = (bool(self._odometry) and not posed and result.paired and self._stamp_ns is not None
                and cloud.metric == self._metric and not self._frame_lost)
        odometry = posed or held
        restart = (self._stamp_ns is None or self._frame_lost or cloud.metric != self._metric
                   or odometry != self._odometry or (not odometry and not result.paired))
        if restart:
            started = self._stamp_ns is not None
            self.reset()
            self._odometry, self._metric = odometry, cloud.metric
            self.map.reset(metric=cloud.metric)
            self._map_changed = started  # the map that was published no longer holds: publish the new one at once
        dt = None if self._stamp_ns is None else (result.stamp_ns - self._stamp_ns) * 1e-9
        if dt is not None and (dt <= 0 or not result.paired):  # time went back (a looping bag, a reset clock) or
            self.tracker.reset()  # jumped past the pipeline's max gap: the odometry-frame map stays; what is timed
            self.change.reset()  # restarts (a track would be extrapolated over the gap)
            self._map_stamp_ns, dt = None, None
        self._map_s = 0.0  # seconds spent offering to the map before the obstacles were done (on a GPU)
        inputs = self._inputs(result)
        # without odometry the fit and the search for movers are one call (on a GPU one graph, one wait), which
        # moves the pose; otherwise the camera motion comes first (odometry's, or a held frame's fit)
        fitted = not odometry and result.paired and bool(result.pair_interval_s)
        if fitted:
            field, found, rng_state = self._fitted_find(result, inputs, dt)
        else:
            field, selected = self._camera_motion(result, camera_pose, inputs)
        self.frames_without_pose += held
        # the older depths were placed by odometry poses on both frames (not by a fit): the plan's odometry steps;
        # the last frame was held when the stream has odometry and that frame had no pose of its own
        after_held = bool(self._odometry) and not self._posed and self._stamp_ns is not None
        self._registered = posed and not after_held
        if field is not None:
            self._trusted_field = field
        if posed:
            self._pose = np.asarray(camera_pose, np.float64)
        elif not fitted:
            # the pose (in the key frame, or held in the odometry frame) integrates the fitted motion; a pair whose
            # fit is not trusted keeps the last trusted motion (odometry's, for a held frame), so the pose does not
            # lose the interval (it would offset every later pose, map point and track)
            if self._trusted_field is not None and result.paired and result.pair_interval_s:
                self._pose = self._pose @ np.linalg.inv(pose_step(self._trusted_field, result.pair_interval_s))
        self._stamp_ns, self._posed = result.stamp_ns, posed
        rot, trans = self._pose[:3, :3], self._pose[:3, 3]

        if not fitted:  # (fitted: found above)
            found = None
            if field is not None or odometry:  # odometry without a field (a stream's first frame): remembered only
                rng_state = self._rng.bit_generator.state
                found = self._find(result, inputs, field, dt, selected)
            else:
                self.change.reset()
        trusted = found is not None and frame_trusted(found.moving, found.valid)
        detect = result.depth_source == "topic" or not self.op.depth_image_only
        # a frame that could detect but had no trusted camera motion: a pair whose fit failed (no field), or whose
        # camera motion left too much of the view moving
        self.frames_skipped += detect and not trusted and bool(result.paired and result.pair_interval_s)
        if not detect:  # depth from motion (or none): the obstacles it gives are false alarms (depth_image_only)
            self.frames_without_depth_image += 1
            self.tracker.reset()
        elif trusted:
            self.tracker.update(self._detection(*self._objects(*found.movers, result.intrinsics), rot, trans),
                                dt if dt else 0.0)
        elif dt:  # no trusted camera motion: the tracks coast (misses once detection resumes), the map waits
            self.tracker.coast(dt)
        obstacles = self._report(result, rot, trans)
        tick = time.perf_counter()

        if trusted:
            if not self._graphs(inputs.rows):  # (on a GPU offered before the download: _offer_queued)
                self._add_to_map(found.candidates, found.candidate_points)
            self._map_changed |= found.candidates.shape[0] > 0
        if (field is not None or odometry or fitted) and not (trusted and found.eligible > self.mp.candidates):
            self._rng.bit_generator.state = rng_state  # the candidates' random offset was not used: not drawn
        map_due = self._map_changed and (self._map_stamp_ns is None or
                                         result.stamp_ns - self._map_stamp_ns >= self.mp.snapshot_period_s * 1e9)
        if map_due:
            self._map_stamp_ns, self._map_changed = result.stamp_ns, False
        end = time.perf_counter()
        latency = {"obstacles": (tick - start - self._map_s) * 1e3, "map": (end - tick + self._map_s) * 1e3}
        return PerceptionOutput(obstacles, self._pose.copy(), "odometry" if odometry else "keyframe", map_due,
                                found.moving if trusted else 0, latency)

    # -- steps -----------------------------------------------------------------------------------------------
    def _graphs(self, like: torch.Tensor) -> bool:
        return self.cuda_graphs and like.is_cuda

    def _inputs(self, result: StepResult) -> StageInputs:
        """The frame's thinned cloud (fixed stride, at most ``max_gaussians`` rows; padded with NaN rows to that
        many for a CUDA graph) and its input depth, on the stage's device; ``frame`` and ``old`` are
        placeholders (views of the rows, never read) until :meth:`_with_frame` sets them."""
        table = result.device_cloud
        n = len(result.gaussians.positions) if table is None else table.shape[0]
        stride = max(1, -(-n // self.op.max_gaussians))
        if table is None:
            g = result.gaussians
            rows = torch.as_tensor(np.concatenate(
                [np.asarray(getattr(g, name), np.float32)[::stride].reshape(-(-n // stride), cols.stop - cols.start)
                 for name, cols in CLOUD_COLUMNS.items()], 1))
        else:
            rows = table[::stride]
        if rows.shape[0] == 0:  # no Gaussians: one unselected row keeps every step's shapes non-empty
            rows = torch.full((1, rows.shape[1]), torch.nan, device=rows.device)
        if self._graphs(rows) and rows.shape[0] < self.op.max_gaussians:
            rows = self._padded(rows)
        depth = self._depth(result)
        unread = rows[:1, :3]
        if depth is not None:
            depth = depth if isinstance(depth, torch.Tensor) else self._upload_depth(depth, rows)
        return StageInputs(rows, unread[:, :1] if depth is None else depth, unread, unread)

    def _padded(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` NaN-padded to ``max_gaussians`` (a CUDA graph's fixed shape) in a table kept across frames: only
        the rows the last frame filled and this one does not are set to NaN again (the device runs the writes in
        order, after the last frame's graphs read the table)."""
        n, kept = rows.shape[0], self._pad
        if kept is None or kept.shape != (self.op.max_gaussians, rows.shape[1]) or kept.device != rows.device \
                or kept.dtype != rows.dtype:
            kept = self._pad = torch.full((self.op.max_gaussians, rows.shape[1]), torch.nan, dtype=rows.dtype,
                                          device=rows.device)
            self._pad_filled = 0
        kept[:n] = rows
        if self._pad_filled > n:
            kept[n:self._pad_filled] = torch.nan
        self._pad_filled = n
        return kept

    def _with_frame(self, inputs: StageInputs, field: MotionField, floor: float, interval: float = 0.0,
                    offset: float = 0.0, old: torch.Tensor | None = None, turn: np.ndarray = np.eye(3),
                    pair_interval: float = 0.0, fit_offset: float = 0.0, oriented: bool = False) -> StageInputs:
        """``inputs`` with the frame's numbers: the static ``field``, the current pose, the noise floors' scale, the
        time since the compared frame ``old`` (fixed frame; None: nothing compared), the drawn rows' offset, the
        camera's ``turn`` over the pair, the pair's interval, the fit's sample offset and, when ``oriented``, the
        pose's quaternion (:func:`~nut_ros.perception.dense.frame_tensor`)."""
        pose = affine_rows(self._pose[:3, :3], self._pose[:3, 3])
        frame = frame_tensor(affine_rows(field.matrix, field.offset), pose, floor, interval, offset, turn,
                             pair_interval, fit_offset,
                             matrix_to_quaternion(self._pose[:3, :3]) if oriented else (0.0, 0.0, 0.0, 1.0))
        return inputs._replace(frame=self._upload_frame(frame, inputs.rows, torch.float64),
                               old=inputs.old if old is None else old)

    def _depth(self, result: StepResult) -> np.ndarray | torch.Tensor | None:
        """The metric input depth that filters the Gaussians (``depth_tolerance``), or None: the pipeline's copy on
        the stage's device when it left one there (``StepResult.device_depth``), else the host array."""
        if self.op.depth_tolerance > 0 and result.input_depth is not None and result.gaussians.metric:
            kept, table = result.device_depth, result.device_cloud
            on_stage = kept is not None and table is not None and kept.device == table.device
            return kept if on_stage else result.input_depth
        return None

    def _plan_for(self, result: StepResult, compare: bool, odometry: bool) -> StagePlan:
        return StagePlan(self.op.for_motion(result.motion_prior), self.mp, result.intrinsics,
                         self._depth(result) is not None, compare, odometry)

    def _run(self, fn, inputs: StageInputs, plan: StagePlan, *known):
        """``fn(inputs, plan, *known)``: through its CUDA graph on a GPU (with ``cuda_graphs``; there ``known``
        results are computed again inside the graph, which costs less than giving them as inputs), else called."""
        if not self._graphs(inputs.rows):
            return fn(inputs, plan, *known)
        self._plan = plan
        try:
            return self._graphed[fn](*inputs)
        except torch._dynamo.exc.TorchDynamoException as err:  # compiling failed (e.g. no working Triton)
            if self._dense[fn] is fn:
                raise
            cause = getattr(err, "inner_exception", None) or err  # (a backend's failure: what it raised)
            self.compile_error = f"{type(cause).__name__}: {' '.join(str(cause).split())}"
            self._dense = {f: f for f in self._dense}
            self._graph_dense()
            return self._graphed[fn](*inputs)

    def _find(self, result: StepResult, inputs: StageInputs, field: MotionField | None, dt: float | None,
              selected: Rows | None = None) -> Found | None:
        """The frame's moving Gaussians and map candidates (one download; None without a camera motion ``field``);
        remembers its points for the depth rate of later frames. ``selected``: the frame's rows when the
        camera-motion fit has already selected them."""
        compared = self.change.compared(dt)
        old, interval = compared if compared is not None else (None, 0.0)
        dt_pair = result.pair_interval_s
        turn = np.eye(3) if field is None or not dt_pair else pose_step(field, dt_pair)[:3, :3].T  # R^T
        inputs = self._with_frame(inputs, MotionField.zero() if field is None else field, self._floor_scale(result),
                                  interval, self._rng.uniform(), old, turn, dt_pair or 0.0)
        plan = self._plan_for(result, compared is not None, self._registered)
        packed, world, offer = self._run(find_moving, inputs, plan, selected)
        self.change.remember(world, dt)
        if field is None:
            return None
        m = inputs.rows.shape[0]
        if not self._graphs(inputs.rows):
            return unpack(packed, m, self.mp.candidates, offer)
        # on a GPU the host's part is copied first, the map's insertion queued behind it and only the copy waited
        # for: the host launches the insertion while the device runs the graph, and clusters and tracks while it
        # runs the insertion
        host, ready = download_queued(downloaded_part(packed, m))
        self._offer_queued(packed, m, offer)
        if ready is not None:
            ready.synchronize()
        return unpack(packed, m, self.mp.candidates, offer, host)

    def _fitted_find(self, result: StepResult, inputs: StageInputs, dt: float | None) -> tuple[
            MotionField | None, Found | None, dict]:
        """Without odometry: the pair's fitted camera motion and the frame's moving Gaussians in one call
        (:func:`~nut_ros.perception.dense.fit_then_find`; on a GPU one graph and one wait), the pose moved on the
        device by the fitted motion, or by the last trusted one when the fit is not trusted (then no field and
        nothing found); remembers the frame's points for the depth rate of later frames. Also the random generator's
        state before the candidates' offset was drawn."""
        compared = self.change.compared(dt)
        old, interval = compared if compared is not None else (None, 0.0)
        fit_offset = self._rng.uniform()
        rng_state = self._rng.bit_generator.state
        inputs = self._with_frame(inputs, self._trusted_field or MotionField.zero(), self._floor_scale(result),
                                  interval, self._rng.uniform(), old, pair_interval=result.pair_interval_s,
                                  fit_offset=fit_offset, oriented=True)
        plan = self._plan_for(result, compared is not None, False)
        packed, world, offer, fitted, camera = self._run(fit_then_find, inputs, plan)
        m, host = inputs.rows.shape[0], None
        if self._graphs(inputs.rows):  # (see _find; the fit and the new pose come down with the moving rows)
            host, _ = download_queued(downloaded_part(packed, m))
            fitted, ready = download_queued(fitted)
            self._offer_queued(packed, m, offer, camera)
            if ready is not None:
                ready.synchronize()
        else:
            fitted = download(fitted)
        fit, pose = fitted[:9], fitted[9:].reshape(4, 3)
        self._pose = np.eye(4)
        self._pose[:3, :3], self._pose[:3, 3] = pose[:3].T, pose[3]
        if not fit_trusted(fit):
            self.change.reset()
            return None, None, rng_state
        self.change.remember(world, dt)
        return field_of(fit), unpack(packed, m, self.mp.candidates, offer, host), rng_state

    def _offer_queued(self, packed: torch.Tensor, rows: int, offer: Offer,
                      camera: torch.Tensor | None = None) -> None:
        """On a GPU: offer the map every candidate slot of the frame's ``packed`` tensor (from ``rows`` rows) before
        its download, the counted ones of a trusted frame marked on the device (``offer``), so the insertion (a graph
        replay) runs right after the dense graph instead of following the wait; ``camera``: the map's camera row of
        a pose moved on the device (:func:`~nut_ros.perception.dense.fit_then_find`)."""
        start = time.perf_counter()
        self._add_to_map(candidate_slots(packed, rows, self.mp.candidates), offer.points, offer.offered, camera)
        self._map_s += time.perf_counter() - start

    def _objects(self, points, residual, weights, k: Intrinsics) -> tuple[Clusters, np.ndarray]:
        """The objects of the moving Gaussians (host arrays): voxel clusters of at least :func:`fewest_members` at
        their median depth, each cut to its depth layer (``depth_band`` around that depth: the flow of a mover bleeds
        onto the floor and wall around it, which the voxels connect to it), then dropped when their members span
        more than ``max_size`` (structure) or less than ``min_width`` across the view (slivers along depth edges;
        with odometry not along an image axis where the image's edge cuts the object, :func:`cut_by_border`, though
        such a sliver founds no track); boxed between the ``box_trim`` quantiles and, with odometry, out past a
        cutting edge (:func:`cluster_stats`); the depth rate the mean of the members' not clipped at
        ``-change_max_speed`` (NaN in the download: a leading edge's, see ``change_max_speed``), NaN where all are
        (not measured, :meth:`_detection`). Also whether each may start a track (``min_cluster_gaussians`` members:
        the fewer a far object needs only keep one going); ``k``: the model's camera."""
        op = self.op
        labels, n = cluster_points(points, op.voxel, int(np.ceil(fewest_members(op, op.max_range))))
        if n == 0:  # (most frames of a static scene)
            return Clusters.empty(), np.zeros(0, bool)
        member, labels = np.flatnonzero(labels >= 0), labels[labels >= 0]
        count = np.bincount(labels, minlength=n)
        depth = group_median(points[member, 2], labels, n)
        keep = (count >= fewest_members(op, depth))[labels]
        if op.depth_band > 0:
            keep &= np.abs(points[member, 2] - depth[labels]) <= op.depth_band
        labels, member = labels[keep], member[keep]
        kept = np.flatnonzero(np.bincount(labels, minlength=n))  # the clusters with members left, renumbered
        rank = np.zeros(n, np.int64)
        rank[kept] = np.arange(kept.size)
        n, labels = kept.size, rank[labels]
        # without odometry the fitted camera motion errs most where the view's edge brings in new surfaces
        cut = cut_by_border(points[member], labels, n, k, op.border_px if self._registered else 0)
        c = cluster_stats(points[member], residual[member], weights[member], labels, n, op.voxel, op.box_trim, cut)
        across = np.where(cut != 0, np.inf, c.span[:, :2]).min(axis=1)  # a cut axis' span is not the object's
        sound = (c.span.max(axis=1) <= op.max_size) & (across >= op.min_width)
        founding = (count[kept] >= op.min_cluster_gaussians) & (c.span[:, :2].min(axis=1) >= op.min_width)
        return c.select(sound), founding[sound]

    def _detection(self, c: Clusters, founding: np.ndarray, rot: np.ndarray, trans: np.ndarray) -> Detection:
        """The tracker's measurement of the objects ``c`` and ``founding`` (:meth:`_objects`) in the fixed frame
        (``rot``, ``trans``: the camera's pose). An object whose members' depth rates were all clipped (leading
        edges) has none measured: it reads ``-change_max_speed`` with the noise of no measurement
        (:data:`UNMEASURED_RATE_STD`) and starts no track confirmed at birth (``birth_depth_rate``)."""
        op = self.op
        measured = np.isfinite(c.velocity[:, 2])
        velocity = c.velocity.copy()
        velocity[~measured, 2] = -op.change_max_speed
        cov = np.repeat(self._velocity_cov[None], len(c), 0)
        cov[~measured, 2, 2] = UNMEASURED_RATE_STD ** 2
        decisive = measured & (np.abs(velocity[:, 2]) >= op.birth_depth_rate) & (c.count >= op.birth_members)
        return Detection(c.center @ rot.T + trans, velocity @ rot.T, c.size, c.weight, rot @ cov @ rot.T, founding,
                         decisive)

    def _floor_scale(self, result: StepResult) -> float:
        """``floor_interval_s`` over the pair's interval, at least 1: the noise floors are errors of a pair's
        displacement (pixels of flow, millimetres of depth), so in speed they grow as the interval shrinks; they are
        not lowered for longer intervals (the larger motion per pair makes the flow worse)."""
        dt = result.pair_interval_s
        return max(1.0, self.op.floor_interval_s / dt) if result.paired and dt else 1.0

    def _camera_motion(self, result: StepResult, pose, inputs: StageInputs) -> tuple[MotionField | None,
                                                                                     Rows | None]:
        """The static field of this pair, or None (first frame of a stream, or an untrustworthy fit); and the rows
        the fit selected (None when there was no fit, and on a GPU with CUDA graphs, where :func:`find_moving`
        selects them again inside its graph)."""
        dt = result.pair_interval_s
        if not result.paired or not dt:
            return None, None
        if pose is not None and self._posed:  # (after a frame without a pose its fitted pose is not compared)
            prev_stamp = result.stamp_ns - round(dt * 1e9)
            if self._stamp_ns is not None and abs(self._stamp_ns - prev_stamp) < 1e6:
                return field_from_poses(self._pose, np.asarray(pose, np.float64), dt), None
        # the fit's sample: ego_samples of the selected rows spread at a random offset (dense.spread), drawn on
        # the device, so on a GPU the fit is one graph and one download (it selects the rows again inside its graph,
        # as find_moving does)
        framed = self._with_frame(inputs, MotionField.zero(), self._floor_scale(result),
                                  fit_offset=self._rng.uniform())
        plan = self._plan_for(result, False, False)
        rows = None if self._graphs(inputs.rows) else select_rows(framed, plan)
        fit = download(self._run(fit_sample, framed, plan, rows))
        return (field_of(fit) if fit_trusted(fit) else None), rows

    def _report(self, result: StepResult, rot: np.ndarray, trans: np.ndarray) -> ObstacleList:
        """Confirmed tracks detected recently (within ``report_misses`` frames, counting the frames that could not
        detect) and moving (``min_speed``), in the current camera optical frame."""
        s = self.tracker.state
        out = ObstacleList(result.stamp_ns, result.frame_id, bool(result.gaussians.metric))
        rt = rot.T
        report = s.confirmed & (s.misses + self.tracker.coasted <= self.op.report_misses)
        report &= np.linalg.norm(s.mean[:, 3:], axis=1) >= self.op.min_speed
        for i in np.flatnonzero(report):  # a handful of tracks, not Gaussians
            out.obstacles.append(Obstacle(
                s.ids[i], rt @ (s.mean[i, :3] - trans), rt @ s.mean[i, 3:], s.size[i].copy(),
                rt @ s.cov[i, :3, :3] @ rot, rt @ s.cov[i, 3:, 3:] @ rot,
                float(s.hits[i] / s.age[i]), int(s.age[i])))
        return out

    def _add_to_map(self, candidates: torch.Tensor, points: torch.Tensor, offered: torch.Tensor | None = None,
                    camera: torch.Tensor | None = None) -> None:
        """Offer the frame's ``candidates`` (static, opaque, near Gaussians away from moving voxels; their ``points``
        in the fixed frame, float64; ``offered``: which rows, all when None) to the map, on their device, from the
        pose on the host, or from the map's ``camera`` row made on the device."""
        _, colors, scales, opacities = torch.tensor_split(candidates, CANDIDATE_SPLIT, dim=1)
        if camera is None:
            self.map.insert(points, colors, scales, opacities[:, 0], self._pose[:3, :3], self._pose[:3, 3], offered)
        else:
            self.map.insert(points, colors, scales, opacities[:, 0], None, None, offered, camera)

