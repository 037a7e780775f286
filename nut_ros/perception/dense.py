"""The per-Gaussian part of the perception stage, as functions of tensors and fixed settings only.

:func:`select_rows`, :func:`fit_sample`, :func:`find_moving` and :func:`fit_then_find` read nothing but their
:class:`StageInputs` (tensors) and their :class:`StagePlan` (settings and the flags that pick a code path, fixed for
a stream), write nothing outside their results, and never wait for the device or copy from the host: on a GPU the
processor captures each once per plan as a CUDA graph (:class:`nut_ros.pipeline.cuda_graphs.GraphedCall`) and
replays it per frame, which replaces launching its few hundred small torch operations from Python one by one. On
the CPU the processor calls them as they are. Row counts are fixed per stream on the GPU: the thinned cloud is
padded with NaN rows to ``max_gaussians`` (a NaN row fails every selection, so the padding changes nothing but the
shapes).

Steps (see :mod:`nut_ros.perception.processor` for what each threshold means):

1. :func:`select_rows`: the opaque, finite Gaussians in range and, with a metric depth input, on it (the obstacles'
   and the map's, each by its own ``min_opacity`` and ``max_range``; and their pixel coordinates, projected once for
   every image grid of the later steps); without odometry
   :func:`fit_sample`, the robust camera-motion fit on ``ego_samples`` of them spread evenly over the selected rows
   at the host's random offset (:func:`spread`), and from it the pair's field, turn and pose (:func:`fit_then_find`
   runs the fit and step 2 as one call, so the fit is not waited for on its own);
2. :func:`find_moving`: the depth rate against the compared frame (:class:`DepthChange`), the thresholds, each
   Gaussian's velocity over the ground, the cell-averaged score and the moving test; then the moving rows (their
   depth rate NaN where it was clipped at ``-change_max_speed``: a leading edge's) and the map's candidates
   gathered into one flat tensor (:func:`unpack` reads its counts and moving rows, :func:`downloaded_part`, in one
   copy; the candidates, :func:`candidate_slots`, stay on the device for the map), the frame's points in the
   fixed frame (what :class:`DepthChange` remembers), and the map's :class:`Offer`: every candidate slot's point
   moved into the fixed frame, and which slots count (those below the eligible count, of a trusted frame).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from nut_ros.core.geometry import Intrinsics
from nut_ros.perception.clustering import voxel_keys
from nut_ros.perception.depth_change import DepthChange, cell_mean, image_cells, pixel_coords, times3
from nut_ros.perception.ego_motion import (cross_matrix, fit_trusted, fitted_rotation, quaternion_product,
                                          solve_static_field)
from nut_ros.perception.local_map import camera_row
from nut_ros.perception.params import MapParams, ObstacleParams
from nut_ros.perception.tensors import download, pick
from nut_ros.pipeline.types import CLOUD_COLUMNS

MOVER_COLUMNS = 7  # a downloaded moving Gaussian: point, velocity over the ground, weight
CANDIDATE_COLUMNS = 10  # a downloaded map candidate: point, colour, scales, opacity ...
CANDIDATE_SPLIT = (3, 6, 9)  # ... split at these columns
MAX_MOVING_FRACTION = 0.5  # more Gaussians moving than this: the camera-motion estimate failed (frame skipped)
HEADER = 3  # the download starts with: Gaussians selected, of them moving, static ones eligible for the map
# StageInputs.frame: the static field (4 rows), the camera pose (4 rows), the scalars (1 row), the pair's turn (3),
# the pair's interval and the fit's offset (1), the camera's orientation (2)
FRAME_ROWS = 15


@dataclass(frozen=True)
class StagePlan:
    """What the stage's functions depend on besides their tensors (hashable: one CUDA graph per plan)."""

    obstacles: ObstacleParams
    local_map: MapParams
    k: Intrinsics  # the model's camera
    depth: bool  # the metric input depth filters the Gaussians (on_input_depth)
    compare: bool  # a compared frame is remembered: the depth rate is measured (else unknown everywhere)
    shift: bool  # the image-plane velocity from the depth silhouette's shift (with odometry)


