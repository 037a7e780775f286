"""The pipeline's depth input from the camera's own motion: which source made it, metric with odometry, relative
without, none on a static camera or when switched off (random-init tiny model at a small size)."""
import dataclasses

import numpy as np
import pytest
import torch
from generated_room import K, pose, render

from nut_ros.core.geometry import resize_nearest
from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.metrics import depth_errors
from nut_ros.pipeline.stream import StreamingPipeline
from nut_ros.pipeline.types import Frame, PipelineConfig

MOVING = [pose(x=0.04 * i, yaw_deg=0.4 * i) for i in range(4)]


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return TorchBackend(build_model("tiny", image_size=(48, 96)), "cpu")


def stream(backend, poses, odometry: bool, **config):
    pipe = StreamingPipeline(backend, PipelineConfig(**config))
    results, truths = [], []
    for i, T in enumerate(poses):
        rgb, depth, _ = render(T)
        results.append(pipe.push(Frame(rgb, 10**9 + i * 10**8, intrinsics=K, camera_pose=T if odometry else None)))
        truths.append(depth)
    return results, truths


def model_size(depth, like):
    return torch.nn.functional.interpolate(torch.from_numpy(depth)[None, None], size=like.shape,
                                           mode="nearest-exact")[0, 0].numpy()


def test_odometry_gives_a_metric_depth_input(backend):
    results, truths = stream(backend, MOVING, odometry=True)
    assert [r.depth_source for r in results] == ["none", "odometry", "odometry", "odometry"]  # 1st: no reference
    # the first frame with depth starts the live map on its own (metric at once, unpaired); then pairs are metric
    assert [r.metric for r in results] == [False, True, True, True]
    assert [r.paired for r in results] == [False, False, True, True]
    last = results[-1]
    e = depth_errors(last.input_depth, model_size(truths[-1], last.input_depth))
    assert e["abs_rel"] < 0.08 and e["pixels"] == last.input_depth.size, e  # metres, no alignment
    assert last.motion_depth.metric and last.motion_depth.coverage > 0.3
    assert np.isfinite(last.newest.depth).any()


def test_a_frame_without_odometry_keeps_the_stream_metric(backend):
    """RGB + odometry with a gap (a late odometry message): the frame without a pose gets its depth from the metric
    map held over the gap (the map's own pose, in metres), so the stream stays metric and paired; no pair ever puts
    metres and relative units in one cloud."""
    poses = MOVING + [pose(x=0.04 * i, yaw_deg=0.4 * i) for i in range(4, 9)]
    pipe = StreamingPipeline(backend, PipelineConfig())
    results, truths = [], []
    for i, T in enumerate(poses):
        rgb, depth, _ = render(T)
        truths.append(depth)
        results.append(pipe.push(Frame(rgb, 10**9 + i * 10**8, intrinsics=K, camera_pose=None if i == 5 else T)))
    assert [(r.depth_source, r.metric, r.paired) for r in results[4:]] == [("odometry", True, True)] * 5
    gap = results[5]
    e = depth_errors(gap.input_depth, model_size(truths[5], gap.input_depth))
    assert e["abs_rel"] < 0.08, e  # metres, no alignment
    for a, b in zip(results, results[1:]):
        assert not b.paired or a.metric == b.metric


def test_the_focal_length_fitted_against_odometry_is_the_published_cameras(backend):
    """A camera model whose focal length is 15 % too long (the geometry test's case): depth from motion fits the
    focal length against the odometry's rotation; the frame's geometry (unprojection, the published intrinsics) then
    uses the fitted one, so metric depths and lateral positions agree."""
    wrong = dataclasses.replace(K, fx=K.fx * 1.15, fy=K.fy * 1.15)
    poses = [pose(x=0.03 * i, yaw_deg=2.0 * np.sin(i), pitch_deg=1.0 * np.cos(1.3 * i)) for i in range(28)]
    pipe = StreamingPipeline(backend, PipelineConfig(render_times=()))
    for i, T in enumerate(poses):
        res = pipe.push(Frame(render(T)[0], 10**9 + i * 10**8, intrinsics=wrong, camera_pose=T))
    s = res.motion_depth.focal_scale
    assert res.metric and abs(s * 1.15 - 1) < 0.03, s
    model = wrong.scaled(96, 48)
    assert res.intrinsics == dataclasses.replace(model, fx=model.fx * s, fy=model.fy * s)


