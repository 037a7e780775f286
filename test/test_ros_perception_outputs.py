"""The perception stage in the per-frame path (``FrameProcessor``, shared by the node and replay) and in the node:
a generated RGB-D stream (a static room, the camera creeping sideways, with or without odometry) through the tiny
model gives an ObstacleArray and a MarkerArray every frame (empty ones too) in the camera frame, the local map at
``map_period`` in the fixed frame, the publish toggles and ``frame_id`` applied between frames, the perception
diagnostics; in the node, the map is transient local (a subscriber that joins late gets the last map) and
lifecycle cleanup forgets the perception state."""
import os
import time

import numpy as np
import pytest

import generated_room as room
from nut_ros.ros.conversions import depth_to_image, intrinsics_to_camera_info, numpy_to_image, stamp_to_ns
from nut_ros.ros.odometry import pose_to_odometry
from nut_ros.ros.params import NodeParams, ParamError

FLAVOR = "rosbags"  # no rclpy needed for the per-frame path
T0 = 1_700_000_000 * 10**9
PERIOD_NS = 100_000_000  # 10 Hz
CAMERA, ODOM = "test_camera_optical_frame", "test_odom"
MAP_PERIOD = 0.15  # s: with frames 0.1 s apart and the first frame unpaired, the map is due at frames 1, 3, 5
DELETEALL = 3  # visualization_msgs/Marker.DELETEALL


def stream_messages(i: int, odometry: bool):
    """Frame ``i`` of the generated stream: (odometry or None, CameraInfo, 32FC1 depth, rgb8 image), all stamped
    alike; the camera moves 1 cm per frame (0.1 m/s: the static room stays static for the moving test)."""
    stamp = T0 + i * PERIOD_NS
    pose = room.pose(x=0.01 * i)
    rgb, depth, _ = room.render(pose)
    return (pose_to_odometry(pose, stamp, ODOM, "base", FLAVOR) if odometry else None,
            intrinsics_to_camera_info(room.K, stamp, CAMERA, FLAVOR),
            depth_to_image(depth.astype(np.float32), stamp, CAMERA, "32FC1", FLAVOR),
            numpy_to_image(rgb, "rgb8", stamp, CAMERA, FLAVOR))


def feed(processor, i: int, odometry: bool):
    """Hand frame ``i`` to the processor's inputs as the node's callbacks do; the completed match."""
    odom, info, depth, image = stream_messages(i, odometry)
    if odom is not None:
        assert processor.add_odometry(odom) is None
    matched = [processor.add_info(info), processor.add_depth(depth), processor.add_image(image)]
    assert matched[-1] is not None and matched[-1].depth is not None
    return matched[-1]


def params(**values) -> NodeParams:
    # motion_prior none: the cheapest velocities (the test is about the messages, not their accuracy)
    base = dict(perception=True, depth_source="topic", motion_prior="none", map_period=MAP_PERIOD)
    return NodeParams(**{**base, **values}).validate()


def processor_for(p: NodeParams):
    from nut_ros.ros.processor import FrameProcessor, build_pipeline, processor_settings

    return FrameProcessor(build_pipeline(p), processor_settings(p), flavor=FLAVOR)


@pytest.mark.parametrize("odometry, frames, fixed", [(True, {}, ODOM), (True, {"map_frame": "map"}, "map"),
                                                     (False, {}, f"{CAMERA}_keyframe"),
                                                     (False, {"keyframe_frame": "kf"}, "kf")])
