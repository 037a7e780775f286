"""Measure what the obstacle thresholds must separate, on generated TRAINING scenes (seeds below
``VALIDATION_SEED0``), with the real pipeline and metric depth input.

Per Gaussian (opacity >= ObstacleParams.min_opacity, on a true surface): the speed left after removing the TRUE
camera motion (odometry; depth rate from geometry where known, as the processor does, but before its image-cell
average), for the room and static boxes (noise to reject) and for moving objects (signal), by depth bin; the error
of the robustly fitted camera motion (no odometry) against the true one. With ``--grid``: the whole stage end to
end (precision, recall, static frames without obstacles) over a grid of thresholds; with ``--score``: end to end at
the settings, with and without odometry; with ``--ablate``: that and with one setting changed at a time
(ABLATIONS). ``--set FIELD=VALUE`` overrides ObstacleParams. The defaults in nut_ros/perception/params.py come from
this output on the training scenes. The per-Gaussian table uses the base thresholds (``moving_speed +
moving_speed_per_m · z``; the generated scenes' pairs are ``floor_interval_s`` long).

    .venv/bin/python test/bench/obstacle_tune.py --seeds 0-19 --static-seeds 100-139 [--grid] [--score | --ablate]
"""
from __future__ import annotations

import argparse
import itertools
import platform
import sys
from datetime import datetime, timezone
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from obstacle_common import AMBIGUOUS, BACKGROUND_ID, CACHE, SceneRunner, add_flow_args, gaussian_truth  # noqa: E402

from nut_ros.perception.dense import depth_change  # noqa: E402
from nut_ros.perception.ego_motion import fit_static_field  # noqa: E402
from nut_ros.perception.params import ObstacleParams  # noqa: E402
from nut_ros.train.object_scenes import VALIDATION_SEED0, ObjectSceneConfig  # noqa: E402

DEPTH_BINS = (0, 2, 3, 4, 5, 6, 8)
DEFAULT_FPS = ObjectSceneConfig.fps


def seed_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def param_overrides(items: list[str]) -> ObstacleParams:
    """ObstacleParams with ``FIELD=VALUE`` overrides (values parsed as the default's type; booleans: true / 1)."""
    base = ObstacleParams()
    values = {}
    for item in items:
        name, _, value = item.partition("=")
        kind = type(getattr(base, name))
        values[name] = value.lower() in ("1", "true") if kind is bool else kind(value)
    return replace(base, **values)


def remember(change, points: np.ndarray, pose: np.ndarray, dt: float = 0.0) -> None:
    """``change`` remembers camera-frame ``points`` of the camera at ``pose`` (T_fixed<-camera)."""
    change.remember(torch.from_numpy((points @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)), dt)


def depth_rate(change, points: np.ndarray, pose: np.ndarray, dt: float, k) -> np.ndarray:
    """The geometric depth rate of camera-frame ``points`` (NaN where unknown or nothing is remembered)."""
    compared = change.compared(dt)
    if compared is None:
        return np.full(len(points), np.nan, np.float32)
    rot, trans = (torch.from_numpy(a.astype(np.float32)) for a in (pose[:3, :3], pose[:3, 3]))
    return change.rate(torch.from_numpy(points), compared[0], rot, trans, compared[1], k)[0].numpy()


def scene_rate(fps: float, yaw_rate: float = ObjectSceneConfig.camera_yaw_rate,
               speed: float = ObjectSceneConfig.camera_speed) -> dict:
    """SceneRunner arguments for scenes at ``fps`` frames/s over the default scenes' duration whose camera turns at
    up to ``yaw_rate`` rad/s and moves at up to ``speed`` m/s (cached apart from the default scenes)."""
    base = ObjectSceneConfig()
    if (fps, yaw_rate, speed) == (DEFAULT_FPS, base.camera_yaw_rate, base.camera_speed):
        return {}
    frames = round(base.frames * fps / DEFAULT_FPS)
    name = (f"fps{fps:g}" + ("" if yaw_rate == base.camera_yaw_rate else f"_yaw{yaw_rate:g}")
            + ("" if speed == base.camera_speed else f"_speed{speed:g}"))
    config = ObjectSceneConfig(fps=fps, frames=frames, camera_yaw_rate=yaw_rate, camera_speed=speed)
    return {"config": config, "cache": CACHE / name}


