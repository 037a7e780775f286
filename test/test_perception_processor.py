"""PerceptionProcessor on synthetic pipeline results: moving camera, static room, moving blobs; with and without
odometry."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from nut_ros.core.geometry import Intrinsics
from nut_ros.core.rotations import quaternion_to_matrix
from nut_ros.perception import MapParams, ObstacleParams, PerceptionProcessor
from nut_ros.perception.dense import displacement_factor, edge_factor
from nut_ros.perception.processor import cut_by_border
from perception_synth import K, scene_stream

WIDE = Intrinsics(100.0, 100.0, 320.0, 240.0, 640, 480)  # every test point far from the image's edges
MOVER = (-1.0, 0.5, 3.0, 0.8, 0.0, 0.3)  # starts left, 3 m ahead; 0.8 m/s right, 0.3 m/s away


@pytest.mark.parametrize("odometry", [True, False])
def test_one_mover_is_tracked_with_a_stable_id_and_its_ground_velocity(odometry):
    proc = PerceptionProcessor(seed=0)
    ids, vel_err, pos_err = set(), [], []
    for j, (res, pose, truths) in enumerate(scene_stream(30, movers=(MOVER,))):
        out = proc.update(res, pose if odometry else None)
        assert out.fixed_frame == ("odometry" if odometry else "keyframe")
        assert out.obstacles.frame_id == "cam" and out.obstacles.metric
        if j >= 7:  # confirmed after 3 detections and 0.1 m of travel (and the 3-frame depth baseline)
            assert len(out.obstacles) == 1, j
            ob = out.obstacles.obstacles[0]
            ids.add(ob.id)
            rot, trans = pose[:3, :3], pose[:3, 3]
            (centre, velocity), = truths
            vel_err.append(np.linalg.norm(ob.velocity - rot.T @ velocity))
            # the blob is a sphere of radius 0.25 seen from the front: the box centre sits near its true centre
            pos_err.append(np.linalg.norm(ob.position - rot.T @ (centre - trans)))
            assert np.all(ob.size > 0.2) and np.all(ob.size < 1.0)
            assert np.all(np.linalg.eigvalsh(ob.position_covariance) > 0) and 0 < ob.confidence <= 1
    assert len(ids) == 1
    assert np.median(vel_err) < 0.15 and np.median(pos_err) < 0.15


def test_the_ground_velocity_is_turned_into_the_current_camera_s_axes(monkeypatch):
    """A camera turning at up to 0.6 rad/s, exact velocities and odometry: a pipeline's velocities (a point's
    coordinates in the two cameras, differenced) leave a mover's own motion in the previous camera's axes, and the
    stage turns it into the current camera's, in which obstacles are reported: each of the mover's Gaussians gets
    its true velocity over the ground across the view (without the turn, 0.013-0.018 m/s off at 0.8 m/s)."""
    from nut_ros.perception import dense

    seen, gather = {}, dense._gather

    def keep(rows, moving, residual, offset, plan):
        seen["points"], seen["residual"] = rows.points.numpy().copy(), residual.numpy().copy()
        return gather(rows, moving, residual, offset, plan)

    monkeypatch.setattr(dense, "_gather", keep)
    proc = PerceptionProcessor(ObstacleParams(shift_max=0.0), seed=0, cuda_graphs=False)
    errors = []
    for j, (res, pose, truths) in enumerate(scene_stream(12, movers=(MOVER,), yaw_rate=0.6, noise=0.0)):
        proc.update(res, pose)
        (centre, velocity), = truths
        if j >= 2:
            rot = pose[:3, :3]
            on_mover = np.linalg.norm(seen["points"] - rot.T @ (centre - pose[:3, 3]), axis=1) < 0.4
            errors.append(np.abs(seen["residual"][on_mover, :2] - (rot.T @ velocity)[:2]).max())
    assert len(errors) == 10 and max(errors) < 1e-4, np.round(errors, 4)


def test_obstacles_do_not_depend_on_how_the_odometry_frame_is_turned():
    """The same camera motion with the odometry's world frame turned and moved: the obstacles in the camera frame
    (positions, velocities, box sizes) are the same, and the box is the blob's (a sphere of radius 0.25)."""
    turned = np.eye(4)
    turned[:3, :3] = quaternion_to_matrix([0.3, -0.5, 0.6, 0.55])
    turned[:3, 3] = (12.0, -4.0, 3.5)
    seen = {}
    for name, world in (("camera", np.eye(4)), ("turned", turned)):
        proc = PerceptionProcessor(seed=0)
        seen[name] = [[(ob.position, ob.velocity, ob.size) for ob in proc.update(res, world @ pose).obstacles.obstacles]
                      for res, pose, _ in scene_stream(20, movers=(MOVER,))]
    assert sum(map(len, seen["camera"])) >= 10
    for a, b in zip(seen["camera"], seen["turned"]):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            for u, v in zip(x, y):
                np.testing.assert_allclose(u, v, atol=1e-6)
            assert np.all(x[2] < 0.8), x[2]


@pytest.mark.parametrize("odometry", [True, False])
def test_static_room_with_a_moving_camera_gives_no_obstacles_and_a_growing_map(odometry):
    proc = PerceptionProcessor(seed=1)
    counts, due = [], []
    for res, pose, _ in scene_stream(60, movers=(), camera_speed=0.6, yaw_rate=0.4, seed=3):
        out = proc.update(res, pose if odometry else None)
        counts.append(len(out.obstacles))
        due.append(out.map_due)
    assert sum(counts) == 0
    assert proc.map.count > 1000
    assert due[1] and 3 <= sum(due) <= 5  # 60 frames at 15 Hz = 4 s with a 1 s snapshot period
    snap = proc.map_snapshot()
    assert snap.count == proc.map.count and snap.metric