def test_motion_alone_gives_a_relative_depth_input(backend):
    results, truths = stream(backend, MOVING, odometry=False)
    assert [r.depth_source for r in results][2:] == ["motion"] * 2 and not any(r.metric for r in results)
    last = results[-1]
    assert np.median(last.input_depth) == pytest.approx(1.0, rel=0.02)  # relative unit: the median depth
    truth = model_size(truths[-1], last.input_depth)
    e = depth_errors(last.input_depth, truth, align_median=True)
    assert e["abs_rel"] < 0.1, e
    # the render is published in the input's relative unit: the canonical depth slot maps back into the input's
    # range (an untrained network's depth is no better than a constant, so its error is not tested here)
    shown = last.newest.depth[np.isfinite(last.newest.depth)]
    assert shown.size > 0.5 * truth.size
    assert 0.95 * last.input_depth.min() <= shown.min() and shown.max() <= 1.05 * last.input_depth.max()


@pytest.mark.parametrize("odometry", [True, False])
def test_static_camera_gives_no_depth_input(backend, odometry):
    results, _ = stream(backend, [pose()] * 3, odometry)
    assert [r.depth_source for r in results] == ["none"] * 3 and all(r.input_depth is None for r in results)


def test_switched_off_and_depth_topic(backend):
    results, _ = stream(backend, MOVING, odometry=True, depth_from_motion="off")
    assert {r.depth_source for r in results} == {"none"}
    rgb, depth, _ = render(MOVING[0])
    pipe = StreamingPipeline(backend)
    r = pipe.push(Frame(rgb, 10**9, depth_m=depth, intrinsics=K, camera_pose=MOVING[0]))
    assert r.depth_source == "topic" and r.metric  # a depth camera wins over odometry
    with pytest.raises(ValueError, match="depth_from_motion"):
        StreamingPipeline(backend, dataclasses.replace(PipelineConfig(), depth_from_motion="on"))
    with pytest.raises(ValueError, match="camera_pose"):
        pipe.push(Frame(rgb, 2 * 10**9, intrinsics=K, camera_pose=np.eye(3)))


def test_evaluation_scores_the_baselines_on_the_same_pixels(backend):
    from nut_ros.pipeline.evaluation import StreamEvaluator
    from nut_ros.pipeline.metrics import constant_depth

    pipe = StreamingPipeline(backend)
    ev = StreamEvaluator(pipe, stride=1)
    for i, T in enumerate(MOVING):
        rgb, depth, _ = render(T)
        result = ev.add(Frame(rgb, 10**9 + i * 10**8, intrinsics=K, camera_pose=T), depth)
    rec = ev.records[-1]
    truth = model_size(depth, result.newest.depth)
    same = np.isfinite(result.newest.depth)
    constant = depth_errors(constant_depth(truth.shape), truth, valid=same, align_disparity=True)
    assert rec["depth_abs_rel_affine_constant"] == pytest.approx(constant["abs_rel"])
    assert rec["depth_abs_rel_input"] < 0.08 < rec["depth_abs_rel_constant"]  # metric: odometry beats a constant
    assert rec["depth_coverage_input"] == 1.0 and 0.3 < rec["depth_coverage_sparse"] < 1.0
    # the rendered depth is also scored on the semi-dense pixels alone, the pixels of the semi-dense figure
    sparse = 1.0 / resize_nearest(result.motion_depth.inv_depth, truth.shape[1], truth.shape[0])
    on = same & np.isfinite(truth) & (truth >= 0.05) & (truth <= 20.0) & np.isfinite(sparse) & (sparse > 0)
    rendered_on = depth_errors(result.newest.depth, truth, valid=on, align_disparity=True)
    assert rec["depth_abs_rel_affine_on_sparse"] == pytest.approx(rendered_on["abs_rel"])
    assert rendered_on["pixels"] == round(rec["depth_coverage_sparse"] * (same & np.isfinite(truth)).sum())
    s = ev.summary()["depth"]
    assert s["sources"] == {"none": 1, "odometry": 3} and s["frames"]["depth_abs_rel"] == 3  # every metric frame
    assert s["by_source"]["odometry"]["depth_abs_rel_affine"] is not None


