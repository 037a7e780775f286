"""The perception stage in torch: the same outputs as the numpy stage it replaced (test/fixtures/
perception_expected.json, recorded by the numpy stage at commit 55163bd on the scenes of ``record``, run here with
the settings that turn the later noise model off: ``BEFORE_NOISE_MODEL``; the obstacles' box sizes recorded again
when boxes kept their extents along the camera's axes instead of passing through the fixed frame's, and the key-frame
run again when its camera-motion fit changed (``pose_step`` inverting fitted fields exactly; the fit's sample spread
evenly over the selected rows instead of drawn at random, which moved the poses by up to 1.1e-3 and the map by up to
3 % of its Gaussians) and when the synthetic scenes' movers got their measured velocity in the previous camera's axes
(poses moved by 2e-4; the odometry run, whose stage turns that into the current camera's axes, did not change), the
pieces against their formulas written out, and CUDA against CPU. Those re-recordings make the key-frame half and the
box sizes a record of the torch stage, not of the numpy one, so that test also holds every run to the scene's truth
(poses, the obstacles' positions and velocities)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nut_ros.core.rotations import rotation_angle
from nut_ros.perception import MapParams, ObstacleParams, PerceptionProcessor
from nut_ros.perception.dense import StageInputs
from nut_ros.perception.depth_change import cell_mean, image_cells
from nut_ros.perception.tensors import Uploader, pick
from perception_synth import K, scene_stream

FIXTURE = Path(__file__).parent / "fixtures" / "perception_expected.json"
MOVERS = ((-1.0, 0.5, 3.0, 0.8, 0.0, 0.3), (1.5, 0.3, 4.0, -0.6, 0.0, -0.2))
# the settings at which the stage behaves as it did when the fixture was recorded: no input-depth filter, no
# share of the camera's apparent motion in the thresholds, the flow's former noise floor, floors never scaled,
# min-max boxes, tracks confirmed at confirm_hits only, the former depth-shift gain, min_cluster_gaussians at every
# depth, leading edges' clipped depth rates counted in the objects' velocities
BEFORE_NOISE_MODEL = dict(depth_tolerance=0.0, flow_error_ratio=0.0, moving_speed_per_m=0.04, floor_interval_s=1e-9,
                          box_trim=0.0, early_hits=ObstacleParams.confirm_hits, shift_min_gain=0.065,
                          min_cluster_depth=np.inf, edge_rates_measured=True)


class Recorder(PerceptionProcessor):
    """The processor, keeping the moving Gaussians it clustered in the last frame."""

    def _objects(self, points, residual, weights, k):
        self.seen = np.asarray(points, np.float64)
        return super()._objects(points, residual, weights, k)


def record(odometry: bool, to_device=None, cuda_graphs: bool = True, with_depth: bool = False,
           processor: type = Recorder, compile: bool = False, made: list | None = None,
           local_map: MapParams = MapParams(candidates=2000), depth_kept=None, **settings) -> list[dict]:
    """Per frame of a 24-frame scene with two movers (thinned to 8000 rows, 2000 map candidates: the random
    subsets are drawn; ObstacleParams ``settings``): the moving Gaussians, pose, obstacles and map. ``with_depth``:
    each frame carries a metric input depth image (:func:`depth_image`); ``processor``: the class run (``compile``
    passed to it; ``made`` gets the processor); ``local_map``: the map's settings; ``depth_kept``: a function of
    the depth image whose result goes on the cloud table's device, as the pipeline leaves it there
    (``StepResult.device_depth``)."""
    params = ObstacleParams(**{"max_gaussians": 8000, "ego_samples": 1500, **settings})
    proc = processor(params, local_map, seed=11, cuda_graphs=cuda_graphs, compile=compile)
    if made is not None:
        made.append(proc)
    frames = []
    for res, pose, _ in scene_stream(24, movers=MOVERS, n_room=24000, n_blob=500, seed=7):
        if to_device is not None:
            res.device_cloud = to_device(res.gaussians)
        if with_depth:
            res.input_depth = depth_image(res.gaussians.positions)
            if depth_kept is not None:
                res.device_depth = torch.as_tensor(depth_kept(res.input_depth)).to(res.device_cloud.device)
        proc.seen = np.zeros((0, 3))
        out = proc.update(res, pose if odometry else None)
        frames.append({"moving": out.moving_gaussians, "moving_sum": proc.seen.sum(0).tolist(),
                       "pose": out.camera_pose.tolist(), "map_count": proc.map.count,
                       "map_sum": proc.map.field("positions").astype(np.float64).sum(0).tolist(),
                       "obstacles": [[*o.position.tolist(), *o.velocity.tolist(), *o.size.tolist()]
                                     for o in out.obstacles.obstacles],
                       "skipped": proc.frames_skipped})
    return frames


def depth_image(points: np.ndarray) -> np.ndarray:
    """The nearest depth of ``points`` per pixel of ``K`` (pixels where none falls take their nearest pixel's), with
    a hole of 12x12 pixels (NaN) in the middle."""
    from scipy.ndimage import distance_transform_edt

    z = points[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u, v = np.rint(K.fx * points[:, 0] / z + K.cx), np.rint(K.fy * points[:, 1] / z + K.cy)
    ok = (z > 0) & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)
    depth = np.full((K.height, K.width), np.inf, np.float32)
    np.minimum.at(depth, (v[ok].astype(int), u[ok].astype(int)), z[ok])
    nearest = distance_transform_edt(~np.isfinite(depth), return_distances=False, return_indices=True)
    depth = depth[tuple(nearest)]
    depth[K.height // 2 - 6:K.height // 2 + 6, K.width // 2 - 6:K.width // 2 + 6] = np.nan
    return depth


def assert_same(got: list[dict], want: list[dict], tol: float):
    for j, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a["moving"] == b["moving"] and a["map_count"] == b["map_count"], j
        assert a["skipped"] == b["skipped"] and len(a["obstacles"]) == len(b["obstacles"]), j
        for key in ("moving_sum", "pose", "map_sum", "obstacles"):
            np.testing.assert_allclose(np.array(a[key], float), np.array(b[key], float), rtol=tol, atol=tol,
                                       err_msg=f"frame {j} {key}")


@pytest.mark.parametrize("mode", ["odometry", "keyframe"])
def test_torch_stage_on_the_cpu_reproduces_the_numpy_stage(mode):
    want = json.loads(FIXTURE.read_text())[mode]
    assert sum(f["moving"] for f in want) > 4000 and sum(len(f["obstacles"]) for f in want) > 30  # not trivial
    # (the map then took only Gaussians within the obstacles' max_range)
    got = record(mode == "odometry", local_map=MapParams(candidates=2000, max_range=ObstacleParams.max_range),
                 **BEFORE_NOISE_MODEL)
    assert_same(got, want, 1e-5)
    # the record is made again when the stage changes on purpose (the docstring), so the outputs are also held to the
    # scene's truth: the key-frame run's fitted poses follow the camera (which turns 11 degrees and moves 0.28 m),
    # and every obstacle sits on a mover (the first camera's frame is the world frame) with its velocity
    position_err, velocity_err = [], []
    for frame, (_, pose, truths) in zip(got, scene_stream(24, movers=MOVERS, n_room=24000, n_blob=500, seed=7)):
        fitted = np.array(frame["pose"])
        assert np.linalg.norm(fitted[:3, 3] - pose[:3, 3]) < 0.01
        assert np.degrees(rotation_angle(fitted[:3, :3].T @ pose[:3, :3])) < 0.3
        for o in np.array(frame["obstacles"]).reshape(-1, 9):
            at, moving = pose[:3, :3] @ o[:3] + pose[:3, 3], pose[:3, :3] @ o[3:6]
            nearest = min(truths, key=lambda t: np.linalg.norm(at - t[0]))
            position_err.append(np.linalg.norm(at - nearest[0]))
            velocity_err.append(np.linalg.norm(moving - nearest[1]))
    assert max(position_err) < 0.15 and np.median(velocity_err) < 0.15


def cloud_table(cloud, device):
    fields = (cloud.positions, cloud.scales, cloud.rotations, cloud.opacities[:, None], cloud.colors,
              cloud.velocities)
    return torch.as_tensor(np.concatenate(fields, 1), device=device)


def test_the_device_table_gives_what_the_numpy_cloud_gives():
    want = record(True)
    assert_same(record(True, lambda cloud: cloud_table(cloud, "cpu")), want, 0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_the_depth_the_pipeline_kept_on_the_device_gives_what_the_host_depth_gives(device):
    """The input depth read where the pipeline left it (``StepResult.device_depth``, no upload) against the same
    depth uploaded from the host: the same frames (on the GPU, sums in another order as between any two runs)."""
    def table(cloud):
        return cloud_table(cloud, device)

    kept = record(True, table, with_depth=True, depth_kept=np.copy)
    uploaded = record(True, table, with_depth=True)
    assert sum(f["moving"] for f in uploaded) > 1000 and sum(len(f["obstacles"]) for f in uploaded) > 10
    holes = record(True, table, with_depth=True, depth_kept=lambda depth: np.full_like(depth, np.nan))
    assert sum(f["moving"] for f in holes) == 0  # (the kept depth is the one read: no Gaussian lies on holes)
    if device == "cpu":
        assert kept == uploaded
    else:
        assert_close(kept, uploaded, 0.0005)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("odometry", [True, False])
def test_cuda_and_cpu_agree(odometry):
    """Same inputs on the GPU (the cloud table there, as the pipeline leaves it) and on the CPU: the moving tests
    differ only where a score sits on its threshold within rounding (sums in another order)."""
    assert_close(record(odometry, lambda cloud: cloud_table(cloud, "cuda")), record(odometry))


def shrinking(device: str):
    """A cloud-to-table function whose tables lose 700 more rows frame after frame, back to all every fifth."""
    frames = iter(range(1000))
    return lambda cloud: cloud_table(cloud, device)[700 * (next(frames) % 5):]


def assert_close(got: list[dict], want: list[dict], moving_share: float = 0.002):
    """Two runs whose per-cell sums were added in another order: moving counts within ``moving_share`` in all,
    the same obstacles within 2 cm, poses within 1e-4, map counts within 1 %."""
    moving_want, moving_got = np.array([f["moving"] for f in want]), np.array([f["moving"] for f in got])
    assert np.abs(moving_want - moving_got).sum() <= moving_share * moving_want.sum()
    assert [len(f["obstacles"]) for f in want] == [len(f["obstacles"]) for f in got]
    for a, b in zip(want, got):
        np.testing.assert_allclose(np.array(a["obstacles"]).reshape(-1, 9), np.array(b["obstacles"]).reshape(-1, 9),
                                   atol=0.02)
        np.testing.assert_allclose(a["pose"], b["pose"], atol=1e-4)
        assert abs(a["map_count"] - b["map_count"]) <= 0.01 * max(a["map_count"], 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("odometry, with_depth", [(True, False), (True, True), (False, True)])
def test_cuda_graphs_replay_what_the_eager_stage_computes(odometry, with_depth):
    """The dense stage replayed as CUDA graphs (NaN-padded to ``max_gaussians`` rows) against the same stage
    launched op by op on the GPU, with a cloud whose size changes every frame (room points dropped): the per-cell
    sums use atomic adds (their order, so the last bits, differ between runs)."""
    eager = record(odometry, shrinking("cuda"), cuda_graphs=False, with_depth=with_depth)
    graphed = record(odometry, shrinking("cuda"), cuda_graphs=True, with_depth=with_depth)
    assert sum(f["moving"] for f in eager) > 1000 and sum(len(f["obstacles"]) for f in eager) > 10
    assert_close(graphed, eager, 0.0005)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("odometry", [True, False])
def test_compiled_cuda_graphs_replay_what_the_eager_stage_computes(odometry):
    """``compile`` on the GPU: the graphs replay the compiled (fused) dense functions; against the stage launched op by
    op, the same bounds as the eager graphs (sums in another order)."""
    eager, made = record(odometry, lambda cloud: cloud_table(cloud, "cuda"), cuda_graphs=False, with_depth=True), []
    compiled = record(odometry, lambda cloud: cloud_table(cloud, "cuda"), with_depth=True, compile=True, made=made)
    assert made[0].compile_error is None, made[0].compile_error
    assert sum(f["moving"] for f in eager) > 1000 and sum(len(f["obstacles"]) for f in eager) > 10
    assert_close(compiled, eager, 0.0005)


class GraphPath(Recorder):
    """The processor taking its GPU code path on the CPU: rows NaN-padded to ``max_gaussians``, the dense functions
    called as its CUDA graphs call them (known results computed again), the camera-motion fit's sample drawn on the
    host among the downloaded count of selected rows and fitted as its graph fits it."""

    def _graph_dense(self):
        self._graphed = {fn: lambda *inputs, fn=dense: fn(StageInputs(*inputs), self._plan)
                         for fn, dense in self._dense.items()}

    def _graphs(self, like):
        return True


@pytest.mark.parametrize("odometry, samples", [(True, 1500), (False, 1500), (False, 9000)])
def test_the_graphed_code_path_gives_what_the_cpu_path_gives(odometry, samples):
    """The host side of the GPU path (padding, the graphed functions' inputs, the map offered every candidate slot
    before the download) run on the CPU against the CPU path: the same, also with a fit sample of 9000 of at most
    8000 rows (ranks past the count add nothing)."""
    want = record(odometry, with_depth=True, ego_samples=samples)
    got = record(odometry, with_depth=True, processor=GraphPath, ego_samples=samples)
    assert sum(f["moving"] for f in want) > 1000 and sum(len(f["obstacles"]) for f in want) > 10
    assert sum(f["skipped"] for f in want) == 0 and want[-1]["map_count"] > 1000
    assert got == want


def test_the_graphed_code_path_pads_a_cloud_whose_size_changes_as_the_cpu_path_reads_it():
    """The GPU path's padded table (kept across frames, its rows past the frame's set to NaN again) with a cloud that
    shrinks and grows frame by frame: the same as the CPU path, which does not pad."""
    want = record(True, shrinking("cpu"), with_depth=True)
    got = record(True, shrinking("cpu"), with_depth=True, processor=GraphPath)
    assert sum(f["moving"] for f in want) > 1000 and sum(len(f["obstacles"]) for f in want) > 10
    assert got == want


@pytest.mark.parametrize("odometry, graphs", [(True, 2), (False, 2)])
def test_the_compiled_dense_stage_gives_what_the_eager_one_gives(odometry, graphs):
    """``compile``: the dense functions through torch.compile, on the GPU's code path (fixed shapes), here on the CPU:
    one graph per plan, no graph break, and the stage's outputs as the eager functions' (fused sums round
    differently). With odometry find_moving's two plans (nothing compared yet, compared); without, those of
    fit_then_find (the camera-motion fit inside)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    want, made = record(odometry, with_depth=True, processor=GraphPath), []
    got = record(odometry, with_depth=True, processor=GraphPath, compile=True, made=made)
    assert not counters["graph_break"] and made[0].compile_error is None
    assert counters["stats"]["unique_graphs"] == graphs
    assert sum(f["moving"] for f in want) > 1000 and sum(len(f["obstacles"]) for f in want) > 10
    assert_close(got, want, 0.0005)


