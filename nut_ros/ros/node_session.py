"""Run the node as its own process on a bag over DDS and record what it publishes (used by the demo and tests).

The session gets a private ``ROS_DOMAIN_ID`` and keeps discovery on this host
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``). This process plays the bag (``BagPlayer``) and records the node's
outputs (``TopicRecorder``) into an output bag; the node is stopped with SIGINT and must exit with code 0.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nut_ros.ros import topics
from nut_ros.ros.msg_types import stamp_to_ns
from nut_ros.ros.outputs import STEP_OUTPUTS, VIEW_OUTPUTS
from nut_ros.ros.params import NodeParams, load_params_file

IDLE_TIMEOUT_S = 30.0  # give up when the node reports no progress for this long
READY_TIMEOUT_S = 120.0  # for the node to come up (load the weights, warm up); a compiling node needs more
DELIVERY_TIMEOUT_S = 10.0  # longer than Fast DDS's 3 s heartbeat period, after which lost samples are resent


@dataclass
class SessionResult:
    """What happened in one session."""

    published: int  # input messages published
    images_published: int  # images in the bag (all published)
    recorded: dict[str, int]  # output topic -> messages recorded
    stats: object | None  # the node's last PipelineStats
    exit_code: int | None  # None: the node had to be killed
    wall_s: float  # from the start of playback until the node had handled every image
    log_path: Path
    stats_history: list = field(default_factory=list)  # every PipelineStats received, in order
    notes: list[str] = field(default_factory=list)

    def throughput_fps(self) -> float:
        """Frames processed per second while the node was busy, from its stats (stamped with its wall clock)."""
        history = [(stamp_to_ns(s.header.stamp), s.frames_processed) for s in self.stats_history]
        started = next(((t, n) for t, n in history if n >= 1), None)
        if started is None or self.stats is None:
            return 0.0
        done = next((t, n) for t, n in history if n == self.stats.frames_processed)
        return (done[1] - started[1]) / ((done[0] - started[0]) * 1e-9) if done[0] > started[0] else 0.0


def session_env(domain_id: int) -> dict[str, str]:
    """Environment of a private, host-local DDS session."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return env


def default_domain_id() -> int:
    """A domain id in [101, 200] derived from the process id (distinct for concurrent sessions on one host)."""
    return 101 + os.getpid() % 100


def expected_outputs(params: NodeParams, frames_processed: int) -> dict[tuple[str, ...], int]:
    """Messages the node publishes for ``frames_processed`` frames, per group of output topics: an output and its
    relative twin (``topics.RELATIVE``) share one count, each frame going to one of them."""
    views = len(params.render_times)
    every_frame = VIEW_OUTPUTS + STEP_OUTPUTS + (("obstacles", "obstacle_markers") if params.perception else ())
    groups = {}
    for name in every_frame:
        if getattr(params, f"publish_{topics.switch_of(name)}"):
            groups.setdefault(topics.switch_of(name), []).append(topics.output_topic(name))
    return {tuple(group): frames_processed * (views if name in VIEW_OUTPUTS else 1) for name, group in groups.items()}


def node_command(params_file: str | Path | None, overrides: dict[str, object], remap: dict[str, str]) -> list[str]:
    """Command line starting the node with this interpreter."""
    cmd = [sys.executable, "-m", "nut_ros.ros.node", "--ros-args"]
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for name, value in overrides.items():
        cmd += ["-p", f"{name}:={_param_text(value)}"]
    for src, dst in remap.items():
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    return str(value) or "''"  # rcl reads the value as YAML: an empty string must be quoted