def test_obstacles_every_frame_and_the_map_at_its_period(odometry, frames, fixed):
    """... the map's frame: the odometry's (``map_frame`` only renames it, with a warning once), without odometry
    ``keyframe_frame``, by default the frame_id's (the image's, or the parameter once set) with ``_keyframe``."""
    from nut_ros.ros.conversions import msg_to_gaussian_cloud, pointcloud2_to_points
    from nut_ros.ros.health import diagnostics_message, stats_message

    processor = processor_for(params(use_odometry=odometry, **frames))
    per_frame, notes = [], []
    for i in range(6):
        if i == 4:  # dynamic changes, applied between frames
            processor.update(outputs=processor.settings.outputs - {"obstacle_markers", "map"}, frame_id="override")
        outcome = processor.process(feed(processor, i, odometry))
        assert outcome.drop is None, outcome.drop
        notes += outcome.notes
        names = [name for name, _, _ in outcome.messages]
        assert len(names) == len(set(names)), f"one message per output and frame: {names}"
        per_frame.append({name: (stamp, msg) for name, stamp, msg in outcome.messages})
    for i, msgs in enumerate(per_frame):
        stamp, frame_id = T0 + i * PERIOD_NS, CAMERA if i < 4 else "override"
        obstacles = msgs["obstacles"][1]
        assert msgs["obstacles"][0] == stamp == stamp_to_ns(obstacles.header.stamp)
        assert obstacles.header.frame_id == frame_id and obstacles.metric, "camera optical frame, metres"
        assert all(o.header.frame_id == frame_id and stamp_to_ns(o.header.stamp) == stamp for o in obstacles.obstacles)
        if i < 4:
            markers = msgs["obstacle_markers"][1].markers
            assert markers[0].action == DELETEALL and len(markers) == 1 + 2 * len(obstacles.obstacles)
            assert {(m.header.frame_id, stamp_to_ns(m.header.stamp)) for m in markers} == {(frame_id, stamp)}
        else:
            assert "obstacle_markers" not in msgs, "publish_obstacle_markers false"
    map_frames = [i for i, msgs in enumerate(per_frame) if "map_points" in msgs]
    assert map_frames == [1, 3, 5], "the map is due at map_period, from the first frame with a camera motion"
    for i in map_frames:
        if i >= 4:  # the frame_id parameter set: the default key-frame name follows it
            fixed = fixed.replace(CAMERA, "override")
        stamp, points = per_frame[i]["map_points"]
        assert stamp == T0 + i * PERIOD_NS == stamp_to_ns(points.header.stamp)
        assert points.header.frame_id == fixed, "the map is in the fixed frame, not the camera's"
        xyz, rgb = pointcloud2_to_points(points)
        assert xyz.shape[0] > 100 and rgb is not None and np.isfinite(xyz).all()
        if i < 4:
            gaussians = per_frame[i]["map"][1]
            assert gaussians.header.frame_id == fixed and gaussians.metric
            np.testing.assert_array_equal(msg_to_gaussian_cloud(gaussians).positions, xyz)
        else:
            assert "map" not in per_frame[i], "publish_map false"
    renamed = [n for n in notes if "map_frame" in n]
    if frames.get("map_frame"):
        assert renamed == [f"map_frame 'map' is not the odometry's frame '{ODOM}': the map's coordinates are in "
                           f"'{ODOM}' and only labelled 'map' (no transform is applied): set map_frame to "
                           f"'{ODOM}' or leave it empty"], "said once"
    else:
        assert not renamed, renamed

    values = processor.perception_values()
    assert set(values) == {"latency_obstacles_ms", "latency_map_ms", "perception_frames_skipped",
                           "perception_frames_without_depth_image", "perception_frames_without_pose"}
    assert values["perception_frames_without_pose"] == 0, "with odometry every frame had its pose"
    assert values["perception_frames_without_depth_image"] == 0, "every frame had its depth image"
    assert values["latency_obstacles_ms"] > 0 and values["latency_map_ms"] > 0
    assert values["perception_frames_skipped"] == 0, "every paired frame had a trusted camera motion"
    last, now = processor.health.period()
    stats = stats_message(processor.health, last, now, {"backend": "torch", "model": "tiny", "depth_source": "topic",
                                                        "metric": True}, 0, T0, FLAVOR)
    keys = {kv.key: kv.value for kv in diagnostics_message(stats, 0, "ok", "n", "h", T0, FLAVOR,
                                                           processor.diagnostic_values()).status[0].values}
    assert keys["perception_frames_skipped"] == "0" and float(keys["latency_obstacles_ms"]) > 0
    assert keys["motion_prior"] == processor.pipeline.motion_prior


def test_perception_off_adds_nothing():
    processor = processor_for(params(perception=False))
    for i in range(2):
        outcome = processor.process(feed(processor, i, False))
        assert outcome.drop is None and {n for n, _, _ in outcome.messages} == {"depth", "image", "camera_info",
                                                                                 "points", "gaussians"}
    assert processor.perception is None and processor.perception_values() == {}
    assert processor.diagnostic_values() == {"motion_prior": processor.pipeline.motion_prior,
                                             "frames_depth_unusable": 0, "frames_pending": 0, "frames_unpaired": 0,
                                             "depth_rejected": 0, "camera_info_rejected": 0, "odometry_rejected": 0,
                                             "odometry_resets": 0, "frames_without_pose": 0}
    assert not processor.settings.outputs & {"obstacles", "obstacle_markers", "map_points", "map"}, \
        "the node's start-up log lists what it publishes"