def collect(runner: SceneRunner, seeds: list[int], moving: bool, p: ObstacleParams):
    static_speed, static_z, mov_speed, mov_err, mov_z, fit_err, fit_inl = [], [], [], [], [], [], []
    axis_err, rate_known = [], []
    w = np.array([1.0, 1.0, p.depth_rate_weight])
    for seed in seeds:
        out = runner.results(seed, moving=moving, camera_motion=None if moving else True)
        change = depth_change(p)
        first = out[0][1].gaussians
        remember(change, first.positions[first.opacities >= p.min_opacity], out[0][0].camera_pose)
        for (prev, _), (frame, res) in zip(out[:-1], out[1:]):
            g = res.gaussians
            ok = g.opacities >= p.min_opacity
            pos, vel = g.positions[ok], g.velocities[ok]
            ids, true_vel, field = gaussian_truth(frame, prev, pos, res.pair_interval_s)
            rate = depth_rate(change, pos, frame.camera_pose, res.pair_interval_s, res.intrinsics)
            remember(change, pos, frame.camera_pose, res.pair_interval_s)
            residual = vel - field(pos)  # over the ground, the geometric depth rate where known (as the processor)
            residual[:, 2] = np.where(np.isfinite(rate), rate, residual[:, 2])
            rate_known.append(np.isfinite(rate).mean())
            moving_oids = [o.oid for o in frame.objects if o.moving]
            is_mov = np.isin(ids, moving_oids)
            is_static = (ids != AMBIGUOUS) & ~is_mov
            static_speed.append(np.linalg.norm(residual[is_static] * w, axis=1))
            static_z.append(pos[is_static, 2])
            axis_err.append(np.abs(residual[is_static]))
            mov_speed.append(np.linalg.norm(residual[is_mov] * w, axis=1))
            mov_err.append(np.linalg.norm(residual[is_mov] - true_vel[is_mov], axis=1))
            mov_z.append(pos[is_mov, 2])
            threshold = p.moving_speed + p.moving_speed_per_m * pos[:, 2]
            fit = fit_static_field(pos, vel, g.opacities[ok], threshold, p.ego_iterations, p.depth_rate_weight)
            if fit is not None:
                sel = ids == BACKGROUND_ID
                fit_err.append(np.median(np.linalg.norm(fit(pos[sel]) - field(pos[sel]), axis=1)))
                fit_inl.append(fit.inliers)
    cat = np.concatenate
    return (cat(static_speed), cat(static_z), cat(mov_speed), cat(mov_err), cat(mov_z), np.array(fit_err),
            np.array(fit_inl), cat(axis_err), np.array(rate_known))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-7", help="training scenes with moving objects (range a-b)")
    ap.add_argument("--static-seeds", default="100-103", help="training scenes without moving objects")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS,
                    help="the scenes' frame rate (their length in seconds kept): lower for a CPU node's pair rate")
    ap.add_argument("--yaw-rate", type=float, default=ObjectSceneConfig.camera_yaw_rate,
                    help="the cameras' largest yaw rate (rad/s): higher for a robot turning fast")
    ap.add_argument("--camera-speed", type=float, default=ObjectSceneConfig.camera_speed,
                    help="the cameras' largest speed along each axis (m/s; forward from -0.3 to 1 of it)")
    ap.add_argument("--motion-prior", default="auto", help="PipelineConfig.motion_prior (auto: the model's)")
    add_flow_args(ap)
    ap.add_argument("--grid", action="store_true", help="also score the whole stage end to end over a grid of "
                    "thresholds (odometry mode) on the same training scenes")
    ap.add_argument("--score", action="store_true", help="also score the whole stage end to end at the settings "
                    "(odometry and without)")
    ap.add_argument("--ablate", action="store_true", help="also score the whole stage end to end at the settings "
                    "and with one setting changed at a time (ABLATIONS; odometry and without)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ObstacleParams overrides")
    ap.add_argument("--modes", default="odometry,no-odometry",
                    help="obstacle_eval modes of --score and --ablate (e.g. rgb-odometry: depth from motion)")
    args = ap.parse_args()
    seeds, static_seeds = seed_range(args.seeds), seed_range(args.static_seeds)
    if max(seeds + static_seeds) >= VALIDATION_SEED0:
        sys.exit(f"tuning seeds must be below {VALIDATION_SEED0} (validation set)")
    p = param_overrides(args.set)
    runner = SceneRunner(args.model, motion_prior=args.motion_prior, flow_preset=args.flow_preset,
                         flow_check=args.flow_check,
                         **scene_rate(args.fps, args.yaw_rate, args.camera_speed))
    print(f"# obstacle_tune {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, model {args.model}, "
          f"depth input, seeds {args.seeds} + static {args.static_seeds}, {args.fps:g} frames/s, yaw up to "
          f"{args.yaw_rate:g} rad/s, moving up to {args.camera_speed:g} m/s")
    s_speed, s_z, m_speed, m_err, m_z, fit_err, fit_inl, axis_err, known = collect(runner, seeds, True, p)
    s2 = collect(runner, static_seeds, False, p)
    axis_err = np.concatenate([axis_err, s2[7]])
    print(f"static Gaussians' velocity error per optical axis (true odometry), p50 "
          f"{np.percentile(axis_err, 50, 0).round(3)}, p90 {np.percentile(axis_err, 90, 0).round(3)} m/s: "
          f"x/z noise ratio (p90) {np.percentile(axis_err[:, 0], 90) / np.percentile(axis_err[:, 2], 90):.2f} "
          f"(depth_rate_weight {p.depth_rate_weight}); depth rate from geometry known for "
          f"{np.mean(known):.2f} of the Gaussians")
    s_speed, s_z = np.concatenate([s_speed, s2[0]]), np.concatenate([s_z, s2[1]])
    fit_err, fit_inl = np.concatenate([fit_err, s2[5]]), np.concatenate([fit_inl, s2[6]])
    print(f"static Gaussians: {s_speed.size}, moving: {m_speed.size}")
    print("speeds below: residual after the true camera motion, optical z weighted by depth_rate_weight")
    print("depth bin | static residual speed p50 / p99 / p99.9 | moving speed p10 / p50 | moving velocity error p50 "
          "| threshold | static above | moving above")
    for lo, hi in zip(DEPTH_BINS[:-1], DEPTH_BINS[1:]):
        s = s_speed[(s_z >= lo) & (s_z < hi)]
        m = m_speed[(m_z >= lo) & (m_z < hi)]
        e = m_err[(m_z >= lo) & (m_z < hi)]
        thr = p.moving_speed + p.moving_speed_per_m * (lo + hi) / 2
        if s.size and m.size:
            print(f"{lo}-{hi} m | {np.percentile(s, 50):.3f} / {np.percentile(s, 99):.3f} / "
                  f"{np.percentile(s, 99.9):.3f} | {np.percentile(m, 10):.3f} / {np.percentile(m, 50):.3f} | "
                  f"{np.percentile(e, 50):.3f} | {thr:.2f} | {np.mean(s > thr):.4f} | {np.mean(m > thr):.3f}")
    print(f"fitted camera motion (no odometry) vs true, median per-Gaussian field error over frames: "
          f"p50 {np.percentile(fit_err, 50):.3f} m/s, p90 {np.percentile(fit_err, 90):.3f}, "
          f"max {fit_err.max():.3f}; inlier weight p10 {np.percentile(fit_inl, 10):.2f}")
    if args.grid:
        grid(runner, seeds, static_seeds, p)
    if args.score or args.ablate:
        ablate(runner, seeds, static_seeds, p, ABLATIONS if args.ablate else {}, args.modes.split(","))