def run_node_on_bag(bag: str | Path, out_bag: str | Path, log_path: str | Path, image_topic: str,
                    params_file: str | Path | None = None, overrides: dict[str, object] | None = None,
                    remap: dict[str, str] | None = None, rate: float = 1.0, domain_id: int | None = None,
                    storage: str = "mcap", ready_timeout_s: float = READY_TIMEOUT_S) -> SessionResult:
    """Start the node, play ``bag`` into it, record its outputs to ``out_bag``, stop it; see ``SessionResult``.

    ``remap`` maps the node's input names (``image_raw``, ``depth``, ``camera_info``) to the bag's topics.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from nut_ros.ros.bag_io import BagWriter
    from nut_ros.ros.player import BagPlayer
    from nut_ros.ros.recorder import TopicRecorder

    node_params = dataclasses.replace(load_params_file(params_file) if params_file else NodeParams(),
                                      **(overrides or {})).validate()
    domain_id = default_domain_id() if domain_id is None else domain_id
    env = session_env(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    outputs = {topics.output_topic(n): t for n, t in topics.output_types(node_params.perception).items()}
    outputs[topics.DIAGNOSTICS] = topics.DIAGNOSTICS_TYPE
    log_path = Path(log_path)
    notes: list[str] = []

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    with open(log_path, "w") as log, BagWriter(out_bag, storage) as writer:
        proc = subprocess.Popen(node_command(params_file, overrides or {}, remap or {}), env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        node = Node("nut_ros_session", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            player = BagPlayer(node, bag)
            recorder = TopicRecorder(node, writer, outputs)
            last_stats: list = []
            node.create_subscription(topics.resolve_type(topics.OUTPUT_TYPES["stats"]), topics.output_topic("stats"),
                                     last_stats.append, 10)
            # Ready: the node subscribes to its inputs, and a stats message arrived (so its publishers, which are
            # announced together, have matched our subscriptions: nothing it publishes from now on is lost).
            inputs = [t for t in player.publishers if t == image_topic or t in (remap or {}).values()]
            if not wait_until(lambda: player.wait_for_subscribers(0.5, inputs) and recorder.matched()
                         and last_stats or proc.poll() is not None, ready_timeout_s) or proc.poll() is not None:
                raise RuntimeError(f"the node did not come up within {ready_timeout_s:.0f} s "
                                   f"(exit code {proc.poll()}); see {log_path}")
            images_in_bag = _count_topic(bag, image_topic)
            started = time.monotonic()
            published = player.play(rate)
            progress = [None, time.monotonic()]  # (the node's counters, when they last changed)

            def settled() -> bool:
                s = last_stats[-1] if last_stats else None
                if s is None:
                    return proc.poll() is not None
                handled = s.frames_processed + s.frames_dropped_queue + s.frames_dropped_invalid
                if (s.frames_received, handled) != progress[0]:
                    progress[:] = [(s.frames_received, handled), time.monotonic()]
                done = s.frames_received >= images_in_bag and handled >= s.frames_received
                return done or time.monotonic() - progress[1] > IDLE_TIMEOUT_S or proc.poll() is not None

            wait_until(settled, 3600.0)
            wall = time.monotonic() - started
            if last_stats:  # reliable delivery may repair a lost sample only at the writer's next heartbeat
                expected = expected_outputs(node_params, last_stats[-1].frames_processed)
                wait_until(lambda: all(sum(recorder.counts[t] for t in group) >= n for group, n in expected.items()),
                           DELIVERY_TIMEOUT_S)
        finally:
            exit_code = _stop(proc, notes)
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
            spinner.join(timeout=5.0)
    return SessionResult(published, images_in_bag, dict(recorder.counts), last_stats[-1] if last_stats else None,
                         exit_code, wall, log_path, last_stats, notes)


def wait_until(condition, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return False


def _stop(proc: subprocess.Popen, notes: list[str]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            notes.append("the node ignored SIGINT for 30 s and was killed")
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def _count_topic(bag: str | Path, topic: str) -> int:
    from rosbags.highlevel import AnyReader

    from nut_ros.ros.msg_types import rosbags_typestore

    with AnyReader([Path(bag)], default_typestore=rosbags_typestore()) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)
