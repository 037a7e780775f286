"""Simulated depth inputs of stage-3 training: the pipeline's dense fill of a depth-from-motion map, and the mix of
input modes per sample."""
import numpy as np
import pytest
import torch

from nut_ros.core.geometry import resize_nearest
from nut_ros.train import depth_input
from nut_ros.train.depth_input import mixed_depth_input, motion_fill

H, W = 144, 512  # wider than depth from motion's working width (256): the fill is made at half size


def _scene(batch: int = 4):
    """A textured image of a floor-like plane: inverse depth affine in the image rows (1-4 m)."""
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, H // 4, W // 4, generator=gen).repeat_interleave(4, 2).repeat_interleave(4, 3)
    rows = torch.linspace(0, 1, H).view(1, 1, H, 1)
    depth = (1.0 / (0.25 + 0.75 * rows)).expand(batch, 1, H, W).clone()
    return rgb, depth


def _aligned_abs_rel(inv: torch.Tensor, depth: torch.Tensor) -> float:
    x, y = inv.flatten().double(), (1.0 / depth).flatten().double()
    a = torch.stack([x, torch.ones_like(x)], 1)
    fit = 1.0 / (a @ torch.linalg.lstsq(a, y[:, None]).solution)[:, 0]
    return float(((fit - depth.flatten()).abs() / depth.flatten()).mean())


def test_fill_is_dense_close_to_the_truth_and_marks_its_measured_pixels(monkeypatch):
    rgb, depth = _scene()
    constant = _aligned_abs_rel(torch.ones(H, W) + 1e-3 * torch.rand(H, W), depth[0, 0])
    assert constant > 0.25  # a constant on this floor
    inv, known, ok = motion_fill(depth, rgb, torch.Generator().manual_seed(1))
    assert inv.shape == known.shape == depth.shape and ok.all()
    assert torch.isfinite(inv).all() and (inv > 0).all()
    # the measured pixels are a share of the textured ones, made at half the width: 2x2 blocks when resized up
    share = known.float().mean().item()
    assert 0.02 < share < 0.5
    assert torch.equal(known[..., ::2, ::2], known[..., 1::2, 1::2])
    # with the simulated errors (noise, a tilt, a smooth field) the fill is off, but nearer than a constant
    errors = [_aligned_abs_rel(inv[i, 0], depth[i, 0]) for i in range(len(inv))]
    assert 0.05 < np.mean(errors) < 0.8 * constant, errors
    # without them (only the semi-dense map's own few % of noise and outliers) the fill follows the plane
    for name in ("FILL_NOISE", "FILL_TILT", "FILL_FIELD"):
        monkeypatch.setattr(depth_input, name, 0.0)
    inv, _, _ = motion_fill(depth, rgb, torch.Generator().manual_seed(1))
    errors = [_aligned_abs_rel(inv[i, 0], depth[i, 0]) for i in range(len(inv))]
    assert max(errors) < 0.08, errors


def test_a_frame_without_texture_has_no_fill():
    rgb, depth = _scene(2)
    rgb[1] = 0.5  # blank: nothing to measure
    _, _, ok = motion_fill(depth, rgb, torch.Generator().manual_seed(1))
    assert ok.tolist() == [True, False]


@pytest.mark.parametrize("validity", ["ones", "known"])
def test_fill_mode_channels(validity):
    rgb, depth = _scene()
    d = mixed_depth_input(depth, rgb, torch.Generator().manual_seed(2), {"fill": 1.0}, validity)
    assert d.present.all()
    disp, valid = d.channels[:, 0], d.channels[:, 1]
    assert disp.amin() == 0 and disp.amax() == 1  # normalised over every pixel of the fill, as the pipeline does
    share = valid.mean().item()
    assert share == 1.0 if validity == "ones" else 0.02 < share < 0.5
    # the ŷ target's normalisation is the fill's: the true disparity lands near [0, 1]
    target = d.normalise(1.0 / depth)
    assert -0.2 < target.amin() < 0.2 and 0.8 < target.amax() < 1.2
    assert torch.allclose(d.to_depth(target), depth, rtol=1e-4)  # back to metres: to_depth inverts normalise
    # the fill's own depth, in the input's scale (the simulated fill is metric up to its errors)
    rel = ((d.to_depth(disp[:, None]) - depth).abs() / depth).mean()
    assert 0 < rel < 0.3


def test_modes_mix_per_sample_and_unknown_modes_are_refused():
    rgb, depth = _scene(64)
    d = mixed_depth_input(depth, rgb, torch.Generator().manual_seed(3), {"none": 0.5, "fill": 0.5}, "known")
    none = ~d.present
    assert 15 < none.sum() < 49  # about half of 64
    assert torch.all(d.channels[none] == 0)
    assert torch.all(d.channels[~none][:, 0].flatten(1).amax(1) == 1)
    with pytest.raises(ValueError, match="unknown depth-input modes"):
        mixed_depth_input(depth, rgb, torch.Generator(), {"lidar": 1.0})


