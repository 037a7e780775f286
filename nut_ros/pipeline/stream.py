"""The ROS-free streaming pipeline: frames in, a live dynamic Gaussian map and its renders out.

Each pushed frame is resized to the model resolution, its depth (if any) normalised causally per frame, and it is
encoded exactly once. The cached handle of the previous frame pairs with the new one: the decoder predicts motion
and temporal opacity for both, and the live map G(t) is the pair's ``2N`` Gaussians (the older pair is dropped), so
memory is bounded for streams of any length (STREAMSPLAT_SPEC §6.2). The map renders at the newest frame (pair
time 1), between the two frames (0 < t < 1) or ahead of the newest (t > 1, extrapolated from the velocities). The
first frame of a stream renders its static Gaussians. The pair's velocities carry the optical flow between the
two frames: the model's learned flow head, or classical flow on the CPU (:mod:`nut_ros.core.motion_prior`), as
``PipelineConfig.motion_prior`` says; ``auto`` is the learned head wherever the network runs on a GPU or in an
exported graph, classical flow on a CPU torch backend (the head measures better but costs more there).

Depth input (``StepResult.depth_source``): a frame's depth image ("topic", metric); else, with
``PipelineConfig.depth_from_motion = "auto"``, depth from the camera's own motion
(:mod:`nut_ros.geometry.depth_from_motion`, dense fill) through the same two channels: "odometry" (metric) when the
frames carry ``camera_pose``, "motion" (relative, unit = the frame's median depth) when they do not; "none" when
motion gives no depth (first frame, a camera that has not moved) and the network sees RGB alone; so does a frame
whose depth image has under ``min_valid_depth_fraction`` valid pixels (a blinded or covered sensor, a scene beyond
its range) when the stream has no depth frame to keep: within a stream with depth such a frame is dropped (a short
blink), and one longer than ``max_gap_s`` ends the stream, whose new one goes on RGB only
(``stats.depth_unusable`` counts those frames); the rendered depth of such a frame is then NaN (its network-only
guess measures worse than a constant depth on real footage, docs/EVALUATION.md), unless
``PipelineConfig.network_depth``. Likewise where a depth image has no valid depth (its holes: no return, out
of range, NaN): the network invents a depth there (as far as the farthest valid one, the input's "unknown"), so
the view at the newest frame has NaN depth on those pixels, views at other pair times take their depth from the
Gaussians on measured depth alone (a second render with the others transparent; NaN where those do not cover the
pixel), and the cloud leaves out the Gaussians of the pair's frames whose cell of the Gaussian grid is mostly hole
(unless ``network_depth``). A pair whose frames both have a
depth input shares one depth frame (:mod:`nut_ros.pipeline.optical`), metric when both are.

Stamps: a duplicate stamp, or one going backwards by up to ``max_gap_s``, drops the frame (counted by reason); a
backwards jump or forward gap larger than ``max_gap_s`` — a looping bag, a stalled camera — starts a new stream
with that frame, as does the ``BACKWARDS_RUN``-th frame in a row stamped before the last one (that one's stamp was
the glitch). So do a change of input size or of the depth image's presence (its absence switches to depth
from motion).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.geometry import DepthNormalization, Intrinsics, rendered_depth_to_depth, resize_nearest
from nut_ros.core.choices import DEPTH_FROM_MOTION, INTERP_BLENDS, MOTION_PRIORS
from nut_ros.core.motion_prior import FlowPrior, grey_u8, sparse_to_dense_available, with_prior
from nut_ros.geometry.depth_from_motion import DepthFromMotion, MotionDepthConfig
from nut_ros.pipeline.backends import Backend
from nut_ros.pipeline.depth import model_depth_input, normalize_inverse_depth, resize_depth, valid_depth
from nut_ros.pipeline.optical import queue_optical_cloud, rebase_inverse_depth, shared_normalization
from nut_ros.pipeline.stats import StreamStats
from nut_ros.pipeline.transfer import Upload, to_host, to_host_async, wait_for_copies
from nut_ros.pipeline.types import Frame, PipelineConfig, RenderedView, StepResult
from nut_ros.render import RenderOutput
from nut_ros.render.rasterizer import background_vector

#: StreamingPipeline.warm_up: a stream start, the frame whose depth from motion starts the map again, two pairs
WARM_UP_FRAMES = 4
MIN_INTERVAL_S = 1e-3  # a frame closer than this to the previous one, either way, is a duplicate (re-stamping driver)
#: frames in a row stamped before the stream's last one: that one's stamp was the odd one (a driver's glitch), so the
#: stream starts again instead of dropping frames until the stamps catch up with it (up to max_gap_s)
BACKWARDS_RUN = 3


log = logging.getLogger(__name__)


@dataclass
class _Encoded:
    """A frame as the pipeline keeps it: backend handle plus what pairing and metric conversion need."""

    handle: object
    stamp_ns: int
    norm: DepthNormalization | None  # of a frame with a depth input (metric, or relative from motion), else None
    signature: tuple[int, int, bool]  # input (H, W, has depth): a change starts a new stream
    grey: np.ndarray | None  # model-resolution grey image for the motion prior (None without one)
    on_depth: torch.Tensor | None  # [N] bool: its Gaussians whose grid cell is mostly valid input depth (None: all)


@dataclass
class _LiveMap:
    """The current Gaussian map G(t): the pair's Gaussians in the shared depth frame."""

    gaussians: Gaussians
    norm: DepthNormalization  # of every Gaussian's slot ŷ: the pair's shared metric frame, or relative
    t0_stamp_ns: int  # stamp of pair time 0
    interval_ns: int  # stamp difference between pair times 0 and 1 (0 for a first frame)
    geometry: bool  # the newest frame had a depth input (else its depth is the network's guess from RGB alone)
    depth_valid: torch.Tensor | None = None  # [h, w] bool: the newest frame's input depth is valid (None: all)
    on_depth: torch.Tensor | None = None  # [N] bool: Gaussians whose grid cell is mostly valid input depth (None: all)
    _measured: Gaussians | None = None  # the Gaussians with those off the input depth made transparent (made once)

    def measured(self) -> Gaussians:
        """The live Gaussians with those whose cell is mostly depth-image hole transparent: what a view off the
        newest frame renders its depth from (their depth is the network's invention)."""
        if self._measured is None:
            keep = self.on_depth.to(self.gaussians.opacity.dtype)[None, :, None]
            self._measured = dataclasses.replace(self.gaussians, opacity=self.gaussians.opacity * keep)
        return self._measured


