"""The frame's fixed-shape device work around the render, as functions of tensors and a hashable plan.

After the network, every frame puts its Gaussians in one depth frame (:func:`~nut_ros.pipeline.optical.
rebase_inverse_depth`) and builds the optical cloud's table (:func:`~nut_ros.pipeline.optical.optical_table`); after
each render, the view's depth goes to metres (or relative depth), unshown pixels to NaN and the colour to bytes, in
one table for one copy to the host. These are about a hundred small kernels per frame: on a fast GPU the host spends
longer launching them than the device spends running them. :class:`Publisher` replays them as CUDA graphs there
(:class:`~nut_ros.pipeline.cuda_graphs.GraphedCall`, one per plan and shape); the frame's numbers (depth
normalisations, intrinsics, pair interval) are a small tensor of inputs (:func:`frame_scalars`), so one capture
serves every frame. On a CPU the same functions run op by op.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.geometry import DepthNormalization, Intrinsics, rendered_depth_to_depth
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.optical import optical_table, rebase_inverse_depth

#: frame_scalars' layout: the live map's normalisation, the intrinsics, the pair interval, then per frame of the
#: pair its own normalisation
_LIVE, _K, _INTERVAL, _FRAMES = slice(0, 2), slice(2, 6), 6, 7
_FIELDS = tuple(f.name for f in fields(Gaussians))


@dataclass(frozen=True)
class CloudPlan:
    """What :func:`publish_cloud` computes beyond its tensors: the frames whose normalisations are rebased into the
    live one (0: none, the map is relative), whether the pair interval is known (velocities per second, else zero),
    the model image's size and the cloud's opacity threshold."""

    frames: int
    moving: bool
    width: int
    height: int
    min_opacity: float


@dataclass(frozen=True)
class ViewPlan:
    """What :func:`view_table` needs beyond its tensors: whether depth is shown at all (the newest frame had a depth
    input, or the network's own depth is asked for) and the alpha below which a pixel's depth is NaN."""

    depth_shown: bool
    min_alpha: float


def frame_scalars(live: DepthNormalization, k: Intrinsics, interval_s: float | None,
                  norms: Sequence[DepthNormalization]) -> list[float]:
    """The frame's numbers in the order :func:`publish_cloud` and :func:`view_table` read them."""
    values = [live.disp_min, live.disp_max, k.fx, k.fy, k.cx, k.cy, interval_s or 1.0]
    for n in norms:
        values += [n.disp_min, n.disp_max]
    return [float(v) for v in values]


def _live(scalars: Tensor) -> DepthNormalization:
    return DepthNormalization(*scalars[_LIVE].unbind(), metric=False)  # metric only labels; the numbers decide


def publish_cloud(g: Gaussians, scalars: Tensor, plan: CloudPlan) -> tuple[Gaussians, Tensor, Tensor]:
    """``(g in the live frame, rows, count)``: the pair's Gaussians rebased into the live normalisation (when
    ``plan.frames``), and their optical cloud at pair time 1 (:func:`~nut_ros.pipeline.optical.optical_table`)."""
    live = _live(scalars)
    norms = [DepthNormalization(*scalars[_FRAMES + 2 * i:_FRAMES + 2 * i + 2].unbind(), metric=False)
             for i in range(plan.frames)]
    if norms:
        g = rebase_inverse_depth(g, norms, live)
    k = Intrinsics(*scalars[_K].unbind(), plan.width, plan.height)
    rows, count = optical_table(g, 1.0, k, live, scalars[_INTERVAL] if plan.moving else None, plan.min_opacity)
    return g, rows, count


def view_table(color: Tensor, depth: Tensor, alpha: Tensor, scalars: Tensor, plan: ViewPlan) -> Tensor:
    """``[H, W, 5]`` (depth, alpha, R, G, B) of a view from its normalised colour ``[3,H,W]``, normalised canonical
    depth ``[H,W]`` and alpha ``[H,W]``: depth in the live normalisation's unit, NaN where alpha is below
    ``plan.min_alpha`` (everywhere unless ``plan.depth_shown``); colour as whole numbers 0-255 (exact in float32)."""
    depth = rendered_depth_to_depth(depth, _live(scalars))
    shown = alpha >= plan.min_alpha
    if not plan.depth_shown:
        shown = torch.zeros_like(shown)
    depth = torch.where(shown, depth, torch.full_like(depth, float("nan")))
    rgb = (color.clamp(0, 1) * 255 + 0.5).floor().permute(1, 2, 0)
    return torch.cat([depth[..., None], alpha[..., None], rgb], dim=-1)


class Publisher:
    """:func:`publish_cloud` and :func:`view_table` for one pipeline: through CUDA graphs when ``graphs`` and the
    tensors are on a GPU, else called directly. The frame's numbers come in as one tensor (:func:`frame_scalars`,
    uploaded with :func:`~nut_ros.pipeline.transfer.upload`)."""

    def __init__(self, graphs: bool):
        self.graphs = graphs
        self._plan = None  # the plan of the graphed call running now
        self._cloud = GraphedCall(lambda scalars, *g: _flat_cloud(Gaussians(*g), scalars, self._plan),
                                  key=lambda: (self._plan,))
        self._view = GraphedCall(lambda *inputs: view_table(*inputs, self._plan), key=lambda: (self._plan,))

    def cloud(self, g: Gaussians, scalars: Tensor, plan: CloudPlan) -> tuple[Gaussians, Tensor, Tensor]:
        if not (self.graphs and scalars.is_cuda):
            return publish_cloud(g, scalars, plan)
        self._plan = plan
        out = self._cloud(scalars, *(getattr(g, f) for f in _FIELDS))
        return Gaussians(*out[:len(_FIELDS)]), out[-2], out[-1]

    def view(self, color: Tensor, depth: Tensor, alpha: Tensor, scalars: Tensor, plan: ViewPlan) -> Tensor:
        if not (self.graphs and scalars.is_cuda):
            return view_table(color, depth, alpha, scalars, plan)
        self._plan = plan
        return self._view(color, depth, alpha, scalars)


def _flat_cloud(g: Gaussians, scalars: Tensor, plan: CloudPlan) -> tuple[Tensor, ...]:
    """:func:`publish_cloud` as a flat tuple of tensors (what a graphed call returns and clones)."""
    rebased, rows, count = publish_cloud(g, scalars, plan)
    return (*(getattr(rebased, f) for f in _FIELDS), rows, count)