def test_perception_compile_reaches_the_stage_and_its_failure_is_said_once():
    from nut_ros.perception.dense import find_moving

    assert processor_for(params()).perception._dense[find_moving] is find_moving
    processor = processor_for(params(perception_compile=True))
    assert processor.perception._dense[find_moving] is not find_moving  # (compiled on a GPU's first frame)
    processor.perception.compile_error = "BackendCompilerFailed: no Triton"  # as the stage records it
    notes = [processor.process(feed(processor, i, False)).notes for i in range(2)]
    assert notes == [["perception_compile failed, the perception stage runs without it: BackendCompilerFailed: "
                      "no Triton"], []]


def test_a_failed_fit_kernel_is_said_once(monkeypatch):
    from nut_ros.perception import fit_kernel

    processor = processor_for(params())
    monkeypatch.setattr(fit_kernel, "error", "CompilationError: no ptxas")  # as the kernel's first launch records it
    notes = [processor.process(feed(processor, i, False)).notes for i in range(2)]
    assert notes == [["the camera-motion fit's Triton kernel failed, the fit runs in torch: CompilationError: "
                      "no ptxas"], []]


def test_perception_parameters_reach_the_stage_and_bad_ones_are_named():
    p = NodeParams(obstacle_voxel=0.3, obstacle_confirm_hits=2, map_budget=1000, map_period=2.5,
                   obstacle_flow_error_knee_px=6.0, obstacle_flow_error_growth=0.0,
                   obstacle_flow_error_max_factor=2.0).validate()
    obstacles, local_map = p.perception_params()
    assert (obstacles.voxel, obstacles.confirm_hits, local_map.budget, local_map.snapshot_period_s) == \
        (0.3, 2, 1000, 2.5)
    assert (obstacles.flow_error_knee_px, obstacles.flow_error_growth, obstacles.flow_error_max_factor) == \
        (6.0, 0.0, 2.0)
    with pytest.raises(ParamError, match=r"obstacle_voxel=0.0 is outside.*map_budget=0 is outside"):
        NodeParams.from_dict({"obstacle_voxel": 0.0, "map_budget": 0})
    assert NodeParams.from_dict({"keyframe_frame": ""}).keyframe_frame == "", "empty: <camera frame>_keyframe"
    with pytest.raises(ParamError, match=r"obstacle_moving_speed=0.0 is outside \[0.001"):
        NodeParams.from_dict({"obstacle_moving_speed": 0.0, "obstacle_moving_speed_per_m": 0.0})