class StageInputs(NamedTuple):
    """The stage's per-frame tensors, all on the Gaussians' device."""

    rows: torch.Tensor  # [M, C] the thinned cloud table (CLOUD_COLUMNS), NaN rows where padded
    depth: torch.Tensor  # [h, w] metric input depth, NaN where none ([1, 1], unread, when the plan has no depth)
    # [FRAME_ROWS, 3] float64: rows 0-3 the static field (apparent velocity of a static point X: X @ f[:3] + f[3]),
    # rows 4-7 the camera's pose in the fixed frame (X_fixed = X @ p[:3] + p[3]), row 8: the noise floors' scale,
    # the time since the compared frame (s), the random offset in [0, 1) of the map's candidates drawn (spread);
    # rows 9-11 the camera's turn over the pair, ``R^T`` of ``T_cur<-prev`` (a vector in the previous camera's axes,
    # as a row: ``v @ turn`` in the current's); row 12: the pair's interval (s; 0: unknown), the random offset in
    # [0, 1) of the camera-motion fit's sample, 0; rows 13-14: the quaternion (x, y, z; w, 0, 0) of the pose's
    # orientation (read by fit_then_find only)
    frame: torch.Tensor
    old: torch.Tensor  # [M', 3] the compared frame's points, fixed frame ([1, 3], unread, when the plan has none)