GRID = {"moving_speed": (0.3, 0.5, 0.7), "moving_speed_per_m": (0.05, 0.1, 0.15), "min_cluster_gaussians": (25, 50)}


ABLATIONS = {  # one change at a time against the settings
    "before (per-Gaussian test, 1-frame depth rate, no band, velocity from flow, 5 hits)": dict(
        moving_speed=0.3, moving_speed_per_m=0.08, score_cell_px=1, change_baseline=1, change_max_speed=np.inf,
        depth_band=0.0, confirm_hits=5, min_travel=0.2, max_misses=4, report_misses=1, velocity_std=0.3,
        min_agreement=-1.0, min_width=0.25, shift_max=0, depth_tolerance=0.0, flow_error_ratio=0.0, box_trim=0.0,
        early_hits=5, min_cluster_depth=np.inf, edge_rates_measured=True, border_px=0.0, birth_depth_rate=np.inf),
    "before the real-footage noise model (0.04/m, no flow_error_ratio, no input-depth filter)": dict(
        moving_speed_per_m=0.04, flow_error_ratio=0.0, depth_tolerance=0.0),
    "before the trimmed boxes and early confirmation (min-max boxes, 3 hits, shift gain 0.065)": dict(
        box_trim=0.0, early_hits=3, shift_min_gain=0.065),
    "border_px 0 (image edge ignored)": dict(border_px=0.0),
    "birth_depth_rate inf (no track starts confirmed)": dict(birth_depth_rate=np.inf),
    "birth_depth_rate 0.5": dict(birth_depth_rate=0.5),
    "min_cluster_depth inf (min_cluster_gaussians at every depth)": dict(min_cluster_depth=np.inf),
    "min_cluster_depth 3.0": dict(min_cluster_depth=3.0),
    "edge_rates_measured (clipped depth rates in the objects' velocities)": dict(edge_rates_measured=True),
    "box_trim 0 (min-max boxes)": dict(box_trim=0.0),
    "early_hits 3 (off)": dict(early_hits=3),
    "early_agreement 0.7": dict(early_agreement=0.7),
    "shift_min_gain 0.065": dict(shift_min_gain=0.065),
    "shift_min_gain 0.1": dict(shift_min_gain=0.1),
    "flow_error_ratio 0 (off)": dict(flow_error_ratio=0.0),
    "flow_error_ratio 0.15": dict(flow_error_ratio=0.15),
    "moving_speed_per_m 0.03": dict(moving_speed_per_m=0.03),
    "moving_speed_per_m 0.04": dict(moving_speed_per_m=0.04),
    "score_cell_px 1": dict(score_cell_px=1),
    "moving 0.3 + 0.08/m": dict(moving_speed=0.3, moving_speed_per_m=0.08),
    "change_baseline 1": dict(change_baseline=1),
    "change_baseline 5": dict(change_baseline=5),
    "change_max_speed inf": dict(change_max_speed=np.inf),
    "depth_band 0 (off)": dict(depth_band=0.0),
    "depth_band 0.3": dict(depth_band=0.3),
    "min_width 0.25": dict(min_width=0.25),
    "confirm_hits 2": dict(confirm_hits=2),
    "confirm_hits 4": dict(confirm_hits=4),
    "min_travel 0.1": dict(min_travel=0.1),
    "shift_max 0 (off)": dict(shift_max=0),
    "shift_max 2": dict(shift_max=2),
    "min_agreement -1 (off)": dict(min_agreement=-1.0),
    "min_agreement 0.3": dict(min_agreement=0.3),
    "report_misses 3": dict(report_misses=3),
    "velocity_std 0.3": dict(velocity_std=0.3),
}