def test_a_model_trained_on_known_pixels_gets_the_fills_measured_pixels(backend):
    """``fill_validity: known``: the validity channel marks where depth from motion measured (nearest-resized from
    its working resolution); the disparity channel stays the dense fill. ``ones`` (default): validity 1 everywhere."""
    fed = {}
    for validity in ("ones", "known"):
        torch.manual_seed(0)
        model = build_model("tiny", image_size=(48, 96), fill_validity=validity)
        probe = TorchBackend(model, "cpu")
        inputs = []
        encode = probe.encode
        probe.encode = lambda rgb, disp: (inputs.append(disp.clone()), encode(rgb, disp))[1]
        results, _ = stream(probe, MOVING, odometry=True)
        fed[validity] = (inputs[-1][0], results[-1].motion_depth)
    disp, motion = fed["ones"]
    assert torch.all(disp[1] == 1) and (disp[0] > 0).float().mean() > 0.9  # min-max normalised: the far end is 0
    disp, motion = fed["known"]
    known = resize_nearest((motion.confidence > 0).astype(np.uint8), 96, 48)
    assert 0.05 < known.mean() < 0.95
    assert np.array_equal(disp[1].numpy(), known.astype(np.float32))
    assert torch.equal(disp[0], fed["ones"][0][0])  # the fill itself, dense where nothing was measured too
    assert (disp[0][disp[1] == 0] > 0).float().mean() > 0.5


@pytest.mark.parametrize("network_depth", [False, True])
def test_the_holes_of_a_depth_image_are_not_published_as_depth(network_depth):
    """Where the depth image has no depth the network invents one (the far end of the valid range): every view has
    NaN depth there, the newest frame's and those between and after the pair's frames (the camera moves a few
    pixels over the pair: a margin is left at the hole's edge), and the cloud has no Gaussian of a frame's hole,
    unless network_depth (shipped tiny; the left third of the depth image is NaN)."""
    from nut_ros.pipeline.backends import make_backend

    config = PipelineConfig(network_depth=network_depth, render_times=(0.5, 1.0, 1.5))
    pipe = StreamingPipeline(make_backend("torch", "tiny"), config)
    for i, T in enumerate(MOVING[:2]):
        rgb, depth, _ = render(T)
        depth = depth.astype(np.float32)
        depth[:, :depth.shape[1] // 3] = np.nan
        res = pipe.push(Frame(rgb, 10**9 + i * 10**8, depth_m=depth, intrinsics=K))
    assert [view.pair_time for view in res.views] == [0.5, 1.0, 1.5]
    for view in res.views:
        w = view.depth.shape[1]
        margin = 2 if view.pair_time == 1.0 else 8
        hole, seen = view.depth[:, : w // 3 - margin], view.depth[:, w // 3 + margin:]
        assert np.isfinite(seen).mean() > 0.85, view.pair_time  # (a prediction uncovers the right edge)
        if network_depth:
            assert np.isfinite(hole).mean() > 0.9, view.pair_time
        else:
            assert np.isnan(hole).mean() >= (1.0 if view.pair_time == 1.0 else 0.98), view.pair_time
    u = res.gaussians.positions[:, 0] / res.gaussians.positions[:, 2] * res.intrinsics.fx + res.intrinsics.cx
    in_hole = u < w / 3 - 2
    if network_depth:
        assert in_hole.mean() > 0.2
    else:
        assert in_hole.mean() < 0.01