def test_a_failing_compiler_leaves_the_stage_eager_with_the_reason(monkeypatch):
    def broken(fn, **_):
        def call(*args):  # as dynamo reports a backend's failure: the backend's own error inside
            raise torch._dynamo.exc.BackendCompilerFailed(fn, RuntimeError("no working\ncompiler here"), None)
        return call

    monkeypatch.setattr(torch, "compile", broken)
    want, made = record(True, with_depth=True, processor=GraphPath), []
    assert record(True, with_depth=True, processor=GraphPath, compile=True, made=made) == want
    assert made[0].compile_error == "RuntimeError: no working compiler here"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("odometry", [True, False])
def test_the_graphed_stage_waits_for_the_device_once_per_frame(odometry, monkeypatch):
    """On a GPU with CUDA graphs: one wait per frame, on the event behind the host's download (the map's insertion
    queued after it is not waited for), and no synchronising call; without odometry too, as the camera-motion fit runs
    on the device inside the same graph (dense.fit_then_find)."""
    events = []
    real = torch.cuda.Event.synchronize
    monkeypatch.setattr(torch.cuda.Event, "synchronize", lambda self: events.append(1) or real(self))
    proc = PerceptionProcessor(ObstacleParams(max_gaussians=8000), MapParams(candidates=2000), seed=0)
    for j, (res, pose, _) in enumerate(scene_stream(8, movers=MOVERS)):
        res.device_cloud = cloud_table(res.gaussians, "cuda")
        events.clear()
        if j:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = proc.update(res, pose if odometry else None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if j > 2:  # (the frames before capture the stream's graphs: a capture synchronises)
            assert not any("synchronizing CUDA operation" in str(w.message) for w in caught), j
            assert len(events) == 1 and out.moving_gaussians >= 0, j


def test_image_cells_and_cell_mean_follow_their_formulas():
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-3, 3, 3000), rng.uniform(-2, 2, 3000), rng.uniform(-1, 6, 3000)])
    pts[:5] = np.nan
    pts = pts.astype(np.float32)
    values = rng.normal(size=(3000, 3)).astype(np.float32)
    cells, inside, n = (x.numpy() if torch.is_tensor(x) else x for x in image_cells(torch.from_numpy(pts), K, 8))
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.floor((K.fx * pts[:, 0] / pts[:, 2] + K.cx + 0.5) / 8)
        v = np.floor((K.fy * pts[:, 1] / pts[:, 2] + K.cy + 0.5) / 8)
    gw, gh = -(-K.width // 8), -(-K.height // 8)
    want_inside = (pts[:, 2] > 0) & (u >= 0) & (u < gw) & (v >= 0) & (v < gh)
    assert n == gw * gh and np.array_equal(inside, want_inside) and not inside[:5].any()
    assert np.array_equal(cells[inside], (v * gw + u)[inside].astype(np.int64)) and np.all(cells[~inside] == n)
    out = cell_mean(torch.from_numpy(pts), torch.from_numpy(values), K, 8).numpy()
    for c in np.unique(cells[inside])[:20]:
        same = cells == c
        np.testing.assert_allclose(out[same], np.broadcast_to(values[same].mean(0), (same.sum(), 3)), atol=1e-6)
    assert np.array_equal(out[~inside], values[~inside])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_an_uploader_gives_each_array_in_the_dtype_asked_while_reusing_its_buffer(device):
    """Arrays uploaded one after another without waiting (behind a long queue of device work on a GPU, so a buffer
    reused too early would show): each arrives as it was, in the dtype asked (default: the reference tensor's)."""
    like = torch.zeros((2048, 2048) if device == "cuda" else (4, 4), device=device)
    for _ in range(20):
        like = like @ like / 2048  # queued work ahead of the copies
    up = Uploader()
    arrays = [np.random.default_rng(i).normal(size=(7, 3)) for i in range(50)]
    got = [up(a, like, torch.float64) for a in arrays] + [up(arrays[0], like)]
    for a, t in zip(arrays, got):
        assert t.device.type == device and t.dtype == torch.float64 and np.array_equal(t.cpu().numpy(), a)
    assert got[-1].dtype == torch.float32 and np.array_equal(got[-1].cpu().numpy(), arrays[0].astype(np.float32))


def test_pick_finds_the_rows_of_given_ranks_without_compacting():
    mask = torch.tensor([False, True, True, False, True, False])
    assert pick(mask, torch.tensor([0, 1, 2, 3, 7])).tolist() == [1, 2, 4, 6, 6]  # past the end: len(mask)
    assert pick(torch.zeros(0, dtype=torch.bool), torch.tensor([0, 1])).tolist() == [0, 0]


@pytest.mark.parametrize("odometry, most", [(True, 1), (False, 2)])
def test_downloads_per_frame(odometry, most, monkeypatch):
    """Every device-to-host copy of the stage goes through ``download``: one per frame with odometry; without, the
    fit's result adds one (on a GPU also the count of selected rows, among which the host draws the fit's sample)."""
    import nut_ros.perception.dense as dense
    import nut_ros.perception.ego_motion as ego
    import nut_ros.perception.local_map as local_map
    import nut_ros.perception.processor as processor

    calls = []
    for module in (processor, ego, dense, local_map):
        real = module.download
        monkeypatch.setattr(module, "download", lambda t, real=real: calls.append(1) or real(t))
    proc = PerceptionProcessor(ObstacleParams(ego_samples=1000), seed=0)
    per_frame = []
    for res, pose, _ in scene_stream(8, movers=MOVERS[:1]):
        calls.clear()
        proc.update(res, pose if odometry else None)
        per_frame.append(len(calls))
    assert max(per_frame[1:]) == most and per_frame[0] == 0  # the first frame of a stream has no motion


def test_the_cpu_stage_runs_on_one_thread_and_gives_the_others_back(monkeypatch):
    seen = []
    real = PerceptionProcessor._update
    monkeypatch.setattr(PerceptionProcessor, "_update", lambda self, *a: seen.append(torch.get_num_threads())
                        or real(self, *a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        proc = PerceptionProcessor(seed=0)
        for res, pose, _ in scene_stream(3, movers=()):
            proc.update(res, pose)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("samples, offset", [(16, 0.0), (16, 0.73), (25, 0.5), (53, 0.2), (80, 0.9)])
def test_the_fit_sample_takes_each_spread_row_once(samples, offset):
    """``fit_sample`` (the camera-motion fit as its CUDA graph runs it) on ``samples`` of the 53 selected rows, spread
    at the frame's random offset: the same fit as on exactly those rows, each once; with more samples than rows,
    on all of them (the ranks past the count add nothing, though they read the last row, which is selected)."""
    from nut_ros.perception.dense import StagePlan, affine_rows, fit_sample, frame_tensor, select_rows
    from nut_ros.perception.ego_motion import solve_static_field
    from nut_ros.perception.params import MapParams
    from nut_ros.pipeline.types import CLOUD_COLUMNS

    rng = np.random.default_rng(3)
    table = np.zeros((60, 17), np.float32)
    table[:, CLOUD_COLUMNS["positions"]] = np.column_stack([rng.uniform(-2, 2, 60), rng.uniform(-1, 1, 60),
                                                            rng.uniform(1, 5, 60)])
    table[:, CLOUD_COLUMNS["velocities"]] = rng.normal(0, 0.3, (60, 3))
    table[:, CLOUD_COLUMNS["opacities"]] = 1.0
    table[:7, CLOUD_COLUMNS["opacities"]] = 0.0  # not selected
    rows = torch.from_numpy(table)
    still, at_origin = affine_rows(np.zeros((3, 3)), np.zeros(3)), affine_rows(np.eye(3), np.zeros(3))
    frame = torch.from_numpy(frame_tensor(still, at_origin, 1.0, 0.0, 0.0, fit_offset=offset))
    op = ObstacleParams(ego_samples=samples)
    plan = StagePlan(op, MapParams(), K, False, False, False)
    unread = rows[:1, :3]
    got = fit_sample(StageInputs(rows, unread[:, :1], frame, unread), plan)
    sel = select_rows(StageInputs(rows, unread[:, :1], frame, unread), plan)
    # by hand: rank floor((offset + i) * 53 / samples) among the selected, i < samples, when there are more rows
    drawn = (np.floor((offset + np.arange(samples)) * 53 / samples).astype(int) if samples < 53
             else np.arange(53))
    assert np.unique(drawn).size == drawn.size and sel.valid[-1]
    at = torch.nonzero(sel.valid)[:, 0][torch.from_numpy(drawn)]
    want = solve_static_field(sel.points[at], sel.velocities[at], sel.weights[at], sel.threshold[at],
                              op.ego_iterations, op.depth_rate_weight)
    assert got[7] == drawn.size
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("trusted", [True, False])
def test_the_fit_and_the_search_in_one_call_give_what_they_give_apart(trusted, monkeypatch):
    """``fit_then_find`` (without odometry: the camera-motion fit, the pose moved on the device, the moving
    Gaussians) against ``fit_sample``, the host's field, pose step and pose, then ``find_moving``; where the fit is not
    trusted, the pose moves by the last trusted field and no candidate is offered."""
    from nut_ros.core.rotations import matrix_to_quaternion
    from nut_ros.perception.dense import StagePlan, affine_rows, find_moving, fit_sample, fit_then_find, frame_tensor
    from nut_ros.perception.ego_motion import MotionField, field_of, fit_trusted, pose_step
    from nut_ros.perception.local_map import camera_row

    if not trusted:
        monkeypatch.setattr("nut_ros.perception.ego_motion.MIN_INLIERS", 1.1)  # no fit explains that much
    (before, prev, _), (res, _, _) = list(scene_stream(3, movers=MOVERS, n_room=6000, n_blob=300, seed=7))[1:]
    proc = PerceptionProcessor(ObstacleParams(max_gaussians=8000, ego_samples=1500), MapParams(candidates=500))
    inputs = proc._inputs(res)
    plan = StagePlan(proc.op.for_motion(res.motion_prior), proc.mp, res.intrinsics, False, True, False)
    dt = res.pair_interval_s
    seen = before.gaussians.positions.astype(np.float64)  # the compared frame (the last), in the fixed frame
    old = torch.from_numpy((seen @ prev[:3, :3].T + prev[:3, 3]).astype(np.float32))
    w = np.array([0.05, -0.3, 0.1])
    last = MotionField(np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]), np.array([0.2, 0.0, -0.1]))

    def framed(field, pose, turn=np.eye(3), orientation=(0.0, 0.0, 0.0, 1.0)):
        return inputs._replace(old=old, frame=torch.from_numpy(frame_tensor(
            affine_rows(field.matrix, field.offset), affine_rows(pose[:3, :3], pose[:3, 3]), 1.0, dt, 0.25, turn,
            dt, 0.6, orientation)))

    fit = fit_sample(framed(MotionField.zero(), prev), plan).numpy()
    assert bool(fit_trusted(fit)) == trusted
    field = field_of(fit) if trusted else last
    step = pose_step(field, dt)
    pose = prev @ np.linalg.inv(step)
    packed, world, offer = find_moving(framed(field, pose, step[:3, :3].T), plan)
    got = fit_then_find(framed(last, prev, orientation=matrix_to_quaternion(prev[:3, :3])), plan)
    torch.testing.assert_close(got[3][:9].numpy(), fit, rtol=0, atol=0)
    np.testing.assert_allclose(got[3][9:].numpy().reshape(4, 3), affine_rows(pose[:3, :3], pose[:3, 3]), atol=1e-12)
    want_camera = camera_row(np.roll(matrix_to_quaternion(pose[:3, :3]), 1), pose[:3, 3]).astype(np.float32)
    np.testing.assert_allclose(got[4].numpy(), want_camera, atol=1e-6)
    torch.testing.assert_close(got[0], packed, rtol=1e-6, atol=1e-6, equal_nan=True)  # (NaN: clipped rates)
    torch.testing.assert_close(got[1], world, rtol=1e-6, atol=1e-6, equal_nan=True)  # (NaN: rows not selected)
    torch.testing.assert_close(got[2].points, offer.points, rtol=1e-9, atol=1e-9)
    assert torch.equal(got[2].offered, offer.offered & trusted)
    assert bool(offer.offered.any()) and (packed[1] > 40 or not trusted)  # (movers found, candidates offered)


def test_a_download_holds_as_many_moving_rows_as_a_trusted_frame_may_have(monkeypatch):
    from nut_ros.perception import dense

    assert dense.mover_capacity(1001) == 500 and dense.frame_trusted(500, 1001) and not dense.frame_trusted(501, 1001)
    monkeypatch.setattr(dense, "MAX_MOVING_FRACTION", 0.3)  # one owner: the capacity follows the fraction
    assert dense.mover_capacity(1000) == 300 and dense.frame_trusted(300, 1000)
