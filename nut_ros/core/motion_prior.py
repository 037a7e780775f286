"""Optical-flow motion prior for the velocity head (our configs; ``ModelConfig.motion_prior``).

The decoder alone learned no motion from the generated scenes in minutes of training (velocity error equal to the
true motion, docs/MODEL_CARD.md). With a prior, each Gaussian's velocity is the dense optical flow between the pair's
two frames, averaged over the Gaussian's pixel block and converted to canonical units, plus the velocity head's
output as a learned residual. The flow is classical, on the model-resolution grey images: OpenCV's DIS (dense
inverse search, Kroeger et al. 2016) or OpenCV-contrib's sparse-to-dense flow (Lucas-Kanade on a grid, interpolated
edge-aware). No GPU or graph is needed, so it sits beside every backend (the ONNX and TensorRT graphs are
unchanged); the streaming pipeline runs it on worker threads while the backend encodes. Its defaults are in
``PipelineConfig``: DIS `medium` at up to 512 px wide, no check; the node's ``flow_preset: auto`` takes
sparse-to-dense instead where its obstacles use the flow (:func:`choose_flow_preset`). Training uses DIS `fast` at
256.

Optionally (``check``), where the two directions disagree (forward-backward check of Sundaram et al. 2010:
``|f01 + f10(x + f01)|² < 0.01 (|f01|² + |f10(x + f01)|²) + 0.5`` px²; occlusions and failed matches of small fast
objects) the prior is 0 and the head's residual alone moves the Gaussian. On the training data it cost DIS
`medium` 0.7 to 1.5 dB of in-between frames and some obstacle precision (docs/EVALUATION.md): it also zeroes
correct fast motion. Off by default.

Units: frame 0's Gaussians (``t0 = 0``) move by their forward flow over the unit pair time, ``(du / (W/2), 0,
-dv / (H/2))`` in canonical ``(x, ŷ, z)``; frame 1's (``t0 = 1``) by minus their backward flow. The ŷ component
(depth change) is left to the head.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nut_ros.core.choices import DIS_PRESET_NAMES, FLOW_PRESETS
from nut_ros.core.gaussians import Gaussians

DIS_PRESETS = dict(zip(DIS_PRESET_NAMES, (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, cv2.DISOPTICAL_FLOW_PRESET_FAST,
                                           cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)))
# flow presets (FLOW_PRESETS): DIS at each preset, or ``sparse_to_dense`` (pyramidal Lucas-Kanade on an 8 px grid,
# interpolated edge-aware and smoothed, OpenCV-contrib ``optflow.calcOpticalFlowSparseToDense``): it follows small
# fast objects that DIS's coarse-to-fine search loses (a thrown ball, hands), at about 5x DIS medium's cost


def sparse_to_dense_available() -> bool:
    """Whether this OpenCV has the contrib modules (``opencv-contrib-python-headless``)."""
    return hasattr(getattr(cv2, "ximgproc", None), "createEdgeAwareInterpolator")


def choose_flow_preset(preset: str, obstacles: bool) -> str:
    """``preset``, or for ``"auto"`` the flow that measured better on the training data (docs/EVALUATION.md, "Which
    classical flow for the CPU"): ``sparse_to_dense`` where the flow feeds moving obstacles (``obstacles``: the
    node's perception stage) and OpenCV has the contrib modules (obstacle precision 0.920 against DIS medium's
    0.857 at equal F1, whatever thresholds were tried), else DIS ``medium`` (flow, in-between frames and cost)."""
    if preset != "auto":
        return preset
    return "sparse_to_dense" if obstacles and sparse_to_dense_available() else "medium"


def grey_u8(rgb: Tensor) -> np.ndarray:
    """``rgb [3, H, W]`` float in [0, 1] (any device) -> ``[H, W]`` uint8 grey (BT.601 weights)."""
    rgb8 = (rgb.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb8), cv2.COLOR_RGB2GRAY)


class FlowPrior:
    """Dense flow between grey frames (a ``FLOW_PRESETS`` entry) and its per-Gaussian velocity prior (not
    thread-safe: one per thread; :meth:`pair` runs the backward flow on a helper thread of its own while the calling
    thread runs the forward one, unless told not to).

    The flow runs on the model-resolution images halved until they are at most ``max_width`` wide (``small``'s
    512x288 -> 256x144 with ``max_width=256``; per direction on one dev-VM core, `fast` 0.5 instead of 1.8 ms,
    `medium` 2.3 instead of 9.4 ms, `sparse_to_dense` 9 instead of 51 ms, docs/BENCHMARKS.md, but blurrier motion
    boundaries), and is scaled back to model pixels. ``check``: zero the flow where the forward-backward check fails.
    """

    def __init__(self, image_size: tuple[int, int], gaussian_grid: tuple[int, int], preset: str = "fast",
                 max_width: int = 256, check: bool = False):
        if preset not in FLOW_PRESETS:
            raise ValueError(f"unknown flow preset {preset!r}; choose from {', '.join(FLOW_PRESETS)}")
        if preset == "sparse_to_dense" and not sparse_to_dense_available():
            raise ValueError("flow preset sparse_to_dense needs OpenCV's contrib modules (pip: "
                             "opencv-contrib-python-headless; Debian/Ubuntu: python3-opencv)")
        self.image_size, self.gaussian_grid, self.preset, self.check = image_size, gaussian_grid, preset, check
        self.factor = 1
        while image_size[1] // self.factor > max_width and image_size[0] % (2 * self.factor) == 0 \
                and image_size[1] % (2 * self.factor) == 0:
            self.factor *= 2
        h, w = image_size[0] // self.factor, image_size[1] // self.factor
        self._grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # flow-grid pixels
        self._method = self._make()
        self._backward = None  # (flow method, one-thread pool) of the backward flow, made on first use

    def _make(self):
        """A flow method instance with ``calc(grey0, grey1, None)``."""
        if self.preset == "sparse_to_dense":
            return SparseToDenseFlow()
        return cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])

    def flow(self, grey0: np.ndarray, grey1: np.ndarray, method=None) -> np.ndarray:
        """Displacement ``[h, w, 2]`` (du, dv) in model pixels of ``grey0``'s pixels to ``grey1``, on the flow grid
        (the model resolution divided by ``factor``), by ``method`` (default: this prior's own instance)."""
        if grey0.shape != tuple(self.image_size) or grey1.shape != grey0.shape:
            raise ValueError(f"flow needs two grey images of {self.image_size}, got {grey0.shape} and {grey1.shape}")
        if self.factor > 1:
            size = (self.image_size[1] // self.factor, self.image_size[0] // self.factor)
            grey0, grey1 = (cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in (grey0, grey1))
        return (method or self._method).calc(grey0, grey1, None) * self.factor

    def velocities(self, flow: np.ndarray) -> Tensor:
        """``[h, w, 2]`` flow in model pixels -> ``[N, 3]`` canonical velocity over the unit pair time (raster
        Gaussian order; the flow is averaged over each Gaussian's block, or bilinearly interpolated where the
        Gaussian grid is finer than the flow grid)."""
        h, w = self.image_size
        f = torch.from_numpy(flow).permute(2, 0, 1)[None]
        if f.shape[-1] < self.gaussian_grid[1]:  # a Gaussian per pixel: interpolate the coarser flow grid
            f = F.interpolate(f, size=self.gaussian_grid, mode="bilinear", align_corners=False)
        else:
            f = F.adaptive_avg_pool2d(f, self.gaussian_grid)
        f = f.flatten(2)[0]  # [2, N]
        return torch.stack([f[0] / (w / 2), torch.zeros_like(f[0]), -f[1] / (h / 2)], dim=-1)

    def pair(self, grey0: np.ndarray, grey1: np.ndarray, parallel: bool = True) -> Tensor:
        """Velocity prior ``[2N, 3]`` of a pair's Gaussians: frame 0's (forward flow), then frame 1's (minus the
        backward flow). ``parallel``: the two directions on two threads."""
        if not parallel:
            f01, f10 = self.flow(grey0, grey1), self.flow(grey1, grey0)
        else:
            if self._backward is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nut_ros_flow_back")
                self._backward = (self._make(), pool)
            method, pool = self._backward
            backward = pool.submit(self.flow, grey1, grey0, method)
            f01, f10 = self.flow(grey0, grey1), backward.result()
        if self.check:
            f01, f10 = self.consistent(f01, f10), self.consistent(f10, f01)
        return torch.cat([self.velocities(f01), -self.velocities(f10)])

    def consistent(self, forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
        """``forward`` with 0 where the backward flow, sampled where ``forward`` points, does not bring the pixel
        back (both ``[h, w, 2]`` on the flow grid, in model pixels)."""
        gx, gy = self._grid
        step = forward / self.factor  # in flow-grid pixels
        back = cv2.remap(backward, gx + step[..., 0], gy + step[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        error = ((forward + back) ** 2).sum(-1)
        ok = error < 0.01 * ((forward ** 2).sum(-1) + (back ** 2).sum(-1)) + 0.5
        return forward * ok[..., None]


class SparseToDenseFlow:
    """OpenCV-contrib's sparse-to-dense flow behind DIS's ``calc`` signature, built from its two steps.

    ``optflow.calcOpticalFlowSparseToDense`` is pyramidal Lucas-Kanade (21x21 window) from every ``GRID``-th pixel,
    then the edge-aware interpolator (K = 128 neighbours, σ 0.05, fast global smoother λ 500, σ 1.5) over the
    matches. Called whole, it asks for K neighbours even when fewer matches survive (small or textureless frames):
    the flow is NaN and, under threads, the process can crash. Here K is capped by the matches and with fewer than
    4 the flow is 0; otherwise the result equals OpenCV's bit for bit (test_motion_prior.py, a cups frame pair).
    """

    GRID, K = 8, 128

    def __init__(self):
        self._interpolator = cv2.ximgproc.createEdgeAwareInterpolator()
        self._interpolator.setSigma(0.05)
        self._interpolator.setUsePostProcessing(True)
        self._interpolator.setFGSLambda(500.0)
        self._interpolator.setFGSSigma(1.5)

    def calc(self, grey0: np.ndarray, grey1: np.ndarray, _flow=None) -> np.ndarray:
        h, w = grey0.shape
        ys, xs = np.mgrid[0:h:self.GRID, 0:w:self.GRID]
        p0 = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
        p1, status, _ = cv2.calcOpticalFlowPyrLK(grey0, grey1, p0, None, winSize=(21, 21))
        ok = (status.ravel() == 1) & np.isfinite(p1).all(axis=1)
        if ok.sum() < 4:
            return np.zeros((h, w, 2), np.float32)
        self._interpolator.setK(int(min(self.K, ok.sum())))
        return self._interpolator.interpolate(grey0, p0[ok], grey1, p1[ok], None)


def with_prior(gaussians: Gaussians, prior: Tensor) -> Gaussians:
    """The pair's Gaussians with ``prior [B, 2N, 3]`` added to their velocities."""
    return dataclasses.replace(gaussians, velocity=gaussians.velocity + prior.to(gaussians.velocity))


def batch_priors(rgb0: Tensor, rgb1: Tensor, gaussian_grid: tuple[int, int], preset: str = "fast",
                 workers: int = 8) -> Tensor:
    """Velocity priors ``[B, 2N, 3]`` (on ``rgb0``'s device) of a batch of pairs ``rgb0, rgb1 [B, 3, H, W]``, one
    flow instance per sample on a thread pool (OpenCV releases the GIL): training on generated clips."""
    greys = [(grey_u8(a), grey_u8(b)) for a, b in zip(rgb0, rgb1)]
    size = tuple(rgb0.shape[-2:])

    def one(pair):
        return FlowPrior(size, gaussian_grid, preset).pair(*pair, parallel=False)  # the pool is the parallelism

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(greys)))) as pool:
        return torch.stack(list(pool.map(one, greys))).to(rgb0.device)