def test_keyframe_pose_follows_the_camera_without_odometry():
    proc = PerceptionProcessor(seed=2)
    for res, pose, _ in scene_stream(40, movers=(), camera_speed=0.6, yaw_rate=0.4, seed=4, noise=0.02):
        out = proc.update(res)
    assert np.linalg.norm(out.camera_pose[:3, 3] - pose[:3, 3]) < 0.05
    assert np.linalg.norm(out.camera_pose[:3, :3] - pose[:3, :3]) < 0.02


def test_without_odometry_frames_whose_fit_fails_keep_the_last_trusted_camera_motion():
    """Five frames in a row whose flow is noise (their camera-motion fit is not trusted): the key frame's pose goes
    on with the last trusted motion instead of losing those intervals (0.10 m and 6 degrees off without)."""
    proc = PerceptionProcessor(seed=2)
    rng = np.random.default_rng(1)
    for j, (res, pose, _) in enumerate(scene_stream(40, movers=(), camera_speed=0.6, yaw_rate=0.4, seed=4,
                                                    noise=0.02)):
        if 8 <= j < 13:
            res.gaussians.velocities[:] = rng.normal(0, 3.0, res.gaussians.velocities.shape)
        out = proc.update(res)
    assert proc.frames_skipped == 5
    assert np.linalg.norm(out.camera_pose[:3, 3] - pose[:3, 3]) < 0.05
    assert np.linalg.norm(out.camera_pose[:3, :3] - pose[:3, :3]) < 0.04


def test_a_new_stream_without_odometry_restarts_tracks_and_map():
    proc = PerceptionProcessor(seed=3)
    stream = list(scene_stream(12, movers=(MOVER,)))
    for res, _, _ in stream:
        proc.update(res)
    assert proc.map.count > 0 and len(proc.tracker.state.ids) > 0
    first, _, _ = stream[0]  # unpaired: a stream restart
    out = proc.update(first)
    assert proc.map.count == 0 and len(out.obstacles) == 0 and np.allclose(out.camera_pose, np.eye(4))


def test_large_clouds_are_thinned_and_bad_values_ignored():
    proc = PerceptionProcessor(ObstacleParams(max_gaussians=1000), MapParams(candidates=100), seed=4)
    for j, (res, pose, _) in enumerate(scene_stream(6, movers=(MOVER,))):
        res.gaussians.positions[:50] = np.nan
        res.gaussians.velocities[50:60] = np.inf
        out = proc.update(res, pose)
        assert np.isfinite(out.camera_pose).all()
    assert proc.map.count <= 5 * 100


def test_map_keeps_no_gaussian_with_a_nan_colour_or_scale():
    proc = PerceptionProcessor(seed=4)
    for res, pose, _ in scene_stream(6):
        res.gaussians.colors[::10] = np.nan
        res.gaussians.scales[5::10] = np.nan
        proc.update(res, pose)
    snapshot = proc.map_snapshot()
    assert proc.map.count > 0
    assert np.isfinite(snapshot.colors).all() and np.isfinite(snapshot.scales).all()


@pytest.mark.parametrize("table", [False, True])
@pytest.mark.parametrize("odometry", [True, False])
def test_a_frame_without_gaussians_is_processed(odometry, table):
    """A frame whose cloud is empty (numpy cloud, or the pipeline's device table): no obstacles from it, no crash,
    and the stream goes on."""
    proc = PerceptionProcessor(seed=0)
    for j, (res, pose, _) in enumerate(scene_stream(5, movers=(MOVER,))):
        if j == 2:
            g = res.gaussians
            res = replace(res, gaussians=replace(g, **{name: getattr(g, name)[:0] for name in (
                "positions", "scales", "rotations", "opacities", "colors", "velocities")}),
                device_cloud=torch.zeros((0, 17)) if table else None)
        out = proc.update(res, pose if odometry else None)
        assert np.isfinite(out.camera_pose).all()
    assert proc.map.count > 0


@pytest.mark.parametrize("odometry", [True, False])
def test_an_obstacle_is_not_reported_through_frames_that_cannot_detect(odometry):
    """Frames without a trusted camera motion (here: flow that is noise everywhere) detect nothing; the tracks coast
    through them, and a confirmed obstacle is reported only for ``report_misses`` of them, not for as long as they
    last (its coasted position drifts off)."""
    proc = PerceptionProcessor(seed=0)
    stream = list(scene_stream(30, movers=(MOVER,)))
    for res, pose, _ in stream[:15]:
        out = proc.update(res, pose if odometry else None)
    assert len(out.obstacles) == 1
    rng = np.random.default_rng(1)
    reported = []
    for res, pose, _ in stream[15:]:
        res.gaussians.velocities[:] = rng.normal(0, 3.0, res.gaussians.velocities.shape)
        out = proc.update(res, pose if odometry else None)
        reported.append(len(out.obstacles))
    assert proc.frames_skipped >= 15
    assert reported[:ObstacleParams().report_misses] == [1] * ObstacleParams().report_misses
    assert not any(reported[ObstacleParams().report_misses:]), reported
    assert len(proc.tracker.state.ids) > 0, "the tracks live on (no miss counted)"


