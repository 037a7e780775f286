"""Training losses and the simulated depth input."""
import pytest
import torch

from nut_ros.core.gaussians import Gaussians, disparity_to_depth
from nut_ros.train.depth_input import simulate_depth_input
from nut_ros.train.losses import (masked_mse, pixel_of, rendered_disparity, ssi_disparity_loss, trajectory_loss,
                                  trajectory_targets)


def test_masked_mse_is_explicit_and_safe_on_empty_masks():
    pred, target = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    assert float(masked_mse(pred, target, mask)) == 0.0  # the reference gives NaN here
    mask[0, 0, :2] = 1
    target[0, :, :2] = 3.0
    assert float(masked_mse(pred, target, mask)) == 9.0  # only the masked pixels count


def test_ssi_loss_is_scale_shift_invariant_and_masks_exclude():
    g = torch.rand(2, 1, 16, 16)
    mask = torch.ones_like(g, dtype=torch.bool)
    assert float(ssi_disparity_loss(3.0 * g + 0.7, g, mask)) < 1e-5
    assert float(ssi_disparity_loss(torch.rand_like(g), g, mask)) > 0.1
    corrupted = 3.0 * g + 0.7
    corrupted[:, :, :4] = 100.0  # outliers under the mask's holes must not change the alignment
    mask[:, :, :4] = False
    assert float(ssi_disparity_loss(corrupted, g, mask)) < 1e-5
    assert float(ssi_disparity_loss(g, g, torch.zeros_like(mask))) == 0.0


def test_rendered_disparity_inverts_the_depth_map():
    y = torch.rand(1, 1, 8, 8)
    alpha = torch.full_like(y, 0.5)
    assert torch.allclose(rendered_disparity(disparity_to_depth(y) * alpha, alpha), y, atol=1e-4)


def _gaussians_on_grid(h: int, w: int, velocity: torch.Tensor) -> Gaussians:
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    x, z = (u - (w - 1) / 2) / (w / 2), -(v - (h - 1) / 2) / (h / 2)
    xyz = torch.stack([x.flatten(), torch.full((h * w,), 0.5), z.flatten()], dim=-1)[None].repeat(1, 2, 1)
    n = xyz.shape[1]
    t0 = torch.cat([torch.zeros(n // 2), torch.ones(n // 2)])[None]
    ones = torch.ones(1, n, 1)
    return Gaussians(xyz, velocity, ones.expand(1, n, 3), ones * 0.5, ones.expand(1, n, 2) * 0.01,
                     torch.zeros(1, n, 2), t0)


def test_trajectory_loss_is_zero_for_the_true_motion():
    h, w, times = 6, 10, torch.tensor([0.0, 0.5, 1.0])
    flow = torch.tensor([2.0, -1.0])  # pixels over the whole interval, for every point
    tracks = torch.zeros(1, 2, 3, 3, h, w)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for k, t_key in ((0, 0.0), (1, 1.0)):
        for j, t in enumerate(times):
            tracks[0, k, j, 0] = u + flow[0] * (t - t_key)
            tracks[0, k, j, 1] = v + flow[1] * (t - t_key)
            tracks[0, k, j, 2] = 0.5 + 0.2 * (t - t_key)
    vel = torch.tensor([flow[0] / (w / 2), 0.2 / 0.8, -flow[1] / (h / 2)]).expand(1, 2 * h * w, 3)
    g = _gaussians_on_grid(h, w, vel.clone())
    disp_range = torch.tensor([[0.8, 0.8]])
    pred, true = trajectory_targets(g, tracks, times, disp_range)
    assert float(trajectory_loss(pred, true, torch.ones(1))) < 1e-6
    g.velocity = g.velocity * 1.5
    pred, true = trajectory_targets(g, tracks, times, disp_range)
    assert float(trajectory_loss(pred, true, torch.ones(1))) > 1e-3
    # the ŷ component is ignored for samples without depth input
    g.velocity[..., 1] = 0.0
    g.velocity[..., 0::2] = vel[..., 0::2]
    pred, true = trajectory_targets(g, tracks, times, disp_range)
    assert float(trajectory_loss(pred, true, torch.zeros(1))) < 1e-6


def test_pixel_of_matches_the_rasterizer_convention():
    u, v = pixel_of(torch.tensor([[1.0, 0.5, -1.0], [-1.0, 0.5, 1.0]]), 144, 256)
    assert torch.allclose(u, torch.tensor([255.5, -0.5])) and torch.allclose(v, torch.tensor([143.5, -0.5]))


def test_depth_input_modes():
    depth = 1.0 + 4.0 * torch.rand(4, 1, 32, 32)
    gen = torch.Generator().manual_seed(0)
    present = torch.tensor([True, True, False, False])
    d = simulate_depth_input(depth, 0.0, gen, present)
    disp, valid = d.channels[:, 0], d.channels[:, 1]
    assert torch.equal(d.present, present)
    assert float(d.channels[2:].abs().max()) == 0.0  # RGB-only: both channels zero
    assert float(valid[:2].mean()) > 0.5 and float(disp.min()) >= 0 and float(disp.max()) <= 1
    # the normalisation maps the valid input disparities back to the channel values (up to the sensor noise)
    y = d.normalise(1.0 / depth)[:, 0]
    assert float((y - disp).abs()[valid > 0].max()) < 0.05


def test_trajectory_loss_norms():
    from nut_ros.train.losses import trajectory_loss

    pred = torch.zeros(1, 2, 1, 3)
    target = torch.tensor([[[[0.5, 0.2, 0.0]], [[0.0, 0.0, 0.0]]]])
    no_depth, depth = torch.zeros(1), torch.ones(1)
    assert torch.isclose(trajectory_loss(pred, target, no_depth), torch.tensor(0.25))  # (0.5 + 0) / 2
    assert torch.isclose(trajectory_loss(pred, target, depth), torch.tensor(0.35))
    assert torch.isclose(trajectory_loss(pred, target, depth, "l2"), torch.tensor((0.25 + 0.04) / 2))
    with pytest.raises(ValueError):
        trajectory_loss(pred, target, depth, "huber")


def test_a_sample_without_valid_pixels_adds_nothing_not_even_a_nan_gradient():
    g = torch.rand(2, 1, 8, 8)
    mask = torch.ones_like(g, dtype=torch.bool)
    mask[1] = False  # (stage 3's mask, alpha > 0.5 and a depth, can be empty for a sample)
    pred = torch.rand_like(g, requires_grad=True)
    loss = ssi_disparity_loss(pred, g, mask)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1] == 0).all()
    assert torch.isclose(loss, ssi_disparity_loss(pred[:1].detach(), g[:1], mask[:1]))
