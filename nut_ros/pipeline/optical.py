"""A pair's Gaussians in units the robot can use: one shared depth frame for rendering, and the optical frame.

Each frame of a pair was normalised with its own :class:`~nut_ros.core.geometry.DepthNormalization` (affine on
inverse depth). :func:`rebase_inverse_depth` rewrites every Gaussian's slot ``ŷ`` (and its velocity) into one shared
normalisation chosen so that the renderer's fixed map ``d = 1/(0.2 + 9.8 ŷ)`` is proportional to metres. The
rasterizer's footprint does not depend on depth (orthographic, constant Jacobian), so rendering the rebased set
gives exact per-Gaussian metric depth compositing and metric front-to-back order, at no extra cost. The shared
frame covers a 50:1 depth range (see :func:`shared_normalization`); Gaussians leaving it are culled, as the
reference culls ŷ outside [0, 1]. :func:`queue_optical_cloud` then uses the geometry helpers of
``nut_ros.core.geometry``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.geometry import (DepthNormalization, Intrinsics, canonical_scale_to_optical, canonical_to_optical,
                                   canonical_velocity_to_optical)
from nut_ros.pipeline.transfer import copy_on_side_stream
from nut_ros.pipeline.types import CLOUD_COLUMNS, GaussianCloud

#: margin of the shared frame's slots: the farthest input depth lands at ŷ' = FAR_MARGIN, never on the cull edge
FAR_MARGIN = 0.005


def shared_normalization(norms: Sequence[DepthNormalization]) -> DepthNormalization:
    """The shared frame of frames ``norms``: ``disparity = (0.2 + 9.8 ŷ') / s`` for a scale ``s`` (metres per
    canonical depth unit), so a render's canonical depth times ``s`` is metres (metric when every frame is; relative
    depth from motion keeps its own unit, the frame's median depth).

    The farthest far plane lands at ŷ' = ``FAR_MARGIN``, so the frame covers about ``d_far / 40`` to
    ``1.25 · d_far``. When the frames span more than that (a ratio above ~40), the nearest depth is kept instead
    (at ŷ' = 1 - ``FAR_MARGIN``) and the far end is culled: near structure matters more to a robot.
    """
    renderer = DepthNormalization.relative()  # the renderer's own map ŷ -> 0.2 + 9.8 ŷ
    keep_far = renderer.yhat_to_disparity(FAR_MARGIN) / min(n.disp_min for n in norms)
    keep_near = renderer.yhat_to_disparity(1 - FAR_MARGIN) / max(n.disp_max for n in norms)
    s = min(keep_far, keep_near)
    return DepthNormalization(renderer.disp_min / s, renderer.disp_max / s, metric=all(n.metric for n in norms))


def rebase_inverse_depth(g: Gaussians, norms: Sequence[DepthNormalization], shared: DepthNormalization) -> Gaussians:
    """Rewrite ``ŷ`` (and its velocity) of Gaussians normalised per frame into the ``shared`` normalisation.

    ``norms[k]`` is the normalisation of the frame whose Gaussians have anchor time ``t0 == k`` (a pair: 0 and 1;
    a single frame: ``norms[0]`` applies to all). Disparity is kept: ``ŷ' = (min_k + span_k ŷ - min') / span'``.
    """
    t0 = g.t0
    gain = torch.full_like(t0, norms[0].span / shared.span)
    offset = torch.full_like(t0, (norms[0].disp_min - shared.disp_min) / shared.span)
    for k, n in enumerate(norms[1:], start=1):
        gain = torch.where(t0 == k, torch.full_like(t0, n.span / shared.span), gain)
        offset = torch.where(t0 == k, torch.full_like(t0, (n.disp_min - shared.disp_min) / shared.span), offset)
    xyz = torch.stack([g.xyz[..., 0], offset + gain * g.xyz[..., 1], g.xyz[..., 2]], dim=-1)
    vel = torch.stack([g.velocity[..., 0], gain * g.velocity[..., 1], g.velocity[..., 2]], dim=-1)
    return Gaussians(xyz, vel, g.rgb, g.opacity, g.scale, g.gamma, g.t0)


class QueuedCloud:
    """An optical cloud whose copy to the host was queued (:func:`queue_optical_cloud`); :meth:`result` once the
    device's work is done (:func:`~nut_ros.pipeline.transfer.wait_for_copies`). Its rows stay on the device too
    (:meth:`device_table`, for the perception stage)."""

    def __init__(self, table: np.ndarray, count: np.ndarray, metric: bool, device: torch.Tensor):
        self._table, self._count, self._metric, self._device = table, count, metric, device

    def result(self) -> GaussianCloud:
        table = self._table[:int(self._count[0])]
        pos, sc, rot, op, rgb, vel = (table[:, c] for c in CLOUD_COLUMNS.values())
        return GaussianCloud(pos, sc, rot, op[:, 0], rgb, vel, metric=self._metric)

    def device_table(self) -> torch.Tensor:
        """The rows of :meth:`result` on the device (``[N, 17]``, ``CLOUD_COLUMNS``; read the count as it does)."""
        return self._device[:int(self._count[0])]


def queue_optical_cloud(g: Gaussians, t: float, k: Intrinsics, norm: DepthNormalization,
                        pair_interval_s: float | None, min_opacity: float = 0.0,
                        on_depth: torch.Tensor | None = None) -> QueuedCloud:
    """Gaussians of batch element 0 at pair time ``t`` in the optical frame of the image described by ``k``, queued.

    ``norm`` maps their slots ``ŷ`` to depth (metres when ``norm.metric``). Culled Gaussians (ŷ(t) outside [0, 1])
    and those with ``α(t) < min_opacity`` are left out, and so are those ``on_depth`` (``[N]`` bool) marks False
    (their depth is the network's guess where the depth image had none). Velocities are the instantaneous derivative
    at ``t`` per second (zero without ``pair_interval_s``: a single frame does not move). Nothing waits for the
    device: on a GPU the kept Gaussians are moved to the front of one table, and the whole table is copied to pinned
    host memory on a side stream, so that the copy overlaps the work queued after it (the render) and the host never
    waits for the count of kept Gaussians.
    """
    p = g.premap_position(t)[0].float()
    alpha = g.temporal_opacity(t)[0, :, 0].float()
    keep = (p[:, 1] >= 0) & (p[:, 1] <= 1) & (alpha >= min_opacity)
    if on_depth is not None:
        keep = keep & on_depth
    # every field of every Gaussian in one table, then one selection and one copy (the culled ones' values are
    # computed and dropped)
    positions = canonical_to_optical(p, norm, k)
    scales = canonical_scale_to_optical(g.scale[0].float(), positions[:, 2], k)
    if pair_interval_s:
        velocities = canonical_velocity_to_optical(p, g.velocity[0].float(), norm, k, pair_interval_s)
    else:
        velocities = torch.zeros_like(positions)
    rotations = torch.zeros(positions.shape[0], 4, dtype=positions.dtype, device=positions.device)
    rotations[:, 0] = 1.0  # the renderer's Gaussians are axis-aligned in the optical frame too
    fields = (positions, scales, rotations, alpha[:, None], g.rgb[0].float(), velocities)  # CLOUD_COLUMNS
    table = torch.cat([f.detach().float() for f in fields], dim=1)
    if not table.is_cuda:
        kept = table[keep]
        return QueuedCloud(kept.numpy(), np.array([kept.shape[0]]), norm.metric, kept)
    kept_first = torch.argsort(keep.logical_not().to(torch.uint8), stable=True)  # kept rows first, in order
    packed, count = table[kept_first], keep.sum(dtype=torch.int64).reshape(1)
    return QueuedCloud(*copy_on_side_stream(packed, count), norm.metric, packed)