@pytest.mark.parametrize("odometry", [True, False])
def test_a_track_that_coasted_long_is_not_reported_when_detection_resumes(odometry):
    """The frames a track coasted through count as its misses once detection resumes: a confirmed obstacle that
    coasted for 15 frames and is not detected again is dropped at once, not reported at its extrapolated position
    for report_misses more frames."""
    proc = PerceptionProcessor(seed=0)
    stream = list(scene_stream(15, movers=(MOVER,))) + list(scene_stream(33, movers=()))[15:]  # then it is gone
    rng = np.random.default_rng(1)
    reported = []
    for j, (res, pose, _) in enumerate(stream):
        if 15 <= j < 30:  # flow that is noise everywhere: no trusted camera motion, the tracks coast
            res.gaussians.velocities[:] = rng.normal(0, 3.0, res.gaussians.velocities.shape)
        reported.append(len(proc.update(res, pose if odometry else None).obstacles))
    assert reported[14] == 1 and not any(reported[15 + ObstacleParams().report_misses:]), reported
    assert proc.tracker.state.ids == []


def test_time_going_back_with_odometry_restarts_what_is_timed_and_keeps_the_map():
    """A looping bag with odometry: the stamps restart. The odometry-frame map stays, tracks and the depth-rate
    memory restart, and the map is published again at its period (it waited for the old stamps to come back)."""
    proc = PerceptionProcessor(seed=0)
    stream = list(scene_stream(45, movers=(MOVER,)))
    first = [proc.update(res, pose) for res, pose, _ in stream]
    count = proc.map.count
    again = [proc.update(res, pose) for res, pose, _ in stream]
    assert sum(o.map_due for o in first) == sum(o.map_due for o in again) >= 2
    assert proc.map.count >= count
    assert [len(o.obstacles) for o in again] == [len(o.obstacles) for o in first]


def test_an_odometry_stream_goes_on_through_frames_without_a_pose():
    """Odometry late or lost for a frame (the node then has no pose at the image's stamp): the stream stays in the
    odometry frame, the map is kept and the mover keeps its id; the frame's camera motion is fitted, and its pose
    is the last one moved by that fit."""
    proc = PerceptionProcessor(seed=0)
    ids, counts = [], []
    for j, (res, pose, truths) in enumerate(scene_stream(30, movers=(MOVER,))):
        out = proc.update(res, None if j in (15, 22) else pose)
        assert out.fixed_frame == "odometry", j
        counts.append(proc.map.count)
        if j >= 7:
            assert len(out.obstacles) == 1, j
            ids.append(out.obstacles.obstacles[0].id)
        if j in (15, 22):  # the fitted pose is within a few centimetres of the odometry's
            assert np.linalg.norm(out.camera_pose[:3, 3] - pose[:3, 3]) < 0.05
    assert len(set(ids)) == 1
    assert all(b >= a for a, b in zip(counts, counts[1:]))  # the map was never emptied
    assert proc.frames_without_pose == 2


def test_frames_without_a_pose_that_cannot_go_on_in_the_odometry_frame_restart_in_the_key_frame():
    """Without a pose a frame that changes units or follows a gap has nothing to place it in the odometry frame:
    the stream restarts in the key frame (a held pose from before the gap, or a relative map, would be mislabelled
    odometry); a held frame whose fit fails moves the pose by the last trusted (odometry's) motion."""
    stream = list(scene_stream(20, movers=(MOVER,)))
    proc = PerceptionProcessor(seed=0)
    for res, pose, _ in stream[:15]:
        proc.update(res, pose)
    res, pose, _ = stream[15]
    relative = replace(res, gaussians=replace(res.gaussians, metric=False))
    assert proc.update(relative).fixed_frame == "keyframe"

    proc = PerceptionProcessor(seed=0)
    for res, pose, _ in stream[:15]:
        proc.update(res, pose)
    res, _, _ = stream[15]
    out = proc.update(replace(res, stamp_ns=res.stamp_ns + 5 * 10**9, paired=False))
    assert out.fixed_frame == "keyframe" and np.allclose(out.camera_pose, np.eye(4))

    proc = PerceptionProcessor(seed=0)
    for res, pose, _ in stream[:15]:
        proc.update(res, pose)
    res, pose, _ = stream[15]
    g = res.gaussians
    scrambled = np.random.default_rng(1).normal(0, 3.0, g.velocities.shape).astype(np.float32)
    out = proc.update(replace(res, gaussians=replace(g, velocities=scrambled), device_cloud=None))
    assert proc.frames_skipped == 1 and out.fixed_frame == "odometry"
    assert np.linalg.norm(out.camera_pose[:3, 3] - pose[:3, 3]) < 0.01  # moved by odometry's last motion


def test_a_gap_in_an_odometry_stream_restarts_the_tracks_not_the_map():
    """After a gap past the pipeline's max gap (the next frame is unpaired) a track would be coasted over the whole
    gap and reported far from its object: the tracks and the depth-rate memory restart, the map stays."""
    proc = PerceptionProcessor(seed=0)
    stream = list(scene_stream(30, movers=(MOVER,)))
    for res, pose, _ in stream[:15]:
        proc.update(res, pose)
    assert len(proc.tracker.state.ids) > 0
    count = proc.map.count
    gap = 5 * 10**9
    res, pose, _ = stream[15]
    out = proc.update(replace(res, stamp_ns=res.stamp_ns + gap, paired=False), pose)
    assert len(out.obstacles) == 0 and len(proc.tracker.state.ids) == 0 and proc.map.count >= count