def ablate(runner: SceneRunner, seeds: list[int], static_seeds: list[int], base: ObstacleParams,
           changes: dict, modes=("odometry", "no-odometry")) -> None:
    """End-to-end scores at ``base`` and with each of ``changes`` applied (training scenes)."""
    from obstacle_eval import run_mode  # noqa: E402 (imports this module's seed_range)

    print("| change | mode | precision | recall | pos err | vel err | static 0-obstacle frames | cost ms p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, change in [("(settings)", {})] + list(changes.items()):
        p = replace(base, **change)
        for mode in modes:
            m = run_mode(runner, mode, seeds, True, 300, p).summary()
            s = run_mode(runner, mode, static_seeds, False, 300, p).summary()
            print(f"| {name} | {mode} | {m['precision']:.3f} | {m['recall']:.3f} | {m['position_error_m']:.3f} | "
                  f"{m['velocity_error_mps']:.3f} | {s['zero_obstacle_frames']:.3f} | {m['cost_ms_p50']:.1f} |",
                  flush=True)


def grid(runner: SceneRunner, seeds: list[int], static_seeds: list[int], base: ObstacleParams) -> None:
    """End-to-end precision / recall / static-scene zero-obstacle fraction over GRID (training scenes, odometry)."""
    from obstacle_eval import run_mode  # noqa: E402 (imports this module's seed_range)

    print("| moving_speed | per_m | min_cluster | mode | precision | recall | vel err | static 0-obstacle frames |")
    for values in itertools.product(*GRID.values()):
        p = replace(base, **dict(zip(GRID, values)))
        for mode in ("odometry",):
            m = run_mode(runner, mode, seeds, True, 300, p).summary()
            s = run_mode(runner, mode, static_seeds, False, 300, p).summary()
            print(f"| {' | '.join(map(str, values))} | {mode} | {m['precision']:.3f} | {m['recall']:.3f} | "
                  f"{m['velocity_error_mps']:.3f} | {s['zero_obstacle_frames']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
