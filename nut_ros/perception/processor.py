"""The per-frame perception stage: moving obstacles with stable ids, and the persistent local map.

One :class:`PerceptionProcessor` per camera stream; call :meth:`PerceptionProcessor.update` with every
:class:`~nut_ros.pipeline.types.StepResult` the pipeline returns (and the frame's odometry pose when the robot has
one). Per frame it

1. thins the live Gaussians to at most ``max_gaussians`` (fixed stride) and keeps the opaque ones in range;
2. gets the camera's motion over the pair as the apparent velocity field of static points: from the two odometry
   poses, else fitted robustly to the Gaussians' velocities (:mod:`nut_ros.perception.ego_motion`), and integrates
   the pose in the key frame (the stream's first camera frame) when there is no odometry;
3. takes each Gaussian's velocity over the ground as its velocity minus that field, with the depth rate replaced
   by the one measured against the Gaussians of ``change_baseline`` frames back where known
   (:mod:`nut_ros.perception.depth_change`) and, with odometry, the image-plane velocity by the shift of the depth
   pattern since that frame where it is clear (``shift_max``, ``shift_min_gain``), averages it over the Gaussian's
   image cell (``score_cell_px``: a mover's flow is coherent, much of the static noise is not) and marks it moving
   when that (optical z weighted by ``depth_rate_weight``) exceeds ``moving_speed + moving_speed_per_m · z``
   where the depth rate is known (not at depth edges, on grazing surfaces or in space the earlier frame did not
   see: the flow is unreliable there);
4. clusters the moving Gaussians (voxel connected components) into objects, cuts each to its depth layer
   (``depth_band`` around its median depth: a mover's flow bleeds onto the floor and wall the voxels connect it
   to), keeps boxes neither larger than ``max_size`` (structure whose flow is wrong) nor narrower than
   ``min_width`` (slivers along depth edges), and tracks them in the fixed frame
   (:mod:`nut_ros.perception.tracking`; velocities mostly from the tracks' positions, ``velocity_std``);
   confirmed tracks are reported in the current camera optical frame with their velocity over the ground;
5. offers a subset of the static Gaussians, moved into the fixed frame, to the :class:`LocalMap`.

Without odometry a stream restart (``result.paired`` false) or a change of the depth source restarts the key frame,
the tracks and the map; with odometry only a change of units does.
"""
from __future__ import annotations

import time

import numpy as np

from nut_ros.perception.clustering import Clusters, cluster_points, cluster_stats, contains, group_median, voxel_keys
from nut_ros.perception.depth_change import DepthChange, cell_mean
from nut_ros.perception.ego_motion import MotionField, field_from_poses, fit_static_field, pose_step
from nut_ros.perception.local_map import LocalMap
from nut_ros.perception.params import MapParams, ObstacleParams
from nut_ros.perception.tracking import Detection, MultiObjectTracker
from nut_ros.perception.types import Obstacle, ObstacleList, PerceptionOutput
from nut_ros.pipeline.types import GaussianCloud, StepResult