def test_a_restarted_map_is_due_at_once():
    """The map published last no longer holds after a restart (new key frame, new units): the new one is due in the
    same frame, so the latched topic does not keep the old one until the next period."""
    proc = PerceptionProcessor(local_map=MapParams(snapshot_period_s=100.0), seed=3)
    stream = list(scene_stream(6, movers=(MOVER,)))
    due = [proc.update(res).map_due for res, _, _ in stream]
    assert sum(due) == 1  # the first map, then none for 100 s
    first, _, _ = stream[0]  # unpaired: a stream restart without odometry
    assert proc.update(replace(first, stamp_ns=stream[-1][0].stamp_ns + 10**8)).map_due


def test_a_stream_restarted_from_outside_drops_map_and_tracks_and_publishes_at_once():
    """``restart()`` (the node calls it when the odometry's source or the camera's mount changed: the odometry frame
    no longer holds): the next frame starts a new stream, its map of that frame alone and due at once, tracks and
    their ids anew."""
    params = MapParams(snapshot_period_s=100.0, candidates=300)
    proc = PerceptionProcessor(local_map=params, seed=3)
    stream = list(scene_stream(12, movers=(MOVER,)))
    outs = [proc.update(res, pose) for res, pose, _ in stream[:10]]
    ids = {ob.id for out in outs for ob in out.obstacles.obstacles}
    before = proc.map.count
    assert ids and before > params.candidates and not outs[-1].map_due
    proc.restart()
    res, pose, _ = stream[10]
    out = proc.update(res, pose)
    assert out.map_due and len(out.obstacles) == 0 and len(proc.tracker.state.ids) == 0
    assert proc.map.count <= params.candidates < before  # one frame's offer at most
    # a frame without a pose right after restart() is not held in the odometry frame that no longer holds: the
    # stream starts in its key frame, and the next pose starts the odometry stream
    proc.restart()
    res, pose, _ = stream[11]
    assert proc.update(res, None).fixed_frame == "keyframe"


def test_params_are_validated():
    with pytest.raises(ValueError, match="voxel"):
        ObstacleParams(voxel=0)
    with pytest.raises(ValueError, match="min_opacity"):
        ObstacleParams(min_opacity=2)
    with pytest.raises(ValueError, match="moving_speed"):
        ObstacleParams(moving_speed=-1)
    # divisors: a threshold of 0 (and no per-metre part) weighs the camera-motion fit's Gaussians infinitely; a
    # depth-rate weight of 0 leaves the depth rate's threshold infinite
    with pytest.raises(ValueError, match=r"moving_speed must be > 0"):
        ObstacleParams(moving_speed=0, moving_speed_per_m=0)
    with pytest.raises(ValueError, match=r"depth_rate_weight must be > 0"):
        ObstacleParams(depth_rate_weight=0)
    with pytest.raises(ValueError, match="box_trim"):
        ObstacleParams(box_trim=0.5)
    with pytest.raises(ValueError, match="early_agreement"):
        ObstacleParams(early_agreement=1.5)
    with pytest.raises(ValueError, match="early_hits"):
        ObstacleParams(early_hits=0)


@pytest.mark.parametrize("graph_path", [False, True])  # True: the GPU's code path, on the CPU
@pytest.mark.parametrize("max_range", [5.0, 100.0])  # 100: every Gaussian selected
def test_a_frame_where_everything_moves_is_skipped_not_mapped(max_range, graph_path):
    from test_perception_device import GraphPath

    proc = (GraphPath if graph_path else PerceptionProcessor)(ObstacleParams(max_range=max_range), seed=5)
    stream = list(scene_stream(8, movers=()))
    for res, pose, _ in stream[:6]:
        proc.update(res, pose)
    before = proc.map.count
    res, pose, _ = stream[6]
    res.gaussians.velocities[:] += np.float32([2.0, 0.0, 0.0])  # a wrong camera motion: the whole view "moves"
    out = proc.update(res, pose)
    assert proc.frames_skipped == 1 and out.moving_gaussians == 0 and len(out.obstacles) == 0
    assert proc.map.count == before


@pytest.mark.parametrize("graph_path", [False, True])  # True: the GPU's code path, on the CPU
def test_the_map_takes_gaussians_to_its_own_range_and_the_obstacles_keep_theirs(graph_path):
    """MapParams.max_range (6 m) reaches past ObstacleParams.max_range (5 m): the map takes the Gaussians out to it
    and none beyond, while the obstacles are those of a map within the obstacles' range (with odometry nothing drawn
    at random reaches them)."""
    from test_perception_device import GraphPath

    runs = {}
    for reach in (ObstacleParams().max_range, MapParams().max_range):
        proc = (GraphPath if graph_path else PerceptionProcessor)(local_map=MapParams(max_range=reach), seed=0)
        outputs = []
        for j, (res, pose, _) in enumerate(scene_stream(20, movers=(MOVER,))):
            out = proc.update(res, pose)
            outputs.append((out.moving_gaussians, [ob.position.tolist() for ob in out.obstacles.obstacles]))
            if j == 1:  # the first frame mapped: the depths of what it added
                depth = ((proc.map_snapshot().positions - pose[:3, 3]) @ pose[:3, :3])[:, 2]
                assert reach - 0.1 < depth.max() <= reach + MapParams().voxel, (reach, depth.max())
        runs[reach] = outputs, proc.map.count
    (near, near_count), (far, far_count) = runs.values()
    assert near == far and sum(n for n, _ in near) > 1000 and sum(len(o) for _, o in near) > 5
    assert far_count > near_count