def test_default_modes_draw_as_before_the_fill_mode():
    """The shipped weights' stage 3 (default modes) stays reproducible: the same draws as the code it ran with
    (commit 7d84ab7, whose figures these are)."""
    rgb, depth = _scene(8)
    d = mixed_depth_input(depth, rgb, torch.Generator().manual_seed(0))
    assert d.present.tolist() == [True] * 6 + [False, True]
    assert d.channels.double().sum().item() == pytest.approx(460959.8493, rel=1e-6)
    assert d.lo.double().sum().item() == pytest.approx(1.81504, rel=1e-5)
    assert d.hi.double().sum().item() == pytest.approx(10.25756, rel=1e-5)


def test_own_fills_are_used_missing_ones_go_without_depth_and_nan_is_simulated():
    rgb, depth = _scene(3)
    own = 1.0 / depth * (1 + 0.1 * torch.linspace(0, 1, W))  # a known, slanted fill
    fill = torch.stack([own[0], torch.zeros_like(own[1]), torch.full_like(own[2], torch.nan)])
    known = torch.zeros_like(depth, dtype=torch.bool)
    known[0, :, :10] = True
    d = mixed_depth_input(depth, rgb, torch.Generator().manual_seed(4), {"fill": 1.0}, "known", fill, known)
    assert d.present.tolist() == [True, False, True]
    assert torch.equal(d.channels[0, 1], known[0, 0].float())  # its own measured pixels
    expected = (own[0, 0] - own[0, 0].amin()) / (own[0, 0].amax() - own[0, 0].amin())
    assert torch.allclose(d.channels[0, 0], expected, atol=1e-5)
    assert torch.all(d.channels[1] == 0)  # depth from motion gave none: RGB only, as in the pipeline
    assert 0.02 < d.channels[2, 1].mean() < 0.5  # simulated


def test_bad_modes_and_validity_are_refused():
    rgb, depth = _scene(2)
    for modes in ({"fill": -1.0, "none": 1.0}, {"fill": 0.0}):
        with pytest.raises(ValueError, match="probabilities"):
            mixed_depth_input(depth, rgb, torch.Generator(), modes)
    with pytest.raises(ValueError, match="fill_validity"):
        mixed_depth_input(depth, rgb, torch.Generator(), {"fill": 1.0}, "sometimes")


@pytest.mark.parametrize("size", [(288, 512), (64, 128), (100, 200)])
def test_fill_at_resizes_as_the_pipeline_does(size):
    """Training brings a fill to the model's size as ``StreamingPipeline._preprocess`` does: the fill bilinear (as
    OpenCV's), its measured pixels nearest, pixel-centre exact (``resize_nearest``; up and down, at depth from
    motion's working size 256x144)."""
    cv2 = pytest.importorskip("cv2")
    gen = np.random.default_rng(4)
    inv = gen.uniform(0.2, 2.0, (144, 256)).astype(np.float32)
    known = gen.random((144, 256)) < 0.3
    got_inv, got_known = depth_input.fill_at(torch.from_numpy(inv)[None, None], torch.from_numpy(known)[None, None],
                                             size)
    h, w = size
    want_inv = cv2.resize(inv, (w, h), interpolation=cv2.INTER_LINEAR)
    want_known = resize_nearest(known.astype(np.uint8), w, h) > 0
    assert np.abs(got_inv[0, 0].numpy() - want_inv).max() < 1e-4
    assert np.array_equal(got_known[0, 0].numpy(), want_known)


def test_log_depth_error_is_zero_at_the_truth_and_relative_elsewhere():
    from nut_ros.train.objectives import log_depth_error
    rgb, depth = _scene()
    d = mixed_depth_input(depth, rgb, torch.Generator().manual_seed(2), {"fill": 1.0})
    exact = d.normalise(1.0 / depth)
    assert log_depth_error(d, exact, depth).max() < 1e-4
    # 10 % too far everywhere: log(1.1) at every pixel, near or far (the ŷ error of the same depth ratio is not)
    far = d.normalise(1.0 / (1.1 * depth))
    assert torch.allclose(log_depth_error(d, far, depth), torch.full_like(depth, np.log(1.1)), atol=1e-4)
    assert (exact - far).abs().amax() > 3 * (exact - far).abs().amin()
    assert torch.isfinite(log_depth_error(d, torch.full_like(exact, -5.0), depth)).all()  # below ŷ's range