@pytest.mark.ros
def test_node_map_is_transient_local_and_obstacles_volatile():
    """The node's own publishers, over DDS: a subscriber joining after the map was published gets the last map;
    one joining the obstacles late gets nothing old (volatile, every frame)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from nut_ros.ros import topics
    from nut_ros.ros.lifecycle_node import NutRosNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=101 + (os.getpid() + 61) % 100)
    overrides = [Parameter(k, value=v) for k, v in dict(perception=True, depth_source="topic", motion_prior="none",
                                                          map_period=MAP_PERIOD, autostart=False).items()]
    node = NutRosNode(context=context, parameter_overrides=overrides)
    listener = rclpy.create_node("perception_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.error
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        durability = {name: {i.qos_profile.durability for i in
                             listener.get_publishers_info_by_topic(topics.output_topic(name))}
                      for name in topics.PERCEPTION_OUTPUTS}
        assert durability == {"obstacles": {DurabilityPolicy.VOLATILE},
                              "obstacle_markers": {DurabilityPolicy.VOLATILE},
                              "map_points": {DurabilityPolicy.TRANSIENT_LOCAL},
                              "map": {DurabilityPolicy.TRANSIENT_LOCAL},
                              "relative/map_points": {DurabilityPolicy.TRANSIENT_LOCAL}}
        for i in range(2):  # the worker's path: frame 1 makes the map due
            node._process(feed(node.processor, i, False), time.perf_counter())
        received = {name: [] for name in ("map_points", "map", "obstacles")}
        for name, durability in (("map_points", DurabilityPolicy.TRANSIENT_LOCAL),
                                 ("map", DurabilityPolicy.TRANSIENT_LOCAL), ("obstacles", DurabilityPolicy.VOLATILE)):
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
            listener.create_subscription(topics.resolve_type(topics.OUTPUT_TYPES[name]), topics.output_topic(name),
                                         received[name].append, qos)
        executor.add_node(listener)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (received["map_points"] and received["map"]):
            executor.spin_once(timeout_sec=0.1)
        for name in ("map_points", "map"):
            assert [stamp_to_ns(m.header.stamp) for m in received[name]] == [T0 + PERIOD_NS], name
            assert received[name][0].header.frame_id == f"{CAMERA}_keyframe"
        assert not received["obstacles"], "obstacles are volatile: a late subscriber gets only new ones"
        assert node.processor.perception.map_snapshot().count > 0
        assert node.set_parameters([Parameter("publish_map", value=False),
                                    Parameter("marker_lifetime", value=2.0)])[0].successful, "dynamic"
        refused = node.set_parameters([Parameter("map_period", value=5.0)])[0]
        assert not refused.successful and "only while the node is unconfigured" in refused.reason
        node._apply_pending()  # what the worker does between frames
        settings = node.processor.settings
        assert "map" not in settings.outputs and "map_points" in settings.outputs
        assert settings.marker_lifetime_s == 2.0
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and node.processor is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.processor.perception.map_snapshot().count == 0, "cleanup forgets the map and the tracks"
        assert len(node.processor.perception.tracker.state.ids) == 0
    finally:
        executor.shutdown()
        listener.destroy_node()
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=context)


def _rgb_odometry_stream(processor, frames: int, before=None):
    """RGB + odometry (no depth image), the camera moving 2 cm per frame: the stream's first frames have no depth
    yet (relative), then depth from motion gives metric frames; ``before(i)`` runs ahead of frame ``i``. The
    ``(frame, output, message)`` published."""
    published = []
    for i in range(frames):
        if before is not None:
            before(i)
        stamp = T0 + i * PERIOD_NS
        pose = room.pose(x=0.02 * i)
        rgb, _, _ = room.render(pose)
        assert processor.add_odometry(pose_to_odometry(pose, stamp, ODOM, "base", FLAVOR)) is None
        processor.add_info(intrinsics_to_camera_info(room.K, stamp, CAMERA, FLAVOR))
        outcome = processor.process(processor.add_image(numpy_to_image(rgb, "rgb8", stamp, CAMERA, FLAVOR)))
        assert outcome.drop is None, outcome.drop
        published += [(i, name, msg) for name, _, msg in outcome.messages]
    return published


def _map_points(published):
    from nut_ros.ros.conversions import pointcloud2_to_points

    return [(i, name, pointcloud2_to_points(msg)[0].shape[0]) for i, name, msg in published
            if name in ("map_points", "relative/map_points")]


def test_the_map_moves_to_the_metric_topic_and_empties_the_relative_one():
    """A map published on ~/relative/map_points is emptied when the map turns metric (both topics are latched), and
    only metric maps follow, on ~/map_points."""
    published = _rgb_odometry_stream(processor_for(params(use_odometry=True, depth_source="none")), 10)
    depth_frames = {name: [i for i, n, _ in published if n == name] for name in ("depth", "relative/depth")}
    assert depth_frames["relative/depth"] and depth_frames["depth"], depth_frames
    assert max(depth_frames["relative/depth"]) < min(depth_frames["depth"]), "relative first, then metric"
    maps = _map_points(published)
    emptied = [i for i, name, n in maps if name == "relative/map_points" and n == 0]
    assert len(emptied) == 1, maps
    assert any(name == "relative/map_points" and n > 0 and i < emptied[0] for i, name, n in maps), maps
    assert all(name == "map_points" and n > 0 for i, name, n in maps if i > emptied[0]), maps
    assert any(name == "map_points" for i, name, n in maps if i > emptied[0]), maps


def test_a_relative_map_left_latched_while_its_switch_was_off_is_emptied_once_it_is_on():
    processor = processor_for(params(use_odometry=True, depth_source="none"))
    points = {"map_points", "relative/map_points"}
    everything = processor.settings.outputs

    def toggle(i):
        if i == 2:  # after the first relative map (frame 1): publish_map_points off ...
            processor.update(outputs=everything - points)
        if i == 8:  # ... on again once the map is metric
            processor.update(outputs=everything)

    maps = _map_points(_rgb_odometry_stream(processor, 10, toggle))
    assert [(i, name) for i, name, n in maps if i < 8] == [(1, "relative/map_points")], maps
    assert (8, "relative/map_points", 0) in maps, "the stale relative map is emptied when the switch is back on"


@pytest.mark.parametrize("change", [dict(render_times=(float("inf"),)), dict(render_times=(1.0,) * 9),
                                    dict(interp_samples=2.5), dict(outputs=None), dict(marker_lifetime_s=float("nan")),
                                    dict(sync_tolerance_s=float("nan"), render_times=(0.5, 1.0))])
def test_a_change_the_per_frame_path_cannot_use_is_refused_whole(change):
    """FrameProcessor.update (the node's dynamic parameters; replay's API) refuses values that would fail a later
    frame, before anything applies."""
    processor = processor_for(params())
    settings, config = processor.settings, processor.pipeline.config
    with pytest.raises(ValueError):
        processor.update(**change)
    assert processor.settings is settings and processor.pipeline.config is config
    assert processor.process(feed(processor, 0, False)).drop is None


def test_odometry_beyond_the_local_maps_reach_is_ignored_with_the_reason():
    """Odometry in a far frame (UTM-like) would put every map Gaussian into the keys' edge voxels: it is refused
    with a reason naming the limit and the fix, and the pose buffer stays as it was; without perception (depth from
    motion needs relative poses only) the same message is used."""
    processor = processor_for(params(use_odometry=True, map_voxel=0.05))
    reach = processor.perception.map.reach
    assert reach == pytest.approx(2**20 * 0.05 - processor.perception.map.p.max_range)
    near, far = room.pose(x=0.0), room.pose(x=0.0)
    near[:3, 3] += [reach - 1.0, 0.0, 0.0]
    far[:3, 3] += [0.0, -(reach + 1.0), 0.0]
    assert processor.add_odometry(pose_to_odometry(near, T0, ODOM, "base", FLAVOR)) is None
    problem = processor.add_odometry(pose_to_odometry(far, T0 + PERIOD_NS, ODOM, "base", FLAVOR))
    assert problem is not None and "local map reaches" in problem and "local frame" in problem
    assert processor.poses.camera_pose(T0 + PERIOD_NS) is None or np.allclose(
        processor.poses.camera_pose(T0 + PERIOD_NS)[:3, 3], processor.poses.camera_pose(T0)[:3, 3])
    plain = processor_for(params(use_odometry=True, perception=False))
    assert plain.add_odometry(pose_to_odometry(far, T0, ODOM, "base", FLAVOR)) is None


def test_a_cleared_pose_buffer_restarts_the_perception_stream():
    """When the pose buffer is cleared (odometry stamps jumping back, another odometry source taken, the camera mount
    changed), the odometry frame the map and tracks live in no longer holds: the perception stage starts again, and
    its emptied map is published with that frame."""
    processor = processor_for(params(use_odometry=True, map_period=100.0))
    for i in range(4):
        processor.process(feed(processor, i, True))
    before = processor.perception.map.count
    assert before > 0
    processor.poses.clear()  # as a jump back or a change of source or mount does
    for i in (4, 5):
        feed(processor, i, True)  # (the frame 4 match needs its pose again: re-fed after the clear)
    outcome = processor.process(feed(processor, 6, True))
    names = [name for name, _, _ in outcome.messages]
    assert "map_points" in names and processor.perception.map.count < before


def test_a_pose_buffer_cleared_after_a_frame_s_pose_was_read_restarts_the_stream_with_the_next_frame(monkeypatch):
    """The poses cleared while a frame is in the pipeline (its pose read before): that frame's pose is of the old
    odometry frame and goes on with it; the next frame, whose pose is the first of the new frame, restarts."""
    processor = processor_for(params(use_odometry=True, map_period=100.0))
    for i in range(3):
        processor.process(feed(processor, i, True))
    push = processor.pipeline.push

    def push_then_clear(frame):
        processor.poses.clear()  # on the executor thread, while the worker runs the pipeline
        return push(frame)

    monkeypatch.setattr(processor.pipeline, "push", push_then_clear)
    names = [name for name, _, _ in processor.process(feed(processor, 3, True)).messages]
    assert "map_points" not in names  # not restarted: this frame's pose is of the poses before the clear
    monkeypatch.setattr(processor.pipeline, "push", push)
    names = [name for name, _, _ in processor.process(feed(processor, 4, True)).messages]
    assert "map_points" in names  # restarted: the emptied map at once


def test_one_undecodable_depth_image_in_a_depth_stream_is_one_drop_not_two_restarts():
    """Like a blinded sensor's: the frame is dropped, the stream and its depth go on."""
    processor = processor_for(params(perception=False))
    outcomes = []
    for i in range(4):
        matched = feed(processor, i, False)
        if i == 2:
            matched.depth.data = bytes(matched.depth.data)[:100]  # truncated in transport
        outcomes.append(processor.process(matched))
    assert [o.drop is None for o in outcomes] == [True, True, False, True]
    assert any("depth image not decodable" in n for n in outcomes[2].notes), outcomes[2].notes
    assert not processor.pipeline.stats.resets and outcomes[3].result.paired and outcomes[3].result.metric
