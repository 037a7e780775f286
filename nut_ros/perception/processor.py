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
3. takes each Gaussian's velocity over the ground as its velocity minus that field, with the depth rate replaced
   by the one measured against the Gaussians of ``change_baseline`` frames back where known
   (:mod:`nut_ros.perception.depth_change`) and, with odometry, the image-plane velocity by the shift of the depth
   pattern since that frame where it is clear (``shift_max``, ``shift_min_gain``), averages it over the Gaussian's
   image cell (``score_cell_px``: a mover's flow is coherent, much of the static noise is not) and marks it moving
   when that (optical z weighted by ``depth_rate_weight``) exceeds its threshold where the depth rate is known
   (not at depth edges, on grazing surfaces or in space the earlier frame did not see: the flow is unreliable
   there). The threshold is ``moving_speed + moving_speed_per_m · z`` (for pairs of ``floor_interval_s``; ×2 at
   twice that frame rate) plus, per component, the error that grows with the camera's own motion:
   ``flow_error_ratio · |static field_xy|`` for the image plane (flow and odometry stamps err by a share of the
   apparent motion) and that times the surface slope for the depth rate (the older depths, registered with that
   error, read as a depth change ``slope ·`` displacement on a slanted surface);
4. clusters the moving Gaussians (voxel connected components) into objects, cuts each to its depth layer
   (``depth_band`` around its median depth: a mover's flow bleeds onto the floor and wall the voxels connect it
   to), keeps those whose members span neither more than ``max_size`` (structure whose flow is wrong) nor less
   than ``min_width`` across the view (slivers along depth edges), boxes each between its members' ``box_trim``
   quantiles (a few stray members do not stretch it), and tracks them in the fixed frame
   (:mod:`nut_ros.perception.tracking`; velocities mostly from the tracks' positions, ``velocity_std``);
   confirmed tracks are reported in the current camera optical frame with their velocity over the ground;
5. offers a subset of the static Gaussians, moved into the fixed frame, to the :class:`LocalMap`.

Steps 1-3 and the choice of the map's candidates run in torch on the device that holds the Gaussians
(``StepResult.device_cloud``, the pipeline's cloud table where it left it, e.g. on the GPU; else the numpy cloud on
the CPU), without compacting on the device; the input depth goes up once per frame, without waiting. The host
gets, in one download, the moving Gaussians (clustering and tracking are numpy and scipy on the host: hundreds of
points) and the map's candidates; the fitted camera motion (no odometry) costs one more, and drawing its random
subset of a cloud larger than ``ego_samples`` a third.

Without odometry a stream restart (``result.paired`` false) or a change of the depth source restarts the key frame,
the tracks and the map; with odometry only a change of units does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from nut_ros.core.geometry import Intrinsics
from nut_ros.perception.clustering import Clusters, cluster_points, cluster_stats, group_median, voxel_keys
from nut_ros.perception.depth_change import DepthChange, cell_mean, image_cells
from nut_ros.perception.ego_motion import MotionField, field_from_poses, fit_static_field, pose_step
from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams, ObstacleParams
from nut_ros.perception.tensors import download, one_thread, pick, upload
from nut_ros.perception.tracking import Detection, MultiObjectTracker
from nut_ros.perception.types import Obstacle, ObstacleList, PerceptionOutput
from nut_ros.pipeline.types import CLOUD_COLUMNS, GaussianCloud, StepResult

MIN_INLIERS = 0.3  # a fitted camera motion explaining less of the Gaussians' weight is not trusted (frame skipped)
MAX_MOVING_FRACTION = 0.5  # more Gaussians moving than this: the camera-motion estimate failed (frame skipped)
MIN_DEPTH_RATE_WEIGHT = 1e-3  # a zero weight: the depth rate is not measured (1000x the image-plane noise)
_MOVER_SPLIT = (3, 6)  # columns of a downloaded moving Gaussian: point, velocity over the ground, weight
_CANDIDATE_SPLIT = (3, 6, 9)  # columns of a downloaded map candidate: point, colour, scales, opacity


@dataclass
class Rows:
    """The thinned cloud on the stage's device, one row per kept Gaussian. Rows that fail the selection (faint,
    out of range, not finite) have NaN points, zero velocities and zero weights, so every later step skips them."""

    points: torch.Tensor  # [M, 3] optical frame
    velocities: torch.Tensor  # [M, 3]
    weights: torch.Tensor  # [M] opacity (0: not selected)
    valid: torch.Tensor  # [M] bool
    opacities: torch.Tensor  # [M] as in the cloud
    colors: torch.Tensor  # [M, 3]
    scales: torch.Tensor  # [M, 3]


@dataclass
class Found:
    """What the host gets back from the device for one frame (numpy)."""

    valid: int  # Gaussians selected
    moving: int  # of them moving
    # the moving ones (points, velocity over the ground, weight), when at most half the rows move (else none)
    movers: tuple[np.ndarray, np.ndarray, np.ndarray]
    candidates: np.ndarray  # [C, 10] the map's candidates (point, colour, scales, opacity)
    eligible: int  # static Gaussians the candidates were picked from


class PerceptionProcessor:
    """Obstacles and local map from a stream of pipeline results (see the module docstring)."""

    def __init__(self, obstacles: ObstacleParams = ObstacleParams(), local_map: MapParams = MapParams(),
                 seed: int | None = None):
        self.op, self.mp = obstacles, local_map
        self.tracker = MultiObjectTracker(obstacles, seed)
        self.map = LocalMap(local_map)
        self.change = DepthChange(obstacles.change_cell_px, obstacles.change_edge_ratio, obstacles.change_baseline,
                                  obstacles.change_max_speed)
        self._rng = np.random.default_rng(seed)
        self._pose = np.eye(4)  # T_fixed<-camera of the last frame
        self._stamp_ns: int | None = None
        self._odometry: bool | None = None
        self._metric: bool | None = None
        self._map_stamp_ns: int | None = None  # stamp of the last map snapshot that was due
        self._axis_weight = np.array([1.0, 1.0, obstacles.depth_rate_weight], np.float32)
        # a cluster's mean velocity as a measurement, camera axes: the depth rate is 1/depth_rate_weight noisier
        z_std = obstacles.velocity_std / max(obstacles.depth_rate_weight, MIN_DEPTH_RATE_WEIGHT)
        self._velocity_cov = np.diag([obstacles.velocity_std ** 2] * 2 + [z_std ** 2])
        self._map_changed = False
        self.frames_skipped = 0  # frames without detections because the camera motion was not trusted

    def reset(self) -> None:
        """Forget tracks, map and key frame."""
        self.tracker.reset()
        self.map.reset()
        self.change.reset()
        self._pose, self._stamp_ns, self._odometry, self._metric = np.eye(4), None, None, None
        self._map_stamp_ns, self._map_changed = None, False

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
        odometry = camera_pose is not None
        restart = (self._stamp_ns is None or cloud.metric != self._metric or odometry != self._odometry
                   or (not odometry and not result.paired))
        if restart:
            self.reset()
            self._odometry, self._metric = odometry, cloud.metric
            self.map.reset(metric=cloud.metric)
        dt = None if self._stamp_ns is None else (result.stamp_ns - self._stamp_ns) * 1e-9
        rows = self._select(result)
        threshold = (self.op.moving_speed + self.op.moving_speed_per_m * rows.points[:, 2]) * self._floor_scale(result)
        field = self._camera_motion(result, camera_pose, rows, threshold)
        if field is not None and not odometry:
            self._pose = self._pose @ np.linalg.inv(pose_step(field, result.pair_interval_s))
        elif odometry:
            self._pose = np.asarray(camera_pose, np.float64)
        self._stamp_ns = result.stamp_ns
        rot, trans = self._pose[:3, :3], self._pose[:3, 3]

        found = None
        if field is not None:
            moving, residual = self._moving(result, rows, field, threshold, dt, odometry)
        if field is not None or odometry:
            self.change.remember(rows.points, self._pose, dt)
        else:
            self.change.reset()
        if field is not None:
            rng_state = self._rng.bit_generator.state
            found = self._download(rows, moving, residual, self._rng.uniform())
        # more moving than MAX_MOVING_FRACTION: the camera motion is wrong
        trusted = found is not None and found.moving <= MAX_MOVING_FRACTION * found.valid
        self.frames_skipped += found is not None and not trusted
        if trusted:
            c = self._objects(*found.movers)
            det = Detection(c.center @ rot.T + trans, c.velocity @ rot.T, c.size @ np.abs(rot).T, c.weight,
                            rot @ self._velocity_cov @ rot.T)
            self.tracker.update(det, dt if dt else 0.0)
        elif dt:  # no trusted camera motion: the tracks coast without counting a miss, the map waits
            self.tracker.predict(dt)
        obstacles = self._report(result, rot, trans)
        tick = time.perf_counter()

        if trusted:
            self._add_to_map(found, rot, trans)
        if found is not None and not (trusted and found.eligible > self.mp.candidates):
            self._rng.bit_generator.state = rng_state  # the candidates' random offset was not used: not drawn
        map_due = self._map_changed and (self._map_stamp_ns is None or
                                         result.stamp_ns - self._map_stamp_ns >= self.mp.snapshot_period_s * 1e9)
        if map_due:
            self._map_stamp_ns, self._map_changed = result.stamp_ns, False
        end = time.perf_counter()
        latency = {"obstacles": (tick - start) * 1e3, "map": (end - tick) * 1e3}
        return PerceptionOutput(obstacles, self._pose.copy(), "odometry" if odometry else "keyframe", map_due,
                                found.moving if trusted else 0, latency)

    # -- steps -----------------------------------------------------------------------------------------------
    def _select(self, result: StepResult) -> Rows:
        """The thinned cloud (fixed stride, at most ``max_gaussians`` rows) and which rows are opaque, in range,
        finite and (with a metric depth input) on the input depth; from the pipeline's device table when it has one,
        else from the numpy cloud."""
        table = result.device_cloud
        if table is not None:
            cols = {name: table[:, c] for name, c in CLOUD_COLUMNS.items()}
        else:
            cols = {name: torch.as_tensor(getattr(result.gaussians, name), dtype=torch.float32)
                    for name in CLOUD_COLUMNS}
        cols["opacities"] = cols["opacities"].reshape(-1)
        stride = max(1, -(-cols["positions"].shape[0] // self.op.max_gaussians))
        p, v, o, rgb, sc = (cols[n][::stride] for n in ("positions", "velocities", "opacities", "colors", "scales"))
        ok = (o >= self.op.min_opacity) & (p[:, 2] > 0) & (p[:, 2] <= self.op.max_range)
        ok &= p.isfinite().all(1) & v.isfinite().all(1)
        if self.op.depth_tolerance > 0 and result.input_depth is not None and result.gaussians.metric:
            ok &= on_input_depth(p, result.input_depth, result.intrinsics, self.op.depth_tolerance,
                                 self.op.depth_margin_px)
        return Rows(torch.where(ok[:, None], p, torch.nan), torch.where(ok[:, None], v, 0.0), torch.where(ok, o, 0.0),
                    ok, o, rgb, sc)

    def _moving(self, result: StepResult, rows: Rows, field: MotionField, threshold, dt, odometry):
        """Which rows move (``[M]`` bool) and their velocities over the ground ``[M, 3]`` (device tensors)."""
        depth_rate = self.change.rate(rows.points, result.intrinsics, self._pose, dt)
        threshold_xy, threshold_z = self._thresholds(rows.points, threshold, field, result.intrinsics)
        residual = ground_velocity(rows.points, rows.velocities, field, depth_rate)
        if odometry and self.op.shift_max > 0:  # the fitted camera motion misplaces the older depths too much
            shift = self.change.shift_velocity(rows.points, result.intrinsics, self.op.shift_max,
                                               self.op.shift_min_gain)
            residual = torch.cat([torch.where(shift[:, :1].isfinite(), shift, residual[:, :2]), residual[:, 2:]], 1)
        moving = self._score(rows.points, residual, depth_rate, threshold_xy, threshold_z, result.intrinsics) > 1.0
        return moving, residual

    def _download(self, rows: Rows, moving: torch.Tensor, residual: torch.Tensor, offset: float) -> Found:
        """The moving rows and the map's candidates, in one download: up to ``candidates`` static, opaque, near
        Gaussians away from moving voxels, spread evenly (at random ``offset`` in [0, 1) of a stride) over those
        eligible when there are more."""
        mp, m = self.mp, rows.points.shape[0]
        if not m:
            nothing = np.zeros((0, 3), np.float32)
            return Found(0, 0, (nothing, nothing, nothing[:, 0]), np.zeros((0, 10), np.float32), 0)
        keys = voxel_keys(rows.points, self.op.voxel)
        n_moving = moving.sum()
        moving_keys = torch.sort(torch.where(moving, keys, torch.iinfo(torch.int64).max)).values
        at = torch.searchsorted(moving_keys, keys).clamp_max(m - 1)
        near_moving = (moving_keys[at] == keys) & (at < n_moving)
        ok = ~moving & ~near_moving & (rows.opacities >= mp.min_opacity) & (rows.points[:, 2] <= mp.max_range)
        eligible = ok.sum()
        slot = torch.arange(mp.candidates, device=keys.device)
        step = eligible.double() / mp.candidates
        ranks = torch.where(eligible > mp.candidates, (offset * step + slot.double() * step).long(), slot)
        cap = m // 2  # a trusted frame has at most MAX_MOVING_FRACTION of its rows moving
        # slots past the count pick the last row; the host reads only the counted ones
        at = pick(moving, torch.arange(cap, device=keys.device)).clamp_max(m - 1)
        movers = torch.cat([rows.points[at], residual[at], rows.weights[at, None]], 1)
        at = pick(ok, ranks).clamp_max(m - 1)
        candidates = torch.cat([rows.points[at], rows.colors[at], rows.scales[at], rows.opacities[at, None]], 1)
        header = torch.stack([rows.valid.sum(), n_moving, eligible]).float()
        host = download(torch.cat([header, movers.reshape(-1), candidates.reshape(-1)]))
        valid, n_moving, eligible = (int(x) for x in host[:3])
        mover_rows = host[3:3 + movers.numel()].reshape(cap, -1)[:n_moving]
        candidate_rows = host[3 + movers.numel():].reshape(mp.candidates, -1)[:min(eligible, mp.candidates)]
        points, velocities, weights = np.split(mover_rows, _MOVER_SPLIT, axis=1)
        return Found(valid, n_moving, (points, velocities, weights[:, 0]), candidate_rows, eligible)

    def _objects(self, points, residual, weights) -> Clusters:
        """The objects of the moving Gaussians (host arrays): voxel clusters, each cut to its depth layer
        (``depth_band`` around its median depth: the flow of a mover bleeds onto the floor and wall around it, which
        the voxels connect to it), then dropped when their members span more than ``max_size`` (structure) or less
        than ``min_width`` across the view (slivers along depth edges); boxed between the ``box_trim`` quantiles."""
        op = self.op
        labels, k = cluster_points(points, op.voxel, op.min_cluster_gaussians)
        member, labels = np.flatnonzero(labels >= 0), labels[labels >= 0]
        if op.depth_band > 0 and k:
            keep = np.abs(points[member, 2] - group_median(points[member, 2], labels, k)[labels]) <= op.depth_band
            kept, labels = np.unique(labels[keep], return_inverse=True)
            member, k = member[keep], kept.size
        c = cluster_stats(points[member], residual[member], weights[member], labels.reshape(-1), k, op.voxel,
                          op.box_trim)
        return c.select((c.span.max(axis=1) <= op.max_size) & (c.span[:, :2].min(axis=1) >= op.min_width))

    def _floor_scale(self, result: StepResult) -> float:
        """``floor_interval_s`` over the pair's interval, at least 1: the noise floors are errors of a pair's
        displacement (pixels of flow, millimetres of depth), so in speed they grow as the interval shrinks; they are
        not lowered for longer intervals (the larger motion per pair makes the flow worse)."""
        dt = result.pair_interval_s
        return max(1.0, self.op.floor_interval_s / dt) if result.paired and dt else 1.0

    def _thresholds(self, points, threshold, field: MotionField, intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
        """The moving thresholds ``[N]`` of the image-plane and of the depth-rate components: ``threshold`` plus
        ``flow_error_ratio`` times the camera's own apparent (static-field) speed across the view there, times
        the surface slope for the depth rate (call after ``self.change.rate``)."""
        sweep = self.op.flow_error_ratio * torch.linalg.vector_norm(field(points)[:, :2], dim=1)
        return threshold + sweep, threshold + sweep * self.change.slope(points, intrinsics)

    def _score(self, points, residual, depth_rate, threshold_xy, threshold_z, intrinsics) -> torch.Tensor:
        """Each Gaussian's ground velocity (averaged over its image cell of ``score_cell_px`` pixels), its
        image-plane components over ``threshold_xy`` and its optical z (weighted) over ``threshold_z``: the norm,
        in units of the moving threshold; 0 where the depth rate is unknown (depth edges, grazing surfaces and newly
        seen space: the flow is unreliable there)."""
        known = depth_rate.isfinite()
        ground = residual
        if self.op.score_cell_px > 1:
            ground = cell_mean(torch.where(known[:, None], points, torch.nan), residual, intrinsics,
                               self.op.score_cell_px)
        scale = torch.stack([threshold_xy, threshold_xy, threshold_z], 1)
        weighted = ground * upload(self._axis_weight, ground) / scale
        return torch.where(known, (weighted * weighted).sum(1).sqrt(), 0.0)

    def _camera_motion(self, result: StepResult, pose, rows: Rows, threshold) -> MotionField | None:
        """The static field of this pair, or None (first frame of a stream, or an untrustworthy fit)."""
        dt = result.pair_interval_s
        if not result.paired or not dt:
            return None
        if pose is not None:
            prev_stamp = result.stamp_ns - round(dt * 1e9)
            if self._stamp_ns is not None and abs(self._stamp_ns - prev_stamp) < 1e6:
                return field_from_poses(self._pose, np.asarray(pose, np.float64), dt)
        sample = self._ego_sample(rows.valid)
        field = fit_static_field(rows.points[sample], rows.velocities[sample], rows.weights[sample],
                                 threshold[sample], self.op.ego_iterations, self.op.depth_rate_weight)
        if field is None or field.inliers < MIN_INLIERS:
            self.frames_skipped += 1
            return None
        return field

    def _ego_sample(self, valid: torch.Tensor):
        """The rows the camera-motion fit uses: ``ego_samples`` of the valid ones at random, or all rows when there
        are no more valid ones than that (the fit skips the others by their zero weight)."""
        n = valid.shape[0]
        if n > self.op.ego_samples:
            n = int(download(valid.sum()))  # the subset is drawn from the valid rows
        if n <= self.op.ego_samples:
            return slice(None)
        return pick(valid, upload(self._rng.choice(n, self.op.ego_samples, replace=False), valid, torch.int64))

    def _report(self, result: StepResult, rot: np.ndarray, trans: np.ndarray) -> ObstacleList:
        """Confirmed tracks detected recently (``report_misses``) and moving (``min_speed``), in the current camera
        optical frame."""
        s = self.tracker.state
        out = ObstacleList(result.stamp_ns, result.frame_id, bool(result.gaussians.metric))
        rt = rot.T
        report = s.confirmed & (s.misses <= self.op.report_misses)
        report &= np.linalg.norm(s.mean[:, 3:], axis=1) >= self.op.min_speed
        for i in np.flatnonzero(report):  # a handful of tracks, not Gaussians
            out.obstacles.append(Obstacle(
                s.ids[i], rt @ (s.mean[i, :3] - trans), rt @ s.mean[i, 3:], np.abs(rt) @ s.size[i],
                rt @ s.cov[i, :3, :3] @ rot, rt @ s.cov[i, 3:, 3:] @ rot,
                float(s.hits[i] / (s.hits[i] + s.misses[i])), int(s.hits[i] + s.misses[i])))
        return out

    def _add_to_map(self, found: Found, rot: np.ndarray, trans: np.ndarray) -> None:
        """Offer the frame's candidates (static, opaque, near Gaussians away from moving voxels) to the map."""
        points, colors, scales, opacities = np.split(found.candidates, _CANDIDATE_SPLIT, axis=1)
        self.map.insert(points @ rot.T + trans, colors, scales, opacities[:, 0], rot, trans)
        self._map_changed |= points.shape[0] > 0


def ground_velocity(points: torch.Tensor, velocities: torch.Tensor, field: MotionField, depth_rate: torch.Tensor):
    """Velocities over the ground ``[N, 3]``: minus the camera's static field, with the optical-z component
    replaced by the geometric ``depth_rate`` where it is known (finite)."""
    residual = velocities - field(points)
    z = torch.where(depth_rate.isfinite(), depth_rate, residual[:, 2])
    return torch.cat([residual[:, :2], z[:, None]], 1)


def on_input_depth(points: torch.Tensor, depth: np.ndarray, k: Intrinsics, tolerance: float, margin_px: int = 0):
    """Whether each point ``[N, 3]`` (camera frame, a tensor) lies on the input depth image ``depth [h, w]`` (numpy,
    the model's camera ``k``, NaN where the sensor gave none; uploaded to the points' device): its pixel holds a
    depth within ``tolerance`` (relative) of its own, and no pixel without depth lies within ``margin_px`` of it
    (the holes counted over a square window by an integral image; the image's own border does not count)."""
    depth = upload(depth, points)
    h, w = depth.shape
    hole = (~depth.isfinite()).int()
    if margin_px > 0:
        n = 2 * margin_px + 1  # the padding outside the image holds no hole
        total = F.pad(hole, (margin_px + 1, margin_px, margin_px + 1, margin_px)).cumsum(0).cumsum(1)
        hole = total[n:, n:] - total[:-n, n:] - total[n:, :-n] + total[:-n, :-n]
    held = F.pad(torch.where(hole == 0, depth, torch.nan).reshape(-1), (0, 1), value=torch.nan)
    cells, _, _ = image_cells(points, replace(k, width=w, height=h), 1)  # pixel centres at whole coordinates
    d = held[cells]
    return (points[:, 2] - d).abs() <= tolerance * d