def test_gaussians_off_the_input_depth_or_near_its_holes_are_not_on_it():
    from nut_ros.perception.dense import on_input_depth
    from perception_synth import K

    depth = np.full((K.height, K.width), 2.0, np.float32)
    depth[:, :40] = np.nan  # a border without depth
    v, u = np.mgrid[0:K.height:4, 0:K.width:4].reshape(2, -1).astype(float)  # pixel centres
    z = np.full(u.shape, 2.0)
    points = torch.from_numpy(np.column_stack([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z]).astype(np.float32))
    depth = torch.from_numpy(depth)
    on = on_input_depth(points, depth, K, 0.1).numpy()
    assert not on[u < 40].any() and on[u >= 40].all()
    near_hole = on_input_depth(points, depth, K, 0.1, margin_px=4).numpy()
    assert not near_hole[u < 44].any() and near_hole[u >= 44].all()  # the image's own border does not count
    off = points * torch.tensor([1.0, 1.0, 1.3])  # 30 % farther than the depth image says
    assert not on_input_depth(off, depth, K, 0.1).any()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
@pytest.mark.parametrize("margin", [0, 1, 4])
def test_the_hole_margin_is_a_binary_erosion_with_the_border_kept(device, margin):
    from scipy.ndimage import binary_erosion

    from nut_ros.core.geometry import Intrinsics
    from nut_ros.perception.dense import on_input_depth

    k = Intrinsics(50.0, 50.0, 30.0, 20.0, 61, 41)
    rng = np.random.default_rng(margin)
    depth = rng.uniform(1, 3, (k.height, k.width)).astype(np.float32)
    depth[rng.uniform(size=depth.shape) < 0.01] = np.nan  # scattered holes
    depth[:3, 10:14] = np.nan  # a hole at the image's edge
    v, u = np.mgrid[0:k.height, 0:k.width].reshape(2, -1)
    z = depth.reshape(-1)  # one point on every pixel centre, at that pixel's depth (NaN on holes: not on it)
    points = torch.tensor(np.column_stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z]), dtype=torch.float32)
    on = (on_input_depth(points.to(device), torch.from_numpy(depth).to(device), k, 0.01, margin)
          .cpu().numpy().reshape(depth.shape))
    want = binary_erosion(np.isfinite(depth), np.ones((2 * margin + 1,) * 2, bool), border_value=1)
    assert 0.2 < want.mean() < 0.99 and np.array_equal(on, want)


def test_a_metric_stage_sees_nothing_where_the_input_depth_has_none():
    proc, plain = PerceptionProcessor(seed=6), PerceptionProcessor(seed=6)
    moving = []
    for res, pose, _ in scene_stream(12, movers=(MOVER,)):
        moving.append(plain.update(res, pose).moving_gaussians)
        res.input_depth = np.full((res.intrinsics.height, res.intrinsics.width), np.nan, np.float32)
        out = proc.update(res, pose)
        assert out.moving_gaussians == 0 and len(out.obstacles) == 0
    assert sum(moving) > 0 and proc.map.count == 0 < plain.map.count


@pytest.mark.parametrize("odometry", [True, False])
def test_noise_floors_are_per_pair_displacement(odometry):
    """At 30 Hz a pair's displacement error is twice as large in speed as at 15 Hz (``floor_interval_s`` 1/15 s):
    the raised floors keep a static room with a moving camera free of moving Gaussians, where floors left at their
    per-second values let the noise through; a real mover is still tracked at its velocity."""
    def moving(params, movers=()):
        proc = PerceptionProcessor(params, seed=1)
        counts, out = [], None
        for res, pose, truths in scene_stream(40, movers=movers, camera_speed=0.6, yaw_rate=0.4, seed=3, noise=0.05,
                                              dt=1 / 30):
            out = proc.update(res, pose if odometry else None)
            counts.append(out.moving_gaussians)
        return sum(counts), out, pose, truths

    assert moving(ObstacleParams(floor_interval_s=1 / 15))[0] == 0
    assert moving(ObstacleParams(floor_interval_s=1e-9))[0] > 10  # floors not raised for the shorter interval
    _, out, pose, truths = moving(ObstacleParams(floor_interval_s=1 / 15), movers=(MOVER,))
    (ob,), ((_, velocity),) = out.obstacles.obstacles, truths
    assert np.linalg.norm(ob.velocity - pose[:3, :3].T @ velocity) < 0.15


@pytest.mark.parametrize("source", ["odometry", "motion"])
def test_no_obstacles_from_depth_from_motion_but_the_map_grows(source):
    """Depth from the camera's own motion assumes a static scene: those frames detect no obstacles (counted), drop
    the tracks and still feed the map; with depth_image_only off the same frames track the mover."""
    def run(params):
        proc = PerceptionProcessor(params, seed=0)
        counts = []
        for res, pose, _ in scene_stream(20, movers=(MOVER,)):
            res.depth_source = source if len(counts) >= 10 else "topic"  # the depth camera stops after 10 frames
            counts.append(len(proc.update(res, pose).obstacles))
        return proc, counts

    proc, counts = run(ObstacleParams())
    assert sum(counts[:10]) > 0 and sum(counts[10:]) == 0
    assert proc.frames_without_depth_image == 10 and len(proc.tracker.state.ids) == 0
    assert proc.map.count > 1000
    _, counts = run(ObstacleParams(depth_image_only=False))
    assert all(c == 1 for c in counts[10:])