def frame_tensor(field: np.ndarray, pose: np.ndarray, floor: float, interval: float, offset: float,
                 turn: np.ndarray = np.eye(3), pair_interval: float = 0.0, fit_offset: float = 0.0,
                 orientation=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """The host side of :attr:`StageInputs.frame`: ``field`` and ``pose`` as ``[4, 3]`` (:func:`affine_rows`),
    ``turn`` ``[3, 3]`` (``R^T``; identity: the camera did not turn, or nothing is compared), ``pair_interval`` the
    pair's interval in seconds (0: unknown; the flow's error share then does not grow with the displacement),
    ``fit_offset`` the fit's sample offset, ``orientation`` the pose's quaternion ``(x, y, z, w)``."""
    x, y, z, w = orientation
    return np.concatenate([field, pose, [[floor, interval, offset]], turn, [[pair_interval, fit_offset, 0.0]],
                           [[x, y, z], [w, 0.0, 0.0]]]).astype(np.float64)


def affine_rows(matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``X -> matrix @ X + offset`` as the ``[4, 3]`` rows ``f`` with ``X @ f[:3] + f[3]`` (row vectors)."""
    return np.concatenate([np.asarray(matrix).T, np.asarray(offset)[None]])


def _affine(points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    rows = rows.to(points.dtype)
    return times3(points, rows[:3]) + rows[3]


class Offer(NamedTuple):
    """What a frame offers the map besides its candidate slots' columns, on the device."""

    points: torch.Tensor  # [candidates, 3] float64: each slot's point in the fixed frame
    offered: torch.Tensor  # [candidates] bool: the slots counted (below the eligible count), where frame_trusted


class Rows(NamedTuple):
    """The thinned cloud, one row per Gaussian. Rows that fail the obstacles' selection (faint, out of range, not
    finite, off the input depth, padding) have NaN points, zero velocities and zero weights, so every later step
    skips them; the map's selection (its own ``min_opacity`` and ``max_range``) is ``map_points``."""

    points: torch.Tensor  # [M, 3] optical frame
    velocities: torch.Tensor  # [M, 3]
    weights: torch.Tensor  # [M] opacity (0: not selected)
    valid: torch.Tensor  # [M] bool
    opacities: torch.Tensor  # [M] as in the cloud
    colors: torch.Tensor  # [M, 3]
    scales: torch.Tensor  # [M, 3]
    threshold: torch.Tensor  # [M] the moving threshold before the camera-motion terms
    pixels: tuple[torch.Tensor, torch.Tensor]  # [M] each: the rows' pixel_coords in the model's camera (all rows)
    map_points: torch.Tensor  # [M, 3] optical frame, NaN where the map may not take the row


def select_rows(inputs: StageInputs, plan: StagePlan) -> Rows:
    """The rows the stage uses (see :class:`Rows`) and their base moving threshold ``(moving_speed +
    moving_speed_per_m · z) · floor scale``."""
    op, mp, table = plan.obstacles, plan.local_map, inputs.rows
    p, v, rgb, sc = (table[:, CLOUD_COLUMNS[n]] for n in ("positions", "velocities", "colors", "scales"))
    o = table[:, CLOUD_COLUMNS["opacities"]].reshape(-1)
    usable = (p[:, 2] > 0) & p.isfinite().all(1) & v.isfinite().all(1) & rgb.isfinite().all(1) & sc.isfinite().all(1)
    pixels = pixel_coords(p, plan.k)  # (the points not selected get a NaN depth: outside every grid)
    if plan.depth:
        usable &= on_input_depth(p, inputs.depth, plan.k, op.depth_tolerance, op.depth_margin_px, pixels)
    ok = usable & (o >= op.min_opacity) & (p[:, 2] <= op.max_range)
    mapped = usable & (o >= mp.min_opacity) & (p[:, 2] <= mp.max_range)
    floor = inputs.frame[8, 0].float()
    threshold = (op.moving_speed + op.moving_speed_per_m * p[:, 2]) * floor
    return Rows(torch.where(ok[:, None], p, torch.nan), torch.where(ok[:, None], v, 0.0), torch.where(ok, o, 0.0),
                ok, o, rgb, sc, threshold, pixels, torch.where(mapped[:, None], p, torch.nan))


def spread(count: torch.Tensor, slots: int, offset: torch.Tensor) -> torch.Tensor:
    """``[slots]`` int64 ranks spread evenly over ``count`` (0-d) items at ``offset`` in [0, 1) of a stride when
    there are more items than slots (each item at most once), else ``0..slots-1`` (ranks past the count: none)."""
    slot = torch.arange(slots, device=count.device)
    step = count.double() / slots
    return torch.where(count > slots, (offset.double() * step + slot.double() * step).long(), slot)


def fit_sample(inputs: StageInputs, plan: StagePlan, rows: Rows | None = None) -> torch.Tensor:
    """The camera-motion fit (:func:`~nut_ros.perception.ego_motion.solve_static_field`, a result for
    :func:`~nut_ros.perception.ego_motion.field_of`) on ``ego_samples`` of the selected rows, :func:`spread` over
    them at the frame's random offset (all of them when there are fewer; a rank past their count adds nothing);
    ``rows``: the frame's :func:`select_rows` when already known (else selected here)."""
    op = plan.obstacles
    rows = select_rows(inputs, plan) if rows is None else rows
    m = rows.valid.shape[0]
    at = pick(rows.valid, spread(rows.valid.sum(), op.ego_samples, inputs.frame[12, 1]))
    take = at.clamp_max(m - 1)
    weights = torch.where(at < m, rows.weights[take], 0.0)
    return solve_static_field(rows.points[take], rows.velocities[take], weights, rows.threshold[take],
                              op.ego_iterations, op.depth_rate_weight)


def find_moving(inputs: StageInputs, plan: StagePlan,
                rows: Rows | None = None) -> tuple[torch.Tensor, torch.Tensor, Offer]:
    """The frame's download (:func:`unpack`), its selected points in the fixed frame ``[M, 3]`` and its
    :class:`Offer` to the map; ``rows``: the frame's :func:`select_rows` when already known (else selected here)."""
    op = plan.obstacles
    rows = select_rows(inputs, plan) if rows is None else rows
    field, pose = inputs.frame[:4], inputs.frame[4:8]
    change = depth_change(op)
    static = _affine(rows.points, field)
    sweep = (op.flow_error_ratio * torch.linalg.vector_norm(static[:, :2], dim=1) * edge_factor(rows.pixels, plan.k, op)
             * displacement_factor(rows.points, static, inputs.frame[12, 0], plan.k, op))
    # over the ground: minus the camera's static field. The flow's difference of a point's coordinates in the two
    # cameras leaves the point's own displacement in the previous camera's axes: turned into the current camera's,
    # those of the depth rate, the depth shift and the pose that reports the objects
    residual = times3(rows.velocities - static, inputs.frame[9:12].to(static.dtype))
    if plan.compare:
        rot = pose[:3].T.float()
        depth_rate, grids = change.rate(rows.points, inputs.old, rot, pose[3].float(), inputs.frame[8, 1], plan.k,
                                        rows.pixels)
        known = depth_rate.isfinite()
        threshold_z = rows.threshold + sweep * change.slope(rows.points, grids, plan.k)
        # the geometric depth rate replaces the optical z where it is known
        residual = torch.cat([residual[:, :2], torch.where(known, depth_rate, residual[:, 2])[:, None]], 1)
        if plan.shift and op.shift_max > 0:  # the fitted camera motion misplaces the older depths too much
            shift = change.shift_velocity(rows.points, grids, plan.k, op.shift_max, op.shift_min_gain)
            residual = torch.cat([torch.where(shift[:, :1].isfinite(), shift, residual[:, :2]), residual[:, 2:]], 1)
        # a rate clipped at -change_max_speed is a surface now in front of what was seen there (a mover's leading
        # edge): it marks the edge as moving but is not the mover's own depth rate, so the download leaves it out
        measured = residual if op.edge_rates_measured else torch.cat(
            [residual[:, :2], torch.where(depth_rate <= -op.change_max_speed, torch.nan, residual[:, 2])[:, None]], 1)
    else:  # the depth rate is unknown everywhere: nothing is scored as moving
        threshold_z = rows.threshold
        known = torch.zeros_like(rows.valid)
        measured = residual
    moving = _score(rows.points, residual, known, rows.threshold + sweep, threshold_z, plan, rows.pixels) > 1.0
    world = _affine(rows.points, pose)
    packed = _gather(rows, moving, measured, inputs.frame[8, 2], plan)
    selected, n_moving, eligible = packed[:HEADER]  # as unpack reads them
    slots = candidate_slots(packed, rows.points.shape[0], plan.local_map.candidates)
    offered = (torch.arange(slots.shape[0], device=slots.device) < eligible) & frame_trusted(n_moving, selected)
    return packed, world, Offer(_affine(slots[:, :3].double(), pose), offered)


def fit_then_find(inputs: StageInputs, plan: StagePlan) -> tuple[torch.Tensor, torch.Tensor, Offer, torch.Tensor,
                                                                   torch.Tensor]:
    """Without odometry: :func:`fit_sample` and :func:`find_moving` in one call, so on a GPU one graph and one wait.
    ``inputs.frame`` holds the last trusted fitted field (rows 0-3; zero: none), the last pose (4-7) and its
    orientation (13-14); the pair's field, turn and pose come from the fit, on the device, where the fit is trusted
    (:func:`~nut_ros.perception.ego_motion.fit_trusted`), else from the last trusted field, and then no candidate is
    offered (the host skips the frame). Returns :func:`find_moving`'s results, the fit's result followed by the new
    pose's rows (float64 ``[21]``, for the host) and the map's :func:`camera_row` of the new pose."""
    rows = select_rows(inputs, plan)
    fit = fit_sample(inputs, plan, rows)
    trusted = fit_trusted(fit)
    last = inputs.frame[:4]
    offset = torch.where(trusted, fit[:3], last[3])
    omega = torch.where(trusted, fit[3:6], torch.stack([last[1, 2], last[2, 0], last[0, 1]]))  # (rows 0-2: [ω]ₓ^T)
    dt = inputs.frame[12, 0]
    rot, turn_quaternion = fitted_rotation(omega, dt)  # R of T_cur<-prev; the quaternion of R^T
    field = torch.cat([cross_matrix(omega).T, offset[None]])  # as affine_rows([ω]ₓ, c)
    pose = inputs.frame[4:8]  # X @ pose[:3] + pose[3]: R^T rows, t; moved by the inverse of T_cur<-prev
    moved = torch.cat([rot @ pose[:3], (pose[3] - (offset * dt) @ pose[:3])[None]])
    frame = torch.cat([field, moved, inputs.frame[8:9], rot.T, inputs.frame[12:]])
    packed, world, offer = find_moving(inputs._replace(frame=frame), plan, rows)
    orientation = quaternion_product(torch.cat([inputs.frame[13], inputs.frame[14, :1]]), turn_quaternion)
    orientation = torch.where(orientation[3] < 0, -orientation, orientation)  # (w >= 0, as on the host)
    camera = camera_row(torch.cat([orientation[3:], orientation[:3]]), moved[3])
    return (packed, world, Offer(offer.points, offer.offered & trusted), torch.cat([fit, moved.reshape(-1)]),
            camera)


def edge_factor(pixels: tuple[torch.Tensor, torch.Tensor], k: Intrinsics, op: ObstacleParams) -> torch.Tensor:
    """``[M]`` the factor of the flow's error share at each of ``pixels`` (:func:`pixel_coords`):
    ``1 + edge_flow_gain`` on the image's edge, falling linearly to 1 at ``edge_flow_px`` inside it (the flow's
    window is cut by the edge there, and a turning camera brings in what the previous frame did not see)."""
    u, v = pixels
    if op.edge_flow_px <= 0:
        return torch.ones_like(u)
    inside = torch.minimum(torch.minimum(u, k.width - u), torch.minimum(v, k.height - v))
    return 1.0 + op.edge_flow_gain * (1.0 - inside / op.edge_flow_px).clamp(0.0, 1.0)


def displacement_factor(points: torch.Tensor, static: torch.Tensor, pair_interval: torch.Tensor, k: Intrinsics,
                        op: ObstacleParams) -> torch.Tensor:
    """``[M]`` the factor of the flow's error share at each of ``points`` (optical frame) from its static
    displacement over the pair: the image motion of its ``static`` field (``d(u, v)/dt``, perspective exact) times
    ``pair_interval`` (s), in model pixels; 1 up to ``flow_error_knee_px``, then growing by ``flow_error_growth`` per
    knee beyond it, at most ``flow_error_max_factor`` (pairs far apart move the view further than the flow follows;
    the cap keeps a fast turn from hiding every mover)."""
    if op.flow_error_knee_px <= 0 or op.flow_error_growth <= 0:
        return torch.ones_like(points[:, 0])
    x, y, z = points.unbind(1)
    sx, sy, sz = static.to(points.dtype).unbind(1)
    pixels = torch.hypot(k.fx * (sx - x / z * sz), k.fy * (sy - y / z * sz)) / z * pair_interval.to(points.dtype)
    grown = 1.0 + op.flow_error_growth * (pixels / op.flow_error_knee_px - 1.0).clamp_min(0.0)
    return grown.clamp_max(op.flow_error_max_factor).nan_to_num(1.0)


def depth_change(op: ObstacleParams) -> DepthChange:
    """The depth-rate measurement of these settings (its memory starts empty)."""
    return DepthChange(op.change_cell_px, op.change_edge_ratio, op.change_baseline, op.change_max_speed)


def _score(points, residual, known, threshold_xy, threshold_z, plan: StagePlan, pixels=None) -> torch.Tensor:
    """Each Gaussian's ground velocity (averaged over its image cell of ``score_cell_px`` pixels), its image-plane
    components over ``threshold_xy`` and its optical z (weighted by ``depth_rate_weight``) over ``threshold_z``: the
    norm, in units of the moving threshold; 0 where the depth rate is unknown (depth edges, grazing surfaces and
    newly seen space: the flow is unreliable there)."""
    op = plan.obstacles
    ground = residual
    if op.score_cell_px > 1:
        ground = cell_mean(torch.where(known[:, None], points, torch.nan), residual, plan.k, op.score_cell_px,
                           pixels)
    weighted = ground / torch.stack([threshold_xy, threshold_xy, threshold_z / op.depth_rate_weight], 1)
    return torch.where(known, (weighted * weighted).sum(1).sqrt(), 0.0)


def _gather(rows: Rows, moving: torch.Tensor, residual: torch.Tensor, offset: torch.Tensor,
            plan: StagePlan) -> torch.Tensor:
    """The moving rows and the map's candidates as one flat tensor: up to ``candidates`` of the rows the map may take
    (:attr:`Rows.map_points`) outside moving voxels, spread evenly (at the random ``offset`` in [0, 1) of a stride)
    over those eligible when there are more. Slots past a count repeat the last row; :func:`unpack` reads the
    counted ones."""
    mp, m, voxel = plan.local_map, rows.points.shape[0], plan.obstacles.voxel
    n_moving = moving.sum()
    moving_keys = torch.sort(torch.where(moving, voxel_keys(rows.points, voxel), torch.iinfo(torch.int64).max)).values
    keys = voxel_keys(rows.map_points, voxel)
    at = torch.searchsorted(moving_keys, keys).clamp_max(m - 1)
    near_moving = (moving_keys[at] == keys) & (at < n_moving)
    ok = ~near_moving & rows.map_points[:, 2].isfinite()
    eligible = ok.sum()
    ranks = spread(eligible, mp.candidates, offset)
    at = pick(moving, torch.arange(mover_capacity(m), device=keys.device)).clamp_max(m - 1)
    movers = torch.cat([rows.points, residual, rows.weights[:, None]], 1)[at]  # (one gather of all the columns)
    at = pick(ok, ranks).clamp_max(m - 1)
    candidates = torch.cat([rows.map_points, rows.colors, rows.scales, rows.opacities[:, None]], 1)[at]
    header = torch.stack([rows.valid.sum(), n_moving, eligible]).float()
    return torch.cat([header, movers.reshape(-1), candidates.reshape(-1)])


def mover_capacity(rows: int) -> int:
    """Moving rows a download holds: :data:`MAX_MOVING_FRACTION` of the rows (a frame with more moving is not
    trusted, :func:`frame_trusted`)."""
    return int(MAX_MOVING_FRACTION * rows)


@dataclass
class Found:
    """What the host gets back from the device for one frame (numpy, but the candidates)."""

    valid: int  # Gaussians selected
    moving: int  # of them moving
    # the moving ones (points, velocity over the ground, weight), at most mover_capacity of the rows
    movers: tuple[np.ndarray, np.ndarray, np.ndarray]
    # [C, CANDIDATE_COLUMNS] the map's candidates (point, colour, scales, opacity): a view of the packed tensor, on
    # its device
    candidates: torch.Tensor
    eligible: int  # static Gaussians the candidates were picked from
    candidate_points: torch.Tensor  # [C, 3] float64 the candidates' points in the fixed frame (Offer.points)


def downloaded_part(packed: torch.Tensor, rows: int) -> torch.Tensor:
    """The part of a frame's packed tensor (:func:`find_moving`, from a table of ``rows`` rows) the host reads: its
    counts and moving rows."""
    return packed[:HEADER + mover_capacity(rows) * MOVER_COLUMNS]


def unpack(packed: torch.Tensor, rows: int, candidates: int, offer: Offer, host: np.ndarray | None = None) -> Found:
    """The :class:`Found` of a frame's packed tensor and :class:`Offer` (:func:`find_moving`, from a table of
    ``rows`` rows): its counts and moving rows downloaded (one copy: on a GPU, one synchronisation; ``host``: that
    copy, already made, of :func:`downloaded_part`), its candidates left where they are."""
    cap = mover_capacity(rows)
    host = download(downloaded_part(packed, rows)) if host is None else host
    valid, moving, eligible = (int(x) for x in host[:HEADER])
    mover_rows = host[HEADER:].reshape(cap, MOVER_COLUMNS)[:min(moving, cap)]
    candidate_rows = candidate_slots(packed, rows, candidates)
    points, velocities, weights = np.split(mover_rows, (3, 6), axis=1)
    counted = min(eligible, candidates)
    return Found(valid, moving, (points, velocities, weights[:, 0]), candidate_rows[:counted], eligible,
                 offer.points[:counted])


def frame_trusted(moving, selected):
    """Whether a frame's camera motion is trusted: at most :data:`MAX_MOVING_FRACTION` of its ``selected``
    Gaussians are ``moving`` (host numbers, or the download's header on the device, which gives a bool tensor)."""
    return moving <= MAX_MOVING_FRACTION * selected


def candidate_slots(packed: torch.Tensor, rows: int, candidates: int) -> torch.Tensor:
    """``[candidates, CANDIDATE_COLUMNS]`` every map candidate slot of a frame's packed tensor (:func:`find_moving`,
    from a table of ``rows`` rows), a view on its device; the first ``min(eligible, candidates)`` are counted."""
    return packed[HEADER + mover_capacity(rows) * MOVER_COLUMNS:].reshape(candidates, CANDIDATE_COLUMNS)


def on_input_depth(points: torch.Tensor, depth: torch.Tensor, k: Intrinsics, tolerance: float, margin_px: int = 0,
                   pixels: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Whether each point ``[N, 3]`` (camera frame) lies on the input depth image ``depth [h, w]`` (the model's
    camera ``k``, NaN where the sensor gave none; on the points' device): its pixel holds a depth within
    ``tolerance`` (relative) of its own, and no pixel without depth lies within ``margin_px`` of it (a square
    window; the image's own border does not count)."""
    h, w = depth.shape
    hole = ~depth.isfinite()
    if margin_px > 0:
        hole = _near(hole, margin_px)
    held = F.pad(torch.where(hole, torch.nan, depth).reshape(-1), (0, 1), value=torch.nan)
    # pixel centres at whole coordinates (``pixels``: the points' pixel_coords when known)
    cells, _, _ = image_cells(points, replace(k, width=w, height=h), 1, pixels)
    d = held[cells]
    return (points[:, 2] - d).abs() <= tolerance * d


def _near(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """``[h, w]`` whether a true pixel of ``mask`` lies within ``margin`` pixels along both axes (outside the image
    none does): counts over the window along rows, then along the columns of the transposed counts, each a running
    sum along the inner axis (on a GPU a running sum along the outer one cost about 60 µs for 288x512)."""
    n, counts = 2 * margin + 1, mask.int()
    for _ in range(2):
        total = F.pad(counts, (margin + 1, margin)).cumsum(1, dtype=torch.int32)
        counts = (total[:, n:] - total[:, :-n]).t().contiguous()
    return counts > 0
