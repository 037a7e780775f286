"""Quality of a stream run: re-rendered key frames, interpolated held-out frames against frame blending and flow
warping of the key frames, and rendered depth against ground truth.

With key-frame stride ``k`` the pipeline sees frames ``0, k, 2k, …``. Each key frame's render at pair time 1 is
compared with that frame ("key"; rendered for the evaluation when ``PipelineConfig.render_times`` leaves pair time 1
out, the step's own views untouched). Beside it stands the frame the model was given scored against itself ("copy":
the exact-match upper bound, PSNR :data:`EXACT_PSNR_DB` and SSIM 1, not a baseline). Once the next key frame has
arrived, every frame in between is rendered at its pair time from the stamps and compared with the true frame
("interp"), next to the linear blend of the two key frames at the same time ("blend") and the key frames warped to
that time with DIS flow both ways ("flow_warp", :mod:`nut_ros.pipeline.baselines`). Images are compared at the model
resolution (the ground truth resized the way the pipeline resizes its input) and, as StreamSplat reports them, both
resized to 256x256. Held-out frames that cannot be placed in
a pair are skipped (counted): those before a stream's first key frame, those more than ``PipelineConfig.max_gap_s``
from the last processed key frame, and the oldest beyond ``max_held`` waiting at once.

Depth (key frames with ground truth): the rendered depth, a constant, a vertical ramp and the depth-from-motion input
(dense and semi-dense) are scored on the same pixels under each alignment of :data:`DEPTH_PROTOCOLS`, and the
summary splits the rendered depth's error by the frame's depth source.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from nut_ros.core.geometry import resize_nearest
from nut_ros.pipeline.baselines import FlowWarp, blend
from nut_ros.pipeline.metrics import constant_depth, depth_errors, percentiles, psnr, ramp_depth, resize_square, ssim
from nut_ros.pipeline.stats import STAGES
from nut_ros.pipeline.stream import StreamingPipeline, resize_rgb
from nut_ros.pipeline.types import Frame, RenderedView, StepResult

REPORT_SIZE = 256
#: alignments of a depth figure (key suffix): none (metric runs only), median scale, disparity scale+shift
DEPTH_PROTOCOLS = {"": "metric", "_aligned": "median", "_affine": "scale+shift"}
#: what is scored (key suffix): the rendered depth, its trivial baselines, and the model's depth input from motion
#: (dense, as the model got it; semi-dense, before the fill), and the rendered depth on the semi-dense pixels alone
#: (the same pixels as the semi-dense figure)
DEPTH_PREDICTORS = {"": "rendered", "_constant": "constant", "_ramp": "vertical ramp", "_input": "motion input",
                    "_sparse": "motion semi-dense", "_on_sparse": "rendered on the semi-dense pixels"}
BY_SOURCE_KEYS = ("depth_abs_rel", "depth_abs_rel_aligned", "depth_abs_rel_affine", "depth_abs_rel_affine_constant")
DEPTH_KEYS = tuple(f"depth_{stat}{proto}{pred}" for proto in DEPTH_PROTOCOLS for pred in DEPTH_PREDICTORS
                   for stat in ("abs_rel", "delta1")) + ("depth_coverage", "depth_coverage_input",
                                                         "depth_coverage_sparse")


#: dB: the PSNR of 8-bit rounding noise (uniform, variance 1/12 of a grey level²), the most a frame scores: one
#: closer to its truth than that (an exact match, PSNR ∞, such as a repeated frame's blend) counts as this, kept in
#: the means instead of left out of them, which would average a baseline over fewer frames than the model beside it
EXACT_PSNR_DB = 10 * np.log10(12 * 255**2)


IMAGE_SCORES = ("psnr", "ssim", "psnr_256", "ssim_256")  # image_scores' keys


def _prefixed(prefix: str, scores: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in scores.items()}


def image_scores(pred: np.ndarray, true: np.ndarray, with_ssim: bool = True) -> dict[str, float]:
    """PSNR (and SSIM) at the given resolution and after resizing both to 256x256; PSNR at most
    :data:`EXACT_PSNR_DB`."""
    a, b = resize_square(pred, REPORT_SIZE), resize_square(true, REPORT_SIZE)
    out = {"psnr": min(psnr(pred, true), EXACT_PSNR_DB), "psnr_256": min(psnr(a, b), EXACT_PSNR_DB)}
    if with_ssim:
        out.update(ssim=ssim(pred, true), ssim_256=ssim(a, b))
    return out


#: held-out frames waiting for a key frame at most: a bound on memory for streams whose key frames keep being
#: dropped without their stamps advancing (duplicates), which the time bound never ends
MAX_HELD = 64


@dataclass
class _Held:
    index: int
    stamp_ns: int
    rgb: np.ndarray  # model resolution, float32 [0, 1] (half the float64's memory, the same scores)


@dataclass
class StreamEvaluator:
    """Feed every frame of a clip with :meth:`add`; per-frame scores accumulate in ``records``."""

    pipeline: StreamingPipeline
    stride: int = 2
    depth_min_m: float = 0.05
    depth_max_m: float = 20.0
    max_held: int = MAX_HELD
    records: list[dict] = field(default_factory=list)
    # held-out frames not rendered: no key frame to pair them with (before a stream's first one, the stream reset
    # after them, more than max_gap_s from the last one) or the oldest beyond max_held
    skipped_interp: int = 0
    _index: int = 0
    _held: deque[_Held] = field(default_factory=deque)
    _key_rgb: np.ndarray | None = None  # the last processed key frame's truth (model resolution, float)
    _key_stamp_ns: int | None = None

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.max_held < 1:
            raise ValueError(f"max_held must be >= 1, got {self.max_held}")

    def _model_rgb(self, rgb: np.ndarray) -> np.ndarray:
        p = self.pipeline
        return resize_rgb(rgb, p.height, p.width)[0].permute(1, 2, 0).numpy().astype(np.float64)

    def skip(self) -> None:
        """A frame of the clip that never became a :class:`Frame` (refused before the pipeline): counted, so the
        key / held-out split stays that of the clip's frames (its held-out frames wait for the next key frame)."""
        self._index += 1

    def add(self, frame: Frame, gt_depth_m: np.ndarray | None = None) -> StepResult | None:
        """One frame of the clip (every frame, in order); returns the step result for key frames."""
        i = self._index
        self._index += 1
        if i % self.stride:
            self._hold(i, frame)
            return None
        result = self.pipeline.push(frame)
        if result is None:  # dropped: its held-out frames wait for the next key frame
            return None
        held, self._held = list(self._held), deque()
        true = self._model_rgb(frame.rgb)
        newest = self._newest(result)
        rec = {"index": i, "stamp_ns": frame.stamp_ns, "kind": "key", "pair_time": 1.0,
               "gaussians": result.gaussians.count, "latency_ms": dict(result.latency_ms),
               "depth_source": result.depth_source,
               **image_scores(newest.rgb, true),
               **_prefixed("copy", image_scores(true, true))}  # the exact-match upper bound: the truth against itself
        if gt_depth_m is not None:
            rec.update(self._depth_scores(result, newest.depth, gt_depth_m))
        self.records.append(rec)
        if result.paired and self._key_rgb is not None:
            self._score_held(held, self._key_rgb, true)
        else:
            self.skipped_interp += len(held)
        self._key_rgb, self._key_stamp_ns = true, frame.stamp_ns
        return result

    def _hold(self, index: int, frame: Frame) -> None:
        """Keep a held-out frame for the next key frame, or count it skipped when no pair can hold it: no key frame
        processed yet, or a stamp more than ``max_gap_s`` from the last one (the next key frame, later still, starts
        a new stream). The oldest waiting frame is skipped when ``max_held`` are waiting."""
        gap_ns = self.pipeline.config.max_gap_s * 1e9
        if self._key_stamp_ns is None or abs(frame.stamp_ns - self._key_stamp_ns) > gap_ns:
            self.skipped_interp += 1
            return
        if len(self._held) >= self.max_held:
            self._held.popleft()
            self.skipped_interp += 1
        rgb = self._model_rgb(frame.rgb).astype(np.float32)
        self._held.append(_Held(index, frame.stamp_ns, rgb))

    def _newest(self, result: StepResult) -> RenderedView:
        """The view at pair time 1: the step's own, else (render_times without 1) rendered here, leaving the step's
        views, which are what the node publishes, as they are."""
        try:
            return result.newest
        except KeyError:
            [view] = self.pipeline.render([1.0])
            return view

    def _score_held(self, held: list[_Held], key0: np.ndarray, key1: np.ndarray) -> None:
        warp = FlowWarp(key0, key1) if held else None
        for h in held:
            t = self.pipeline.pair_time(h.stamp_ns)
            [view] = self.pipeline.render([t])
            scores = image_scores(view.rgb, h.rgb)
            between = min(max(t, 0.0), 1.0)  # the baselines interpolate the key frames, never extrapolate them
            base = image_scores(blend(key0, key1, between), h.rgb)
            warped = image_scores(warp.at(between), h.rgb)
            self.records.append({"index": h.index, "stamp_ns": h.stamp_ns, "kind": "interp", "pair_time": t,
                                 **scores, **_prefixed("blend", base), **_prefixed("flow_warp", warped)})

    def _depth_scores(self, result: StepResult, pred: np.ndarray, gt_depth_m: np.ndarray) -> dict[str, float]:
        """Rendered depth ``pred`` (the view at pair time 1) and its baselines against ground truth on the same
        pixels (ground truth valid and rendered depth present), under each alignment (:data:`DEPTH_PROTOCOLS`).
        Constant and ramp have no scale of their own: without alignment (metric runs) they are scaled to the rendered
        depth's median, never the ground truth's. The motion input is scored where it has values (its coverage of
        those pixels is recorded; 0 on frames where depth from motion gave nothing), and so is the rendered depth on
        the semi-dense pixels."""
        h, w = pred.shape
        gt = torch.from_numpy(np.asarray(gt_depth_m, np.float32))[None, None]
        gt = F.interpolate(gt, size=(h, w), mode="nearest-exact")[0, 0].numpy()
        valid = np.isfinite(gt) & (gt >= self.depth_min_m) & (gt <= self.depth_max_m)
        same = valid & np.isfinite(pred) & (pred > 0)
        out = {"depth_coverage": same.sum() / max(int(valid.sum()), 1)}
        if not same.any():
            return out
        scale = float(np.median(pred[same]))
        predictors = {"": pred, "_constant": scale * constant_depth((h, w)),
                      "_ramp": ramp_depth((h, w)) * scale / float(np.median(ramp_depth((h, w))[same]))}
        motion = result.motion_depth
        out["depth_coverage_input"] = out["depth_coverage_sparse"] = 0.0
        if motion is not None:
            sparse = resize_nearest(motion.inv_depth, w, h)
            for key, depth in (("_input", result.input_depth), ("_sparse", 1.0 / sparse)):
                ok = same & np.isfinite(depth) & (depth > 0)
                out[f"depth_coverage{key}"] = ok.sum() / same.sum()
                predictors[key] = np.where(ok, depth, np.nan)
            predictors["_on_sparse"] = np.where(np.isfinite(predictors["_sparse"]), pred, np.nan)
        for proto in DEPTH_PROTOCOLS:
            if proto == "" and not result.metric:
                continue
            for key, depth in predictors.items():
                if proto == "" and key in ("_input", "_sparse", "_on_sparse") and not motion.metric:
                    continue
                e = depth_errors(depth, gt, valid=same, align_median=proto == "_aligned",
                                 align_disparity=proto == "_affine")
                out[f"depth_abs_rel{proto}{key}"], out[f"depth_delta1{proto}{key}"] = e["abs_rel"], e["delta1"]
        return out

    def summary(self) -> dict:
        """Means per frame kind, latency percentiles per stage, counts, and ``pipeline_fps``: key frames per second
        of the pipeline's own time (the sum of its per-frame ``total`` latencies, the evaluation's work left out)."""
        def mean(kind: str, key: str) -> float | None:
            vals = [r[key] for r in self.records if r["kind"] == kind and key in r and np.isfinite(r[key])]
            return float(np.mean(vals)) if vals else None

        keys = [r for r in self.records if r["kind"] == "key"]
        seen = {s for r in keys for s in r["latency_ms"]}
        stages = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
        pipeline_s = sum(r["latency_ms"]["total"] for r in keys) / 1e3
        out = {
            "frames_total": self._index, "stride": self.stride,
            "key_frames": len(keys), "interp_frames": sum(r["kind"] == "interp" for r in self.records),
            "interp_skipped": self.skipped_interp + len(self._held),  # trailing frames have no next key frame
            "key": {k: mean("key", k) for k in IMAGE_SCORES},
            "copy": {k: mean("key", f"copy_{k}") for k in IMAGE_SCORES},
            "interp": {k: mean("interp", k) for k in IMAGE_SCORES},
            "blend": {k: mean("interp", f"blend_{k}") for k in IMAGE_SCORES},
            "flow_warp": {k: mean("interp", f"flow_warp_{k}") for k in IMAGE_SCORES},
            "latency_ms": {s: percentiles(r["latency_ms"][s] for r in keys if s in r["latency_ms"]) for s in stages},
            "pipeline_fps": len(keys) / pipeline_s if pipeline_s > 0 else None,
            "gaussians_mean": float(np.mean([r["gaussians"] for r in keys])) if keys else None,
            "gaussians_live": self.pipeline.live_gaussians,
            "pipeline": self.pipeline.stats.as_dict(),
        }
        if any("depth_coverage" in r for r in keys):
            out["depth"] = {k: mean("key", k) for k in DEPTH_KEYS}
            out["depth"]["frames"] = {k: sum(k in r for r in keys) for k in DEPTH_KEYS if k.startswith("depth_abs")}
            sources = [r["depth_source"] for r in keys]
            out["depth"]["sources"] = {s: sources.count(s) for s in sorted(set(sources))}
            # the rendered depth per depth source: what geometry a frame had decides its error
            out["depth"]["by_source"] = {
                src: {k: float(np.mean(v)) if (v := [r[k] for r in keys if r["depth_source"] == src and k in r
                                                     and np.isfinite(r[k])]) else None
                      for k in BY_SOURCE_KEYS} for src in sorted(set(sources))}
        return out