def test_frames_that_cannot_detect_count_only_as_frames_without_a_depth_image():
    """frames_skipped counts the frames that could detect but had no trusted camera motion; a frame without a depth
    image detects nothing whatever its camera motion, so a failed fit there is not counted again."""
    proc = PerceptionProcessor(seed=2)
    rng = np.random.default_rng(1)
    for j, (res, _, _) in enumerate(scene_stream(12, movers=())):
        if j >= 6:
            res.depth_source = "motion"
        if j >= 9:  # flow that is noise everywhere: the fit fails
            res.gaussians.velocities[:] = rng.normal(0, 3.0, res.gaussians.velocities.shape)
        proc.update(res)
    assert proc.frames_without_depth_image == 6 and proc.frames_skipped == 0


def test_noise_floors_are_not_lowered_for_longer_pairs():
    from types import SimpleNamespace

    proc = PerceptionProcessor(ObstacleParams(floor_interval_s=1 / 15))
    assert proc._floor_scale(SimpleNamespace(paired=True, pair_interval_s=1 / 30)) == pytest.approx(2.0)
    assert proc._floor_scale(SimpleNamespace(paired=True, pair_interval_s=1 / 15)) == pytest.approx(1.0)
    assert proc._floor_scale(SimpleNamespace(paired=True, pair_interval_s=1 / 5)) == 1.0
    assert proc._floor_scale(SimpleNamespace(paired=False, pair_interval_s=None)) == 1.0


def test_far_objects_need_fewer_moving_gaussians_but_only_near_ones_found_tracks():
    p = ObstacleParams()  # min_cluster_gaussians 25 up to min_cluster_depth 3.5 m: 16 at 4.5 m
    rng = np.random.default_rng(5)

    def blob(n, x, z):
        return np.column_stack([x + rng.uniform(0, 0.3, n), rng.uniform(0, 0.3, n), np.full(n, z)])

    points = np.concatenate([blob(18, -2.0, 4.5), blob(18, 0.0, 2.0), blob(30, 2.0, 2.0), blob(14, 4.0, 4.5)])
    velocity = np.tile([0.5, 0.0, 0.0], (len(points), 1))
    clusters, founding = PerceptionProcessor(p)._objects(points, velocity, np.ones(len(points)), WIDE)
    assert np.round(clusters.center[:, [0, 2]]).tolist() == [[-2, 5], [2, 2]]  # box centres pushed back in z
    assert founding.tolist() == [False, True]


def test_a_cluster_without_a_measured_depth_rate_is_not_confirmed_at_birth(monkeypatch):
    """A cluster whose members' depth rates were all clipped (leading edges: NaN in the download) has no measured
    depth rate: its stand-in (-change_max_speed, past birth_depth_rate) neither confirms the track it starts nor
    weighs as a measurement of its velocity; a measured depth rate that fast confirms it at once."""
    from nut_ros.perception import processor

    def first_track(rate):
        def unpack(*args, **kwargs):
            found = processor_unpack(*args, **kwargs)
            found.movers[1][:, 2] = rate
            return found

        monkeypatch.setattr(processor, "unpack", unpack)
        proc = PerceptionProcessor(seed=0)
        for res, pose, _ in scene_stream(8, movers=(MOVER,)):
            proc.update(res, pose)
            if proc.tracker.state.ids:
                return proc.tracker.state
        raise AssertionError("no track")

    processor_unpack = processor.unpack
    unmeasured, measured = first_track(np.nan), first_track(-1.2)
    assert len(unmeasured.ids) == 1 and not unmeasured.confirmed.any()
    assert len(measured.ids) == 1 and measured.confirmed.all()
    velocity_var = [np.linalg.eigvalsh(s.cov[0, 3:, 3:]).max() for s in (unmeasured, measured)]
    assert velocity_var[0] > 100 * velocity_var[1], velocity_var


def test_a_sliver_cut_by_the_image_edge_keeps_a_track_going_but_founds_none():
    p = ObstacleParams(min_width=0.2, border_px=8)
    k = Intrinsics(100.0, 100.0, 99.5, 49.5, 200, 100)  # x = ±2 m at the left / right edge at z = 2 m
    rng = np.random.default_rng(6)

    def sliver(x0):  # 0.06 m wide (0.16 with the padding of half a voxel), 0.5 m tall, at 2 m
        return np.column_stack([rng.uniform(x0, x0 + 0.06, 60), rng.uniform(-0.25, 0.25, 60), np.full(60, 2.0)])

    points = np.concatenate([sliver(-2.0), sliver(0.0)])  # at the left edge, and mid-image (a depth edge's sliver)

    def objects(params, odometry=True):
        proc = PerceptionProcessor(params)
        proc._registered = odometry  # as after frames with (or without) odometry poses
        return proc._objects(points, np.tile([0.5, 0, 0], (120, 1)), np.ones(120), k)

    clusters, founding = objects(p)
    assert len(clusters) == 1 and clusters.center[0, 0] < -1.8 and founding.tolist() == [False]
    assert clusters.size[0, 0] > 0.45  # its box reaches out past the edge, as wide as it is tall
    assert len(objects(replace(p, border_px=0))[0]) == 0  # without the edge test both are slivers
    assert len(objects(p, odometry=False)[0]) == 0  # and without odometry