class StreamingPipeline:
    """Push :class:`Frame` objects one at a time; each processed frame gives a :class:`StepResult`."""

    def __init__(self, backend: Backend, config: PipelineConfig = PipelineConfig()):
        self.backend = backend
        self.config = config
        self.height, self.width = backend.model_config.image_size
        self.depth_channels = backend.model_config.depth_channels
        self.fill_validity = backend.model_config.fill_validity
        # where the model inputs are prepared: the torch backend's device (on a GPU host small CPU tensor operations
        # pay the thread pool's wake-up each; on the GPU they are queued), the host for exported backends
        self._prep_device = torch.device(backend.device if backend.name == "torch" else "cpu")
        # one kept buffer per input: the frame, the depth topic's image (input size), depth from motion and its
        # measured pixels (model size)
        self._upload_rgb, self._upload_depth, self._upload_motion, self._upload_known = (
            Upload(self._prep_device) for _ in range(4))
        if config.opencv_threads < 0:
            raise ValueError(f"opencv_threads must be >= 0 (0: auto), not {config.opencv_threads}")
        if config.opencv_threads or not _on_cpu(backend):
            cv2.setNumThreads(config.opencv_threads or 1)
        self.stats = StreamStats()
        self._prev: _Encoded | None = None
        self._live: _LiveMap | None = None
        self._backwards = 0  # frames dropped in a row as stamped before the last one (BACKWARDS_RUN)
        prior = config.motion_prior if config.motion_prior != "auto" else backend.model_config.motion_prior
        if prior not in MOTION_PRIORS:
            raise ValueError(f"unknown motion prior {prior!r}; choose from auto, {', '.join(MOTION_PRIORS)}")
        if prior == "learned" and backend.model_config.motion_prior != "learned":
            raise ValueError(f"motion prior 'learned' needs a model with the learned motion head; this one was "
                             f"trained with {backend.model_config.motion_prior!r}")
        if backend.model_config.motion_prior == "learned":
            if config.motion_prior == "auto" and _on_cpu(backend):
                # the learned head measures better than classical flow (docs/EVALUATION.md, learned motion) but
                # makes a tiny frame 2x slower on a CPU (docs/BENCHMARKS.md); exported graphs keep it inside
                try:
                    backend.use_learned_motion(False)
                    prior = "flow"
                except ValueError:
                    prior = "learned"
            else:
                backend.use_learned_motion(prior == "learned")  # "flow" or "none" replace the learned flow
        self.motion_prior = prior
        self._flow = self._flow_pool = None
        if prior == "flow":  # one worker: the flow of a pair runs while the backend encodes and decodes
            preset, check = config.flow_preset, config.flow_check  # (check: unchanged by the fallback)
            if preset == "sparse_to_dense" and not sparse_to_dense_available():
                preset = "medium"
                log.warning("OpenCV has no contrib modules (pip: opencv-contrib-python-headless): the motion "
                            "prior uses DIS medium instead of sparse_to_dense")
            self._flow = FlowPrior((self.height, self.width), backend.model_config.gaussian_grid, preset,
                                   config.flow_max_width, check)
            self._flow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nut_ros_flow")
        if config.interp_blend not in INTERP_BLENDS:
            raise ValueError(f"unknown interp_blend {config.interp_blend!r}; choose from {', '.join(INTERP_BLENDS)}")
        if config.depth_from_motion not in DEPTH_FROM_MOTION:
            raise ValueError(f"unknown depth_from_motion {config.depth_from_motion!r}; choose from "
                             f"{', '.join(DEPTH_FROM_MOTION)}")
        self._motion_depth = None
        if config.depth_from_motion == "auto":
            self._motion_depth = DepthFromMotion(MotionDepthConfig(max_width=config.motion_depth_width))

    # -- public API ------------------------------------------------------------------------------------------
    def warm_up(self, frames: int = WARM_UP_FRAMES) -> float:
        """Push ``frames`` synthetic frames (a textured image drifting sideways, RGB only, at the model's size) as a
        stream of their own, so that one-time work (CUDA graph capture, ``compile``, the rasterizers' builds,
        lazy initialisation) happens now rather than on a camera's first frames; then forget them (the next frame
        starts a stream; counters as before). Returns the seconds it took."""
        start, stats = time.perf_counter(), self.stats
        self.stats = StreamStats(stats.window)
        self.reset()
        texture = np.random.default_rng(0).integers(0, 256, (self.height, self.width + frames * 4, 3), np.uint8)
        texture = cv2.GaussianBlur(texture, (0, 0), 2.0)
        try:
            for k in range(frames):
                self.push(Frame(np.ascontiguousarray(texture[:, 4 * k:4 * k + self.width]), (k + 1) * 33_000_000))
        finally:
            self.reset()
            self.stats = stats
        return time.perf_counter() - start

    def reset(self) -> None:
        """Forget the stream (the next frame starts a new one); counters are kept."""
        self._prev, self._live, self._backwards = None, None, 0
        if self._motion_depth is not None:
            self._motion_depth.reset()

    def push(self, frame: Frame) -> StepResult | None:
        """Process one frame; ``None`` when it was dropped (see ``stats.drops``)."""
        self.stats.frames_in += 1
        _check_frame(frame)
        intrinsics = self._model_intrinsics(frame)
        lat: dict[str, float] = {}
        start = tick = time.perf_counter()

        # a new size, depth image or camera (zoom, calibration, a first CameraInfo) starts a new stream: a pair's
        # older frame must have been seen through the same camera
        signature = (*frame.rgb.shape[:2], frame.depth_m is not None,
                     *(round(v, 6) for v in (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)))
        drop = self._check_stamp(frame.stamp_ns, signature)
        if drop:
            self.stats.drops[drop] += 1
            return None
        rgb, disp, norm, device_depth, source, motion, valid = self._preprocess(frame, intrinsics)
        depth_in = None if device_depth is None else to_host(device_depth)
        if motion is not None and motion.focal_scale != 1.0:  # the focal length fitted against the odometry
            s = motion.focal_scale  # (nut_ros.geometry.focal): the metric depth holds with it, so the geometry does
            intrinsics = dataclasses.replace(intrinsics, fx=intrinsics.fx * s, fy=intrinsics.fy * s)
        if disp is None:  # a depth image with too few valid pixels
            if self._prev is not None and self._prev.norm is not None:
                # a stream with depth keeps its depth frame: a short blink of the sensor is dropped; one longer than
                # max_gap_s ends the stream (gap), and its frames then go on RGB only
                self.stats.drops["depth_invalid"] += 1
                return None
            self.stats.depth_unusable += 1
            disp = self._no_depth_input()
        tick = self._lap(lat, "preprocess", tick)

        prev = self._prev
        if prev is not None and norm is not None and (prev.norm is None or prev.norm.metric != norm.metric):
            # depth begins (or returns) on this frame, or changes units (depth from motion is metric with odometry,
            # relative on a frame without a pose): its Gaussians alone start the live map, so that the map is in one
            # depth frame (a pair with one normalised and one unnormalised frame has none, metres and relative units
            # do not mix)
            prev = None
        grey = grey_u8(rgb[0]) if self._flow is not None else None
        flow = self._flow_pool.submit(self._flow.pair, prev.grey, grey) if prev and self._flow else None
        handle = self.backend.encode(rgb, disp)
        tick = self._lap(lat, "encode", tick)
        holes = valid is not None and not self.config.network_depth  # (a mask without holes keeps every pixel)
        cur = _Encoded(handle, frame.stamp_ns, norm, signature, grey, self._on_depth(valid) if holes else None)
        # the pair shares one depth frame when both frames have a depth normalisation (a frame whose predecessor has
        # none starts the map above; depth from motion can fail on one frame of a stream); metric when both are
        shared = norm is not None
        if prev is None:
            g = self.backend.static(handle)
            norms = [norm] if shared else []
            t0_stamp, interval = frame.stamp_ns, 0
        else:
            g = self.backend.decode(prev.handle, handle)
            if flow is not None:
                tick = self._lap(lat, "decode", tick)
                g = with_prior(g, flow.result()[None])
                tick = self._lap(lat, "flow", tick)  # the part of the flow not hidden behind encode + decode
            norms = [prev.norm, norm] if shared else []
            t0_stamp, interval = prev.stamp_ns, frame.stamp_ns - prev.stamp_ns
        live_norm = DepthNormalization.relative()
        if shared:
            live_norm = shared_normalization(norms)
            g = rebase_inverse_depth(g, norms, live_norm)
        tick = self._lap(lat, "decode", tick)

        self._prev = cur
        frames = (prev, cur) if prev is not None else (cur,)  # the live map's Gaussians: N per frame, in this order
        on_depth = None
        if any(e.on_depth is not None for e in frames):
            every = torch.ones(g.count // len(frames), dtype=torch.bool, device=g.xyz.device)
            on_depth = torch.cat([every if e.on_depth is None else e.on_depth for e in frames])
        self._live = _LiveMap(g, live_norm, t0_stamp, interval, geometry=source != "none",
                              depth_valid=valid[0, 0] if holes else None, on_depth=on_depth)
        # on a GPU everything is queued first (the cloud's copy runs beside the render), then waited for once
        interval_s = interval * 1e-9 if interval else None
        cloud = queue_optical_cloud(g, 1.0, intrinsics, live_norm, interval_s, self.config.cloud_min_opacity,
                                    on_depth)
        tick = self._lap(lat, "postprocess", tick)
        times = self.config.render_times if prev is not None or not self.config.render_times else (1.0,)
        queued = self._queue_views(times)
        tick = self._lap(lat, "render", tick)
        views = self._finish_views(queued, times)
        cloud, device_cloud = cloud.result(), cloud.device_table()
        self._lap(lat, "postprocess", tick)
        lat["total"] = (time.perf_counter() - start) * 1e3
        self.stats.frames_processed += 1
        self.stats.record(lat)
        return StepResult(frame.stamp_ns, frame.frame_id, live_norm.metric, source, views, cloud, intrinsics, lat,
                          paired=prev is not None, pair_interval_s=interval_s, input_depth=depth_in,
                          motion_depth=motion, device_cloud=device_cloud, device_depth=device_depth,
                          motion_prior=self.motion_prior)

    def render(self, pair_times) -> list[RenderedView]:
        """Render the live map at the given pair times (0 = previous frame, 1 = newest, > 1 = prediction).

        Colour and depth are both expectations over the Gaussians covering a pixel (normalised by the accumulated
        opacity, :meth:`~nut_ros.render.RenderOutput.color_normalized`); depth is NaN and the colour the background
        where that opacity is low, and depth is NaN everywhere when the newest frame had no depth input (unless
        ``PipelineConfig.network_depth``). Between the pair's frames both frames' Gaussians are rendered at once, or,
        with ``PipelineConfig.interp_blend = "per_frame"``, each alone and blended (:func:`per_frame_blend`); the
        colour can also be averaged over a time window (:func:`window_times`); depth and alpha are those at ``t``."""
        if self._live is None:
            raise RuntimeError("nothing to render: no frame has been processed since the last reset")
        return self._finish_views(self._queue_views(pair_times), pair_times)

    def _finish_views(self, queued: list[tuple[int, float, np.ndarray]], pair_times) -> list[RenderedView]:
        """The views of :meth:`_queue_views` once their copies are done; rendered again when the CUDA rasterizer's
        sort buffer was too small for one of them (its budget has grown, so the second renders are complete)."""
        wait_for_copies()
        overflowed = getattr(self.backend, "render_overflowed", None)
        if overflowed is not None and overflowed():
            self.stats.rerenders += 1
            queued = self._queue_views(pair_times)
            wait_for_copies()
        return [RenderedView(stamp, t, host[..., 2:].astype(np.uint8), host[..., 0].copy(), host[..., 1].copy())
                for stamp, t, host in queued]

    def _queue_views(self, pair_times) -> list[tuple[int, float, np.ndarray]]:
        """Per pair time: the view's stamp, time and its host array (depth, alpha, RGB), copied without waiting."""
        live = self._live
        views = []
        for t in pair_times:
            color, depth, alpha = self._view(float(t))
            shown_alpha = alpha
            if live.depth_valid is not None and t != 1.0 and live.on_depth is not None:
                # a depth image with holes, another time than the newest frame's: the depth of the Gaussians on
                # measured depth alone (those on holes carry an invented depth), shown where they cover the pixel
                _, depth, shown_alpha = self._view(float(t), live.measured())
            depth = rendered_depth_to_depth(depth, live.norm)
            shown = shown_alpha >= self.config.depth_min_alpha
            if not (live.geometry or self.config.network_depth):
                shown = torch.zeros_like(shown)
            elif live.depth_valid is not None and t == 1.0:  # the depth image's holes: the newest frame's own view
                shown = shown & live.depth_valid
            depth = torch.where(shown, depth, torch.full_like(depth, float("nan")))
            window = window_times(float(t), self.config.interp_window, self.config.interp_samples)
            colors = {s: color if s == t else self._view(s)[0] for s in set(window)}  # clamped times can repeat
            color = sum(colors[s] for s in window) / len(window)
            rgb = (color.clamp(0, 1) * 255 + 0.5).floor().permute(1, 2, 0)
            # one device-to-host copy per view: colour (whole numbers, exact in float32), depth and alpha together
            host = to_host_async(torch.cat([depth[..., None], alpha[..., None], rgb], dim=-1))
            stamp = live.t0_stamp_ns + round(float(t) * live.interval_ns) if live.interval_ns else live.t0_stamp_ns
            views.append((stamp, float(t), host))
        return views

    def _view(self, t: float, gaussians: Gaussians | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised colour ``[3,H,W]``, normalised canonical depth ``[H,W]`` and alpha ``[H,W]`` at pair time
        ``t``: one render of the live map (or of ``gaussians``, the live map's with other opacities), or
        :func:`per_frame_blend` between a pair's frames."""
        live, background = self._live, self.config.background
        gaussians = live.gaussians if gaussians is None else gaussians
        if self.config.interp_blend == "per_frame" and live.interval_ns and 0 < t < 1:
            out = per_frame_blend(self.backend, gaussians, t, background)
        else:
            out = self.backend.render(gaussians, t, background)
        return (out.color_normalized(background)[0].float(), out.depth_normalized()[0, 0].float(),
                out.alpha[0, 0].float())

    def pair_time(self, stamp_ns: int) -> float:
        """The pair time of ``stamp_ns`` in the live map (for rendering frames between or after the pair)."""
        if self._live is None or not self._live.interval_ns:
            raise RuntimeError("no live pair to place a stamp in")
        return (stamp_ns - self._live.t0_stamp_ns) / self._live.interval_ns

    @property
    def flow_prior(self) -> FlowPrior | None:
        """The motion prior's flow as it runs (after any fallback), None without a prior."""
        return self._flow

    @property
    def flow_settings(self) -> str:
        """:attr:`flow_prior` in words, e.g. ``"medium, 256 px, no check"``."""
        if self._flow is None:
            return "none"
        width = self.width // self._flow.factor
        return f"{self._flow.preset}, {width} px, {'check' if self._flow.check else 'no check'}"

    @property
    def live_gaussians(self) -> int:
        """Number of Gaussians in the live map (0 before the first frame)."""
        return 0 if self._live is None else self._live.gaussians.count

    # -- steps -----------------------------------------------------------------------------------------------
    def _check_stamp(self, stamp_ns: int, signature: tuple) -> str | None:
        """Drop reason for this stamp, or None; resets the stream on large jumps and input changes."""
        if self._prev is None:
            return None
        dt = (stamp_ns - self._prev.stamp_ns) * 1e-9
        reset = None
        if signature != self._prev.signature:
            reset = "input_changed"
        elif dt > self.config.max_gap_s:
            reset = "gap"
        elif dt < -self.config.max_gap_s:
            reset = "backwards_jump"
        elif abs(dt) < MIN_INTERVAL_S:
            return "stamp_duplicate"
        elif dt < 0:
            self._backwards += 1
            if self._backwards < BACKWARDS_RUN:
                return "stamp_backwards"
            reset = "backwards_run"
        self._backwards = 0
        if reset:
            self.stats.resets[reset] += 1
            self.reset()
        return None

    def _preprocess(self, frame: Frame, intrinsics: Intrinsics):
        """Model inputs ``rgb [1,3,h,w]`` and ``disp [1,Cd,h,w]``, the depth normalisation (None: relative), the input
        depth at the model resolution (``[h, w]`` on the preparation device, NaN where invalid; None without one), its
        source, the depth from motion (None unless it made the input) and a depth image's valid pixels ``[1,1,h,w]``
        (None without a depth image); ``disp`` None for a depth image with too few valid pixels (:meth:`push` decides).
        """
        h, w, dev = self.height, self.width, self._prep_device
        rgb = resize_rgb(frame.rgb, h, w, dev, self._upload_rgb)
        motion, source = None, "topic"
        if frame.depth_m is not None:
            depth_m = np.require(frame.depth_m, np.float32, ["C", "W"])
            depth = resize_depth(self._upload_depth(depth_m)[None, None], h, w)
            valid = valid_depth(depth, self.config.depth_min_m, self.config.depth_max_m)
            if valid.float().mean() < max(self.config.min_valid_depth_fraction, 1e-9):
                return rgb, None, None, None, "none", None, None
        elif self._motion_depth is not None:
            k = intrinsics.scaled(frame.rgb.shape[1], frame.rgb.shape[0])  # the model's camera, at the input size
            motion = self._motion_depth.estimate(frame.rgb, frame.stamp_ns, k, frame.camera_pose)
            if motion is None:
                return rgb, self._no_depth_input(), None, None, "none", None, None
            inv = cv2.resize(motion.dense, (w, h), interpolation=cv2.INTER_LINEAR)
            # relative: the unit is the frame's median depth. The fused map keeps one unit while it lives but a new map
            # starts at its own; the price is that a pair's relative depths do not show how the median depth changed
            # between its frames (relative z-velocities are biased towards 0 for a camera moving along its axis)
            if not motion.metric:
                inv = inv / float(np.median(inv))
            depth = self._upload_motion(1.0 / np.maximum(inv, 1e-12))[None, None]
            valid = torch.ones_like(depth, dtype=torch.bool)
            source = "odometry" if motion.metric else "motion"
        else:
            return rgb, self._no_depth_input(), None, None, "none", None, None
        disp, inv_far, inv_near = normalize_inverse_depth(depth, valid)
        inv_far, inv_near = torch.cat([inv_far, inv_near]).tolist()  # one wait for the device
        norm = DepthNormalization(inv_far, inv_near, metric=source != "motion")
        depth_in = torch.where(valid, depth, torch.full_like(depth, float("nan")))[0, 0]
        channel_valid = valid
        if motion is not None and self.fill_validity == "known":  # the fill's measured pixels, as the model trained
            known = resize_nearest((motion.confidence > 0).astype(np.uint8), w, h)
            channel_valid = self._upload_known(known)[None, None] > 0
        return (rgb, model_depth_input(disp, channel_valid, self.depth_channels), norm, depth_in, source, motion,
                valid if source == "topic" else None)

    def _on_depth(self, valid: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool per Gaussian of a frame: at least half of its grid cell's pixels have valid input depth
        (``valid [1,1,h,w]``, the model resolution)."""
        share = F.adaptive_avg_pool2d(valid.float(), self.backend.model_config.gaussian_grid)
        return (share >= 0.5).flatten()

    def _no_depth_input(self) -> torch.Tensor:
        """The model's depth channels of a frame without depth input: all 0 (RGB only)."""
        return torch.zeros(1, self.depth_channels, self.height, self.width, device=self._prep_device)

    def _model_intrinsics(self, frame: Frame) -> Intrinsics:
        h, w = frame.rgb.shape[:2]
        if frame.intrinsics is None:  # square pixels of the input image, whatever its aspect against the model's
            return Intrinsics.from_fov(w, h, self.config.default_hfov_deg).scaled(self.width, self.height)
        k = frame.intrinsics
        if (k.height, k.width) != frame.rgb.shape[:2]:
            raise ValueError(f"intrinsics are for {k.width}x{k.height}, image is "
                             f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
        return k.scaled(self.width, self.height)

    def _lap(self, lat: dict[str, float], stage: str, tick: float) -> float:
        sync = getattr(self.backend, "synchronize", None)
        if sync is not None and self.config.stage_sync:
            sync()
        now = time.perf_counter()
        lat[stage] = lat.get(stage, 0.0) + (now - tick) * 1e3
        return now


def _on_cpu(backend: Backend) -> bool:
    """Whether the backend runs the network on the CPU (where ``motion_prior: auto`` picks classical flow)."""
    return str(getattr(backend, "device", "cpu")).startswith("cpu")


def per_frame_blend(backend: Backend, pair: Gaussians, t: float, background) -> RenderOutput:
    """A pair's view at pair time ``0 < t < 1`` from each frame's Gaussians rendered alone (``pair``: the older
    frame's ``N`` first, the newer's ``N`` second, as ``Backend.decode`` gives them), moved to ``t`` without their
    temporal fades, then blended as the flow-warp baseline blends its two warped key frames: colour and depth are
    each set's normalised ones weighted by ``(1 - t)·A0`` and ``t·A1`` (``A``: a set's accumulated alpha, so a set
    with a hole leaves the pixel to the other). Returned as one render would be: alpha is the coverage of either
    set, ``1 - (1 - A0)(1 - A1)``, composited over the background like the colour, and depth is ``alpha ·`` the
    blended depth."""
    unfaded = dataclasses.replace(pair, gamma=torch.zeros_like(pair.gamma))
    n = pair.count // 2
    outs = [backend.render(unfaded.map(lambda x, s=s: x[:, s]), t, background) for s in (slice(0, n), slice(n, None))]
    weights = ((1 - t) * outs[0].alpha, t * outs[1].alpha)
    total = (weights[0] + weights[1]).clamp_min(1e-6)
    color = sum(w * o.color_normalized(background) for w, o in zip(weights, outs)) / total
    depth = sum(w * o.depth_normalized() for w, o in zip(weights, outs)) / total
    alpha = 1 - (1 - outs[0].alpha) * (1 - outs[1].alpha)
    bg = background_vector(background, color).reshape(1, 3, 1, 1)
    return RenderOutput(alpha * color + (1 - alpha) * bg, alpha * depth, alpha)


def window_times(t: float, window: float, samples: int) -> list[float]:
    """Pair times whose renders are averaged into the colour of a view at ``t``: ``samples`` evenly spaced times
    spanning ``window · 4t(1-t)`` around ``t``, each clamped to [0, 1] (near a key frame the window is lopsided);
    just ``[t]`` at and outside the key frames. An odd count includes ``t`` itself; an even one costs one more
    render (the one at ``t`` gives the view's depth and alpha).

    A held-out time between two key frames is where the linear-motion model is least certain (an accelerating or
    bouncing object, a flow that matched the wrong thing); the mean render over the window is the expected image
    when the true time along the predicted path is uncertain, the way a camera's exposure blurs fast motion.
    The window is widest mid-pair and closes at the key frames, which stay sharp. Measured on the evaluation clips
    (docs/EVALUATION.md, session 6): a window of 0.8 with 5 samples adds 0.4 to 0.9 dB on the fast-motion clips
    (cups, juggle) and costs up to 1.2 dB where the motion is right (coffee), still far above blending there.
    """
    if samples < 2 or window <= 0 or not 0 < t < 1:
        return [t]
    width = window * 4 * t * (1 - t)
    return [min(max(t + width * (i / (samples - 1) - 0.5), 0.0), 1.0) for i in range(samples)]


def resize_rgb(rgb: np.ndarray, height: int, width: int, device: torch.device | str = "cpu",
               upload: Upload | None = None) -> torch.Tensor:
    """``rgb [H,W,3]`` uint8 -> ``[1,3,height,width]`` float in [0,1] on ``device`` (bilinear, antialiased when
    shrinking; the bytes are uploaded before any arithmetic, by ``upload``: an :class:`Upload` to ``device`` kept
    across frames, so that its page-locked buffer is reused; a new one by default). Raises ValueError for another
    dtype (the scaling below works in place on the converted copy, which a float input would not get)."""
    if rgb.dtype != np.uint8:
        raise ValueError(f"resize_rgb takes uint8 RGB, not {rgb.dtype}")
    x = (upload or Upload(device))(rgb).permute(2, 0, 1)[None].float().div_(255.0)  # in place: no second copy
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return x


def _check_frame(frame: Frame) -> None:
    """Raise ValueError for frames the caller built wrongly (these are bugs, not data to drop)."""
    rgb = frame.rgb
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}"
        raise ValueError(f"Frame.rgb must be a uint8 [H, W, 3] array, got {desc}")
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f"image too small: {rgb.shape[:2]}")
    d = frame.depth_m
    if d is not None:
        if not isinstance(d, np.ndarray) or d.ndim != 2 or d.shape != rgb.shape[:2]:
            raise ValueError(f"Frame.depth_m must be a [H, W] array aligned with rgb {rgb.shape[:2]}, "
                             f"got {getattr(d, 'shape', type(d).__name__)}")
        if not np.issubdtype(d.dtype, np.floating):
            raise ValueError(f"Frame.depth_m must be float metres, got {d.dtype} (convert 16UC1 millimetres first)")
    pose = frame.camera_pose
    if pose is not None and (not isinstance(pose, np.ndarray) or pose.shape != (4, 4) or not np.isfinite(pose).all()):
        raise ValueError(f"Frame.camera_pose must be a finite 4x4 array (T_world<-camera), got "
                         f"{getattr(pose, 'shape', type(pose).__name__)}")
    if not isinstance(frame.stamp_ns, (int, np.integer)):
        raise ValueError(f"Frame.stamp_ns must be an integer, got {type(frame.stamp_ns).__name__}")
