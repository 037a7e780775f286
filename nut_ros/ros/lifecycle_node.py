"""The ``nut_ros`` lifecycle node: camera stream in, dynamic Gaussian map out.

ROS wiring only; the per-frame work is ``processor.FrameProcessor``. Lifecycle (``ros2 lifecycle set /nut_ros``):

* configure: reads and checks the parameters, loads the weights and the backend, builds the pipeline and the
  output publishers; on failure the node stays unconfigured and says why (log, ``/diagnostics``);
* activate: subscribes to the inputs and starts the worker thread, the count of images lost on the way from a fresh
  baseline (those published while inactive were not lost); deactivate: unsubscribes and stops it;
* cleanup: frees the pipeline (model, GPU memory, flow threads), the perception state (tracks, local map, key
  frame) and the publishers.

Every output of ``topics.OUTPUT_TYPES`` has a publisher once configured, the perception outputs
(``topics.PERCEPTION_OUTPUTS``) only with ``perception: true`` (``topics.output_types``; ``perception`` changes
only while unconfigured), the local map's with transient-local durability (``output_qos``).

Callbacks hand each matched frame to the worker through a slot of depth one, so they never block and a burst only
replaces the pending frame (counted as a queue drop). Input subscriptions follow the publishers' reliability
(``transport.choose_reliability``): with ``input_reliability: auto`` an input is subscribed once its first
publisher appears (checked every second) and re-subscribed only when the publishers' reliability changes.
Parameters marked dynamic in ``params`` may change at any time; the worker applies them between frames.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult

from nut_ros.ros import topics
from nut_ros.ros.health import ERROR, WARN, assess, diagnostics_message, stats_message
from nut_ros.ros.input_sync import LatestSlot, Matched
from nut_ros.ros.log_throttle import KindThrottle
from nut_ros.ros.stop_signals import Stop, signal_received, stop_requested
from nut_ros.ros.params import NodeParams, ParamError, coerce_value, declare_and_read
from nut_ros.ros.processor import FrameProcessor, build_pipeline, processor_settings, warm_up
from nut_ros.ros.transport import choose_reliability, loss_advice

THROTTLE_S = 5.0
QUEUE_DROP_THROTTLE_S = 30.0  # dropping to the newest frame is normal operation: remind, do not flood
QOS_CHECK_S = 1.0
MATCH_POLL_S = 0.1  # held images whose wait for their depth ended are handed on this often without a new message
#: what to set when an input topic carries the other kind of image message
TYPE_HINTS = {("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"):
              " (a compressed stream: image_transport compressed or depth_transport compressedDepth)",
              ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"):
              " (a raw stream: image_transport raw or depth_transport raw)"}
MOUNT_CHECK_S = 1.0  # with camera_frame, the mount is looked up in TF again this often (a changed mount clears poses)
SETTING_OF = {"depth_scale": "depth_scale", "frame_id": "frame_id", "max_input_pixels": "max_input_pixels",
              "sync_tolerance": "sync_tolerance_s", "render_times": "render_times",
              "interp_window": "interp_window", "interp_samples": "interp_samples", "interp_blend": "interp_blend",
              "marker_lifetime": "marker_lifetime_s"}


class NutRosNode(LifecycleNode):
    """Subscribes ``image_raw`` (or ``image_raw/compressed``), ``depth`` (or ``depth/compressedDepth``),
    ``camera_info`` and optionally ``odom``; publishes ``~/*`` and ``/diagnostics``."""

    def __init__(self, **kwargs):
        super().__init__(topics.NODE_NAME, **kwargs)
        self.params: NodeParams = declare_and_read(self)  # raises ParamError: the entry point exits 2
        unknown = sorted(set(self._parameter_overrides) - set(self._parameters))
        if unknown:
            self.get_logger().warning(f"unknown parameters ignored: {', '.join(unknown)} (see `ros2 param list "
                                      f"/{topics.NODE_NAME}` for the valid names)")
        self.error: str | None = None  # why the last configure failed
        self.error_is_param = False  # ... because of a parameter
        self.finalized = False  # the shutdown transition has run
        self.processor: FrameProcessor | None = None
        self._configured = False
        self._pubs: dict = {}
        self._subs: dict[str, tuple[object, str]] = {}  # topic -> (subscription, reliability)
        self._wrong_types: list[str] = []  # input topics published as another message type (said in /diagnostics)
        self._input_timers: list = []
        self._slot: LatestSlot[tuple[Matched, float]] = LatestSlot()
        self._stop = threading.Event()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._busy_since: float | None = None
        self._pending: dict = {}
        self._pending_lock = threading.Lock()
        self._info_changes = 0
        self._throttle = KindThrottle(THROTTLE_S)  # the warnings of call sites that log many kinds of problem
        self._unmatched_logged = 0
        self._tf = self._tf_node_listener = None  # tf2_ros Buffer and TransformListener (configured, camera_frame)
        self._mount_checked: float | None = None  # when the mount was last found in TF (monotonic s)
        self._diag_pub = self.create_publisher(topics.resolve_type(topics.DIAGNOSTICS_TYPE), topics.DIAGNOSTICS, 10)
        self._diag_timer = self.create_timer(self.params.diagnostics_period, self._publish_health)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _diagnostics_every(self, period: float) -> None:
        """Publish the health (``/diagnostics``, ``~/stats``) every ``period`` seconds from now on."""
        if self._diag_timer.timer_period_ns != round(period * 1e9):
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(period, self._publish_health)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            self.params = NodeParams.from_dict({n: self.get_parameter(n).value
                                                for n in dataclasses.asdict(self.params)})
            # (rectify: auto reads the image topic's name; replay, without TF, takes camera_mount)
            settings = processor_settings(self.params, topics.input_topic(self, self._image_topic))
            settings = dataclasses.replace(settings, mount_from_tf=bool(self.params.camera_frame))
            self._diagnostics_every(self.params.diagnostics_period)  # (a change while unconfigured applies now)
            if self.params.camera_frame:
                self._tf_listener()
            pipeline, seconds = warm_up(self.params, build_pipeline, log)
            log.info(f"warmed up in {seconds:.1f} s (graph capture, compile, kernel builds)")
        except Exception as err:  # noqa: BLE001 - any failure leaves the node unconfigured, with the reason
            if stop_requested():  # a stop signal interrupted configuring: stop, this is no failure to report
                raise Stop(signal_received()) from err
            self.error_is_param = isinstance(err, ParamError)
            self.error = str(err) if self.error_is_param else f"{type(err).__name__}: {err}"
            log.error(f"configure failed, the node stays unconfigured: {self.error}")
            self._drop_tf()  # (the listener made before the pipeline failed: the next configure makes its own)
            return TransitionCallbackReturn.FAILURE
        self.error = None
        self.processor = FrameProcessor(pipeline, settings, serialized_gaussians=True)
        flow = pipeline.flow_prior
        if flow is not None and flow.preset != pipeline.config.flow_preset:
            log.warning(f"flow_preset {pipeline.config.flow_preset} needs OpenCV's contrib modules "
                        f"(opencv-contrib-python-headless); the motion prior uses {pipeline.flow_settings}")
        self._pubs = {name: self.create_lifecycle_publisher(topics.resolve_type(kind), f"~/{name}", output_qos(name))
                      for name, kind in topics.output_types(self.params.perception).items()}
        self._configured = True
        p = self.params
        log.info(f"configured: backend {p.backend}, model {p.model} on {p.device}")
        if p.perception and not p.use_odometry:
            keyframe = repr(p.keyframe_frame) if p.keyframe_frame else "'<image frame_id>_keyframe'"
            log.info(f"perception without odometry: the local map is in {keyframe} (the stream's first camera "
                     f"frame), which no transform connects to the camera frame: view ~/map_points (or "
                     f"~/relative/map_points) with RViz's fixed frame {keyframe}, the obstacles with the camera "
                     f"frame")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        self.processor.losses.restart()  # the images published while inactive were not lost
        self._update_subscriptions()
        self._input_timers = [self.create_timer(QOS_CHECK_S, self._update_subscriptions),
                              self.create_timer(MATCH_POLL_S, lambda: self._hand_off(self.processor.poll()))]
        self._stop.clear()
        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="nut_ros_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"active: listening on {topics.input_topic(self, self._image_topic)} (depth: {p.depth_source}"
            f"{', odometry: ' + self.resolve_topic_name(topics.ODOMETRY) if p.use_odometry else ''}; images of a "
            f"distorting lens {'' if self.processor.settings.rectify else 'not '}rectified); publishing "
            f"{', '.join(sorted(n for n in self._pubs if n == 'stats' or n in self.processor.settings.outputs))}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.finalized = True  # nut_ros_node then ends the process (a finalized node can never configure again)
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for timer in self._input_timers:
            self.destroy_timer(timer)
        self._input_timers = []
        for sub, _ in self._subs.values():
            self.destroy_subscription(sub)
        self._subs = {}
        self._wrong_types = []
        self._stop.set()
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None

    def _release(self) -> None:
        """Drop the pipeline (model, backend, flow threads), the publishers and the TF listener; free cached GPU
        memory."""
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        device = self.params.device
        self.processor = None
        self._configured = False
        self._drop_tf()
        self._unmatched_logged = 0  # (counted by the processor just dropped)
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def close(self) -> None:
        """Stop the worker and release everything (idempotent; used at process exit)."""
        self._stopping = True
        self._stop_inputs()
        self._release()

    @property
    def _image_topic(self) -> str:
        return topics.COMPRESSED_IMAGE if self.params.image_transport == "compressed" else topics.IMAGE

    def _inputs(self) -> dict[str, object]:
        """Input topic -> callback for the current parameters."""
        p = self.params
        inputs = {self._image_topic: self._on_image, topics.CAMERA_INFO: self._on_info}
        if p.depth_source != "none":
            inputs[topics.COMPRESSED_DEPTH if p.depth_transport == "compressedDepth" else topics.DEPTH] = \
                self._on_depth
        if p.use_odometry:
            inputs[topics.ODOMETRY] = self._on_odometry
        return inputs

    def _update_subscriptions(self) -> None:
        """(Re)create each input subscription whose reliability should change for the publishers now present; warn
        of publishers of another message type (a compressed stream on a raw topic, say), which the node never
        hears."""
        wrong = []
        for topic, callback in self._inputs().items():
            name, expected = topics.input_topic(self, topic), topics.INPUT_TYPES[topic]
            publishers = self.get_publishers_info_by_topic(name)
            others = sorted({i.topic_type for i in publishers} - {expected})
            if others:
                wrong.append(f"{name} is published as {', '.join(others)}, not {expected}, which the node subscribes"
                             + TYPE_HINTS.get((expected, others[0]), ""))
            offered = [("reliable" if i.qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort")
                       for i in publishers if i.topic_type == expected]
            current = self._subs.get(topic)
            if self.params.input_reliability == "auto" and not offered:
                continue  # nobody publishes yet: subscribe once a publisher shows its QoS (no re-subscription)
            reliability = choose_reliability(self.params.input_reliability, offered)
            if current is not None and current[1] == reliability:
                continue
            if current is not None:
                self.destroy_subscription(current[0])
                self.get_logger().info(f"{topic}: publishers offer {', '.join(sorted(set(offered)))}; "
                                       f"subscribing {reliability}")
            qos = QoSProfile(depth=self.params.input_qos_depth, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                             else ReliabilityPolicy.BEST_EFFORT)
            self._subs[topic] = (self.create_subscription(topics.resolve_type(expected), name, callback, qos),
                                 reliability)
        self._wrong_types = wrong
        for text in wrong:
            self._warn(text)

    # -- parameters --------------------------------------------------------------------------------------------------
    def _on_set_parameters(self, changed) -> SetParametersResult:
        fields = {f.name: f for f in dataclasses.fields(NodeParams)}
        values = {}
        for param in changed:
            f = fields.get(param.name)
            if f is None:
                continue  # use_sim_time and other rclpy parameters
            if self._configured and not f.metadata["dynamic"]:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} changes only while the node is unconfigured: ros2 lifecycle set "
                    f"{self.get_fully_qualified_name()} deactivate, then cleanup; set it; then configure and "
                    f"activate"))
            default = getattr(self.params, f.name)
            try:
                values[f.name] = coerce_value(f.name, param.value, default)
            except ParamError as err:
                return SetParametersResult(successful=False, reason=str(err))
        base = self.params
        if not self._configured:  # checked against the values set since the last configure, not those it read
            try:
                base = dataclasses.replace(self.params, **{
                    n: coerce_value(n, self.get_parameter(n).value, v) for n, v in dataclasses.asdict(base).items()})
            except ParamError:
                pass  # an earlier value the next configure refuses: this change is checked against the last read
        try:
            dataclasses.replace(base, **values).validate()
        except ParamError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if self._configured:
            self.params = dataclasses.replace(self.params, **values)
            with self._pending_lock:
                self._pending.update(values)
            if "diagnostics_period" in values:
                self._diagnostics_every(values["diagnostics_period"])
        return SetParametersResult(successful=True)

    def _apply_pending(self) -> None:
        """Apply dynamic parameter changes to the processor (worker thread, between frames)."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending or self.processor is None:
            return
        changes = {SETTING_OF[k]: (tuple(v) if k == "render_times" else v) for k, v in pending.items()
                   if k in SETTING_OF}
        if any(k.startswith("publish_") for k in pending):
            changes["outputs"] = processor_settings(self.params).outputs
        if changes:
            self.processor.update(**changes)

    # -- callbacks (executor thread) -------------------------------------------------------------------------------
    def _on_image(self, msg, info) -> None:
        processor = self.processor
        if processor is None:
            return
        seq = info.get("publication_sequence_number") if info else None
        publisher = str(info.get("publisher_gid")) if info else None
        lost_before = processor.losses.lost
        matched = processor.add_image(msg, seq, publisher)
        if processor.losses.lost > lost_before:
            reliability = self._subs.get(self._image_topic, (None, "best_effort"))[1]
            self.get_logger().warning(f"{processor.losses.lost} input images lost so far before reaching the node; "
                                      f"fix: {loss_advice(reliability, self.params.input_reliability)}",
                                      throttle_duration_sec=THROTTLE_S)
        self._hand_off(matched)

    def _on_depth(self, msg) -> None:
        if self.processor is not None:
            self._hand_off(self.processor.add_depth(msg))

    def _on_info(self, msg) -> None:
        if self.processor is not None:
            self._hand_off(self.processor.add_info(msg))

    def _on_odometry(self, msg) -> None:
        processor = self.processor
        if processor is None:
            return
        if self._tf is not None and processor.odometry_source in (None, (msg.header.frame_id, msg.child_frame_id)):
            self._mount_from_tf(msg.child_frame_id)  # (the source's own mount, not another source's)
        problem = processor.add_odometry(msg)
        if problem:
            self._warn(problem)

    def _hand_off(self, matched: Matched | None) -> None:
        processor = self.processor
        if processor.matcher.unmatched > self._unmatched_logged:
            self._unmatched_logged = processor.matcher.unmatched
            self.get_logger().warning(f"{processor.matcher.unmatched} images dropped so far while waiting for "
                                      f"their depth image or a first CameraInfo (sync_tolerance "
                                      f"{self.params.sync_tolerance} s)", throttle_duration_sec=THROTTLE_S)
        if matched is not None and self._slot.put((matched, time.perf_counter())):
            processor.health.count(dropped_queue=1)
            self.get_logger().warning(f"{processor.health.dropped_queue} frames dropped so far because the node was "
                                      f"still busy with the previous one (processing is slower than the camera; "
                                      f"expected, the newest frame is always taken)",
                                      throttle_duration_sec=QUEUE_DROP_THROTTLE_S)

    # -- TF (optional) ---------------------------------------------------------------------------------------------
    def _tf_listener(self) -> None:
        try:
            import tf2_ros
        except ImportError:
            raise RuntimeError(f"camera_frame={self.params.camera_frame!r} needs tf2_ros, which is not installed "
                               f"(not on PyPI): give the mount as camera_mount instead") from None
        self._tf = tf2_ros.Buffer()
        self._tf_node_listener = tf2_ros.TransformListener(self._tf, self)

    def _drop_tf(self) -> None:
        """Unregister the TF listener (its subscriptions go) and forget the mount check: the next configure looks the
        mount up again."""
        if self._tf_node_listener is not None:
            self._tf_node_listener.unregister()
        self._tf = self._tf_node_listener = None
        self._mount_checked = None

    def _mount_from_tf(self, child_frame: str) -> None:
        """Look the mount up in TF while it is not known, and every ``MOUNT_CHECK_S`` once it is; a changed mount
        replaces the old one and clears the poses (no pose pair spans two mounts)."""
        from rclpy.time import Time

        from nut_ros.ros.odometry import pose_matrix

        poses, now = self.processor.poses, time.monotonic()
        if poses.mount is not None and self._mount_checked is not None and now - self._mount_checked < MOUNT_CHECK_S:
            return
        try:
            t = self._tf.lookup_transform(child_frame, self.params.camera_frame, Time())
        except Exception as err:  # noqa: BLE001 - tf2 raises several lookup exceptions; retried next message
            if poses.mount is None:
                self.get_logger().warning(f"camera mount not in TF yet ({child_frame} -> {self.params.camera_frame}):"
                                          f" {err}; odometry is ignored and frames get no pose until it is",
                                          throttle_duration_sec=THROTTLE_S)
            return  # (a mount already known stays in use)
        self._mount_checked = now
        tr, q = t.transform.translation, t.transform.rotation
        mount = pose_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
        if poses.set_mount(mount):
            self.get_logger().warning(f"camera mount in TF changed ({child_frame} -> {self.params.camera_frame}): "
                                      f"poses cleared, frames without a pose until new odometry arrives")

    # -- worker thread -----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        if self.params.worker_nice:  # below the DDS and executor threads (and the torch threads it starts; Linux)
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.params.worker_nice)
            except (AttributeError, OSError) as err:
                self.get_logger().warning(f"worker_nice {self.params.worker_nice} not applied: {err}")
        while not self._stop.is_set():
            self._apply_pending()
            item = self._slot.get(timeout=0.2)
            if item is None or self._stop.is_set():
                continue
            started = self._busy_since = time.perf_counter()
            try:
                self.processor.await_pose(item[0].stamp_ns)
                self._process(*item)
            except Exception as err:  # noqa: BLE001 - one bad frame must not kill the worker
                self.processor.health.count(dropped_invalid=1)
                message = f"frame failed: {type(err).__name__}: {err}"
                if not self._stopping and self._throttle.ready(message):
                    self.get_logger().error(message)
            self._busy_since = None
            rate = self.params.max_rate
            if rate > 0:
                self._stop.wait(max(0.0, 1.0 / rate - (time.perf_counter() - started)))

    def _warn(self, message: str) -> None:
        """A warning of a call site that logs many kinds of problem, throttled per kind (:mod:`.log_throttle`)."""
        if self._throttle.ready(message):
            self.get_logger().warning(message)

    def _process(self, matched: Matched, arrived: float) -> None:
        log = self.get_logger()
        processor = self.processor
        outcome = processor.process(matched, arrived=arrived)
        for note in outcome.notes:
            self._warn(note)
        if outcome.frame is not None:
            if outcome.frame.intrinsics is None:
                topic = self.resolve_topic_name(topics.CAMERA_INFO)
                if matched.info is None:
                    log.warning(f"no CameraInfo on {topic}: assuming a default field of view (remap camera_info to "
                                "the camera's)", throttle_duration_sec=30.0)
                else:
                    log.warning(f"invalid CameraInfo on {topic}, and no valid one yet for this image size: assuming "
                                "a default field of view (calibrate the camera)", throttle_duration_sec=30.0)
            changed = processor.note_intrinsics(outcome.frame.intrinsics)
            if changed:
                self._info_changes += 1
                log.info(f"{changed} ({self._info_changes} changes so far)", throttle_duration_sec=THROTTLE_S)
        if outcome.drop is not None:
            self._warn(f"frame dropped: {outcome.drop}")
            return
        for name, _, msg in outcome.messages:
            if self._stopping:
                return
            self._pubs[name].publish(msg)

    # -- health (executor thread) ----------------------------------------------------------------------------------
    def _publish_health(self) -> None:
        p = self.params
        stamp = self.get_clock().now().nanoseconds
        # the fully qualified name: /diagnostics is one topic for every camera's node (/front/nut_ros, /rear/nut_ros)
        name, hardware = f"{self.get_fully_qualified_name()}: pipeline", f"{p.backend}/{p.device}"
        processor = self.processor
        if processor is None:
            from nut_ros.ros.health import NodeHealth

            health = NodeHealth()
            last, now = health.period()
            stats = stats_message(health, last, now, {"backend": p.backend, "model": p.model, "depth_source": "none",
                                                      "metric": False}, 0, stamp)
            level, message = (ERROR, f"unconfigured: configure failed: {self.error}") if self.error else \
                (WARN, "unconfigured")
            self._diag_pub.publish(diagnostics_message(stats, level, message, name, hardware, stamp))
            return
        last, now = processor.health.period()
        info = {"backend": p.backend, "model": p.model, "depth_source": processor.depth_source,
                "metric": processor.metric}
        stats = stats_message(processor.health, last, now, info, processor.pipeline.live_gaussians, stamp)
        if "stats" in self._pubs:
            self._pubs["stats"].publish(stats)
        busy_since = self._busy_since
        if self._worker is None:
            level, message = WARN, "inactive (configured)"
        else:
            level, message = assess(last, now, None, None if busy_since is None else time.perf_counter() - busy_since)
        if self._wrong_types:
            level, message = max(level, WARN), "; ".join([*self._wrong_types, message])
        self._diag_pub.publish(diagnostics_message(stats, level, message, name, hardware, stamp,
                                                   extra=processor.diagnostic_values()))


def output_qos(name: str) -> QoSProfile:
    """Reliable, keep last 5, volatile; the local map (``topics.MAP_OUTPUTS``): keep last 1, transient local, so a
    subscriber that joins late (RViz) gets the last map at once instead of waiting up to ``map_period``."""
    if name in topics.MAP_OUTPUTS:
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