def test_the_image_edge_cuts_clusters_reaching_it():
    k = Intrinsics(100.0, 100.0, 99.5, 49.5, 200, 100)
    points = np.array([[-1.99, 0, 2], [-1.5, 0, 2], [0, 0, 2], [0.1, 0.97, 2], [1.97, -0.98, 2], [1.5, 0, 2],
                       [-2.0, 0, 2], [1.98, 0, 2]])
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # left; bottom; right and top; both sides of x
    np.testing.assert_array_equal(cut_by_border(points, labels, 4, k, 2), [[-1, 0], [0, 1], [1, -1], [0, 0]])
    assert not cut_by_border(points, labels, 4, k, 0).any()


def test_learned_flow_gets_its_own_share_of_the_camera_motion():
    """Velocities from the learned flow head are judged with ``learned_flow_error_ratio``, classical flow's with
    ``flow_error_ratio``: a ratio that swamps the mover hides it only from the stream the learned head made."""
    params = ObstacleParams(flow_error_ratio=0.2, learned_flow_error_ratio=10.0)
    assert params.for_motion("flow") is params and params.for_motion("none") is params
    assert params.for_motion("learned").flow_error_ratio == 10.0

    def reported(prior, settings):
        proc = PerceptionProcessor(settings, seed=0)
        return sum(len(proc.update(replace(res, motion_prior=prior), pose).obstacles)
                   for res, pose, _ in scene_stream(30, movers=(MOVER,)))

    flow = reported("flow", params)
    assert flow >= 20 and reported("learned", params) < flow / 5  # found only where the camera barely turns
    assert reported("learned", replace(params, learned_flow_error_ratio=0.2)) == flow
    with pytest.raises(ValueError, match="learned_flow_error_ratio"):
        ObstacleParams(learned_flow_error_ratio=-0.1)


def _lagging(res, where, share: float = 0.5):
    """``res`` with the velocities of its Gaussians whose image column ``u`` passes ``where(u)`` scaled by ``share``:
    the flow there reading only part of the camera's apparent motion."""
    g = res.gaussians
    u = K.fx * g.positions[:, 0] / g.positions[:, 2] + K.cx + 0.5
    vel = g.velocities.copy()
    vel[where(u)] *= share
    return replace(res, gaussians=replace(g, velocities=vel))


def _edge_lagging(res, strip_px: float = 6.0):
    """Within ``strip_px`` of the image's left and right edges, where the flow's window is cut."""
    return _lagging(res, lambda u: (u < strip_px) | (u > K.width - strip_px))


@pytest.mark.parametrize("odometry", [True, False])
def test_flow_lagging_at_the_image_edge_is_not_read_as_motion(odometry):
    """Near the image's edge the flow reads only part of a turning camera's apparent motion (its window is cut,
    new content comes in), so the error share grows there (``edge_flow_px``, ``edge_flow_gain``): a static strip
    whose flow lags by half is hardly moving with it, and mostly moving without it."""
    def moving(params):
        proc = PerceptionProcessor(params, seed=1)
        return sum(proc.update(_edge_lagging(res), pose if odometry else None).moving_gaussians
                   for res, pose, _ in scene_stream(40, movers=(), camera_speed=0.3, yaw_rate=0.8, seed=3,
                                                    n_room=40000))

    fast = ObstacleParams(flow_error_knee_px=0.0)  # (this camera turns ~10 px per pair: the edge term alone)
    assert moving(fast) < 200
    assert moving(replace(fast, edge_flow_px=0.0)) > 1000


def test_the_flow_error_share_grows_linearly_towards_every_image_edge():
    params = ObstacleParams(edge_flow_px=10.0, edge_flow_gain=2.0)
    u = torch.tensor([0.0, 5.0, 10.0, 128.0, 128.0, 128.0, 251.0])
    v = torch.tensor([72.0, 72.0, 72.0, 0.0, 72.0, 144.0, 72.0])
    assert torch.allclose(edge_factor((u, v), K, params), torch.tensor([3.0, 2.0, 1.0, 3.0, 1.0, 3.0, 2.0]))
    assert torch.equal(edge_factor((u, v), K, replace(params, edge_flow_px=0.0)), torch.ones(7))
    with pytest.raises(ValueError, match="edge_flow_gain"):
        ObstacleParams(edge_flow_gain=-1.0)


def _centre_lagging(res):
    """In the middle third of the image's width: a camera's apparent motion that outruns the flow."""
    return _lagging(res, lambda u: (u > K.width / 3) & (u < 2 * K.width / 3))


def test_flow_lagging_over_pairs_far_apart_is_not_read_as_motion():
    """A turning camera sampled at 4 Hz moves the view tens of pixels per pair, more than the flow follows, so the
    error share grows with the pair's displacement (``flow_error_knee_px``, ``flow_error_growth``): a static region
    whose flow lags by half is hardly moving with it and mostly moving without it. The pair's interval decides: at
    15 Hz (up to about 10 pixels per pair here, a factor of at most 2.5) the same lag still reads as motion, and so
    it does at 4 Hz when the results claim 15 Hz pairs."""
    def moving(params, dt, claimed=None):
        proc = PerceptionProcessor(params, seed=1)
        return sum(proc.update(_centre_lagging(replace(res, pair_interval_s=claimed or res.pair_interval_s)),
                               pose).moving_gaussians
                   for res, pose, _ in scene_stream(30, movers=(), camera_speed=0.3, yaw_rate=0.8, seed=3,
                                                    n_room=20000, dt=dt))

    assert moving(ObstacleParams(), 0.25) < 200
    assert moving(ObstacleParams(flow_error_knee_px=0.0), 0.25) > 1000
    assert moving(ObstacleParams(), 1 / 15) > 1000
    assert moving(ObstacleParams(), 0.25, claimed=1 / 15) > 1000