MIN_INLIERS = 0.3  # a fitted camera motion explaining less of the Gaussians' weight is not trusted (frame skipped)
MAX_MOVING_FRACTION = 0.5  # more Gaussians moving than this: the camera-motion estimate failed (frame skipped)
MIN_DEPTH_RATE_WEIGHT = 1e-3  # a zero weight: the depth rate is not measured (1000x the image-plane noise)


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
        points, velocities, weights, keep = self._select(cloud)
        threshold = self.op.moving_speed + self.op.moving_speed_per_m * points[:, 2]
        field = self._camera_motion(result, camera_pose, points, velocities, weights, threshold)
        if field is not None and not odometry:
            self._pose = self._pose @ np.linalg.inv(pose_step(field, result.pair_interval_s))
        elif odometry:
            self._pose = np.asarray(camera_pose, np.float64)
        self._stamp_ns = result.stamp_ns
        rot, trans = self._pose[:3, :3], self._pose[:3, 3]

        moving = np.zeros(points.shape[0], bool)
        trusted = field is not None
        if field is not None:
            depth_rate = self.change.rate(points, result.intrinsics, self._pose, dt)
            residual = ground_velocity(points, velocities, field, depth_rate)
            if odometry and self.op.shift_max > 0:  # the fitted camera motion misplaces the older depths too much
                shift = self.change.shift_velocity(points, result.intrinsics, self.op.shift_max,
                                                   self.op.shift_min_gain)
                known = np.isfinite(shift[:, 0])
                residual[known, :2] = shift[known]
            moving = self._score(points, residual, depth_rate, threshold, result.intrinsics) > 1.0
            trusted = not moving.size or moving.mean() <= MAX_MOVING_FRACTION  # else the camera motion is wrong
            self.frames_skipped += not trusted
        if trusted:
            c = self._objects(points, residual, weights, moving)
            det = Detection(c.center @ rot.T + trans, c.velocity @ rot.T, c.size @ np.abs(rot).T, c.weight,
                            rot @ self._velocity_cov @ rot.T)
            self.tracker.update(det, dt if dt else 0.0)
        else:  # no trusted camera motion: the tracks coast without counting a miss, the map waits
            moving[:] = False
            if dt:
                self.tracker.predict(dt)
        obstacles = self._report(result, rot, trans)
        if field is not None or odometry:
            self.change.remember(points, self._pose, dt)
        else:
            self.change.reset()
        tick = time.perf_counter()

        if trusted:
            self._add_to_map(points, cloud, keep, moving, rot, trans)
        map_due = self._map_changed and (self._map_stamp_ns is None or
                                         result.stamp_ns - self._map_stamp_ns >= self.mp.snapshot_period_s * 1e9)
        if map_due:
            self._map_stamp_ns, self._map_changed = result.stamp_ns, False
        end = time.perf_counter()
        latency = {"obstacles": (tick - start) * 1e3, "map": (end - tick) * 1e3}
        return PerceptionOutput(obstacles, self._pose.copy(), "odometry" if odometry else "keyframe", map_due,
                                int(moving.sum()), latency)

    # -- steps -----------------------------------------------------------------------------------------------
    def _select(self, cloud: GaussianCloud):
        """Opaque, in-range Gaussians of the thinned cloud: points, velocities, opacities, their cloud indices."""
        stride = max(1, -(-cloud.count // self.op.max_gaussians))
        idx = np.arange(0, cloud.count, stride)
        p, v, o = cloud.positions[idx], cloud.velocities[idx], cloud.opacities[idx]
        ok = (o >= self.op.min_opacity) & (p[:, 2] > 0) & (p[:, 2] <= self.op.max_range)
        ok &= np.isfinite(p).all(1) & np.isfinite(v).all(1)
        return p[ok], v[ok], o[ok], idx[ok]

    def _objects(self, points, residual, weights, moving) -> Clusters:
        """The moving Gaussians' objects: voxel clusters, each cut to its depth layer (``depth_band`` around its
        median depth: the flow of a mover bleeds onto the floor and wall around it, which the voxels connect to it),
        then dropped when larger than ``max_size`` (structure) or narrower than ``min_width`` across the view
        (slivers along depth edges)."""
        op = self.op
        member = np.flatnonzero(moving)
        labels, k = cluster_points(points[member], op.voxel, op.min_cluster_gaussians)
        member, labels = member[labels >= 0], labels[labels >= 0]
        if op.depth_band > 0 and k:
            keep = np.abs(points[member, 2] - group_median(points[member, 2], labels, k)[labels]) <= op.depth_band
            kept, labels = np.unique(labels[keep], return_inverse=True)
            member, k = member[keep], kept.size
        c = cluster_stats(points[member], residual[member], weights[member], labels.reshape(-1), k, op.voxel)
        return c.select((c.size.max(axis=1) <= op.max_size) & (c.size[:, :2].min(axis=1) >= op.min_width))

    def _score(self, points, residual, depth_rate, threshold, intrinsics) -> np.ndarray:
        """Each Gaussian's ground speed (optical z weighted; averaged over its image cell of ``score_cell_px``
        pixels) in units of its moving threshold; 0 where the depth rate is unknown (depth edges, grazing surfaces
        and newly seen space: the flow is unreliable there)."""
        known = np.isfinite(depth_rate)
        ground = residual[known]
        if self.op.score_cell_px > 1:
            ground = cell_mean(points[known], ground, intrinsics, self.op.score_cell_px)
        score = np.zeros(points.shape[0])
        score[known] = np.linalg.norm(ground * self._axis_weight, axis=1) / threshold[known]
        return score

    def _camera_motion(self, result: StepResult, pose, points, velocities, weights, threshold) -> MotionField | None:
        """The static field of this pair, or None (first frame of a stream, or an untrustworthy fit)."""
        dt = result.pair_interval_s
        if not result.paired or not dt:
            return None
        if pose is not None:
            prev_stamp = result.stamp_ns - round(dt * 1e9)
            if self._stamp_ns is not None and abs(self._stamp_ns - prev_stamp) < 1e6:
                return field_from_poses(self._pose, np.asarray(pose, np.float64), dt)
        n = points.shape[0]
        sample = self._rng.choice(n, self.op.ego_samples, replace=False) if n > self.op.ego_samples else slice(None)
        field = fit_static_field(points[sample], velocities[sample], weights[sample], threshold[sample],
                                 self.op.ego_iterations, self.op.depth_rate_weight)
        if field is None or field.inliers < MIN_INLIERS:
            self.frames_skipped += 1
            return None
        return field

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

    def _add_to_map(self, points, cloud: GaussianCloud, keep, moving, rot, trans) -> None:
        """Offer up to ``candidates`` static, opaque, near Gaussians (away from moving voxels) to the map."""
        mp = self.mp
        moving_keys = np.unique(voxel_keys(points[moving], self.op.voxel))
        near_moving, _ = contains(moving_keys, voxel_keys(points, self.op.voxel))
        ok = ~moving & ~near_moving & (cloud.opacities[keep] >= mp.min_opacity) & (points[:, 2] <= mp.max_range)
        idx = np.flatnonzero(ok)
        if idx.size > mp.candidates:
            step = idx.size / mp.candidates
            idx = idx[(self._rng.uniform() * step + np.arange(mp.candidates) * step).astype(np.int64)]
        src = keep[idx]
        self.map.insert(points[idx] @ rot.T + trans, cloud.colors[src], cloud.scales[src], cloud.opacities[src],
                        rot, trans)
        self._map_changed |= idx.size > 0


def ground_velocity(points: np.ndarray, velocities: np.ndarray, field: MotionField, depth_rate: np.ndarray):
    """Velocities over the ground ``[N, 3]``: minus the camera's static field, with the optical-z component
    replaced by the geometric ``depth_rate`` where it is known (finite)."""
    residual = velocities - field(points)
    known = np.isfinite(depth_rate)
    residual[known, 2] = depth_rate[known]
    return residual