def test_the_flow_error_share_grows_with_the_pairs_displacement_beyond_the_knee():
    params = ObstacleParams(flow_error_knee_px=16.0, flow_error_growth=1.5)
    pair = torch.tensor(0.1, dtype=torch.float64)
    pixels = torch.tensor([0.0, 8.0, 16.0, 32.0, 48.0])  # static displacement over the pair, model pixels
    centre = torch.tensor([[0.0, 0.0, 2.0]]).repeat(5, 1)  # on the optical axis
    sideways = torch.stack([pixels * 2.0 / (K.fx * 0.1), torch.zeros(5), torch.zeros(5)], 1)  # m/s
    assert torch.allclose(displacement_factor(centre, sideways, pair, K, params),
                          torch.tensor([1.0, 1.0, 1.0, 2.5, 4.0]))
    # off the axis a static point coming closer moves outwards in the image: perspective, u' = fx (x' - x z'/z) / z
    off = torch.tensor([[1.0, 0.0, 2.0]]).repeat(5, 1)
    closing = torch.stack([torch.zeros(5), torch.zeros(5), -pixels * 2.0 / (K.fx * 0.5 * 0.1)], 1)
    assert torch.allclose(displacement_factor(off, closing, pair, K, params), torch.tensor([1.0, 1.0, 1.0, 2.5, 4.0]))
    capped = displacement_factor(centre, sideways, pair, K, replace(params, flow_error_max_factor=3.0))
    assert torch.allclose(capped, torch.tensor([1.0, 1.0, 1.0, 2.5, 3.0]))
    # the same speeds over a pair a quarter as long stay under the knee; an unknown interval (0) never grows
    quarter = displacement_factor(centre, sideways, torch.tensor(0.025, dtype=torch.float64), K, params)
    assert torch.equal(quarter, torch.ones(5))
    assert torch.equal(displacement_factor(centre, sideways, torch.tensor(0.0), K, params), torch.ones(5))
    for off_params in (replace(params, flow_error_knee_px=0.0), replace(params, flow_error_growth=0.0)):
        assert torch.equal(displacement_factor(centre, sideways, pair, K, off_params), torch.ones(5))
    nan = displacement_factor(torch.full((1, 3), float("nan")), sideways[:1], pair, K, params)
    assert torch.equal(nan, torch.ones(1))  # rows the selection dropped (NaN) add nothing
    assert params.for_motion("learned").flow_error_growth == 0.0  # the learned head's share was chosen whole
    with pytest.raises(ValueError, match="flow_error_growth"):
        ObstacleParams(flow_error_growth=-1.0)
    with pytest.raises(ValueError, match="flow_error_max_factor"):
        ObstacleParams(flow_error_max_factor=0.5)


def test_reported_obstacles_are_the_confirmed_moving_tracks_in_the_camera_frame():
    """Tracks live in the fixed frame; a report turns position, velocity and both covariances into the current
    camera optical frame, gives confidence = detections / frames tracked, and leaves out tracks slower than
    ``min_speed``."""
    from types import SimpleNamespace

    from nut_ros.perception.tracking import Detection

    op = ObstacleParams(confirm_hits=1, min_travel=0.0, min_agreement=-1.0, min_speed=0.25)
    proc = PerceptionProcessor(op, seed=0)
    det = Detection(np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 3.0]]), np.array([[0.5, 0.2, 0.0], [0.1, 0.0, 0.0]]),
                    np.full((2, 3), 0.4), np.ones(2), np.diag([0.04, 0.09, 0.25]))
    proc.tracker.update(det, 0.1)
    proc.tracker.update(Detection(*(np.zeros((0, 3)),) * 3, np.zeros(0), np.eye(3)), 0.1)  # a miss: age 2, 1 hit
    rot = quaternion_to_matrix(np.array([0.0, 0.0, np.sin(0.6), np.cos(0.6)]))  # camera turned 1.2 rad about z
    trans = np.array([2.0, -1.0, 0.5])
    frame = SimpleNamespace(stamp_ns=7, frame_id="cam", gaussians=SimpleNamespace(metric=True))
    out = proc._report(frame, rot, trans)
    s = proc.tracker.state
    assert len(out.obstacles) == 1 and out.frame_id == "cam" and out.metric  # the 0.1 m/s track is not reported
    o, i = out.obstacles[0], int(np.argmax(np.linalg.norm(s.mean[:, 3:], axis=1)))
    np.testing.assert_allclose(o.position, rot.T @ (s.mean[i, :3] - trans))
    np.testing.assert_allclose(o.velocity, rot.T @ s.mean[i, 3:])
    np.testing.assert_allclose(o.position_covariance, rot.T @ s.cov[i, :3, :3] @ rot)
    np.testing.assert_allclose(o.velocity_covariance, rot.T @ s.cov[i, 3:, 3:] @ rot)
    assert o.confidence == 0.5 and o.age == 2 and o.id == s.ids[i]
    assert not np.allclose(o.velocity_covariance, s.cov[i, 3:, 3:])  # (the turn changes it: the test can tell)
