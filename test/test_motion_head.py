"""Learned motion head (RAFT-style flow in the model) and the exact flow it is trained on."""
import math

import numpy as np
import torch

from nut_ros.core.model import build_model
from nut_ros.core.motion_head import RADIUS, convex_upsample, correlation_pyramid, lookup
from nut_ros.train.rgbd_pairs import _pose, epe, rigid_flow, warp

SMALL_INPUT = {"image_size": (64, 128), "window": 128}


def test_convex_upsampling_keeps_a_constant_flow_and_its_units():
    flow = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 4, 5)
    fine = convex_upsample(flow, torch.randn(1, 9 * 2 * 4, 4, 5), (2, 4))
    assert fine.shape == (1, 2, 8, 20)
    torch.testing.assert_close(fine, flow[:, :, :1, :1].expand_as(fine))


def test_correlation_lookup_reads_the_window_around_the_target():
    torch.manual_seed(0)
    f0, f1 = torch.randn(1, 8, 6, 7), torch.randn(1, 8, 6, 7)
    pyramid = correlation_pyramid(f0, f1, 1)
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    coords = torch.stack([xs, ys])[None] + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # one cell to the right
    window = lookup(pyramid, coords)
    centre = (2 * RADIUS + 1) * RADIUS + RADIUS  # the window's middle entry
    # cell (2, 3) of frame 0 looks at cell (2, 4) of frame 1
    expected = (f0[0, :, 2, 3] * f1[0, :, 2, 4]).sum() / math.sqrt(8)
    torch.testing.assert_close(window[0, centre, 2, 3], expected)


def test_decode_adds_the_learned_flow_and_can_leave_it_out():
    torch.manual_seed(0)
    model = build_model("tiny", **SMALL_INPUT).eval()
    rgb = torch.rand(1, 2, 3, 64, 128)
    disp = torch.zeros(1, 2, 2, 64, 128)
    with torch.no_grad():
        learned = model(rgb, disp).velocity
        cache = [model.encode(rgb[:, i], disp[:, i]) for i in (0, 1)]
        head = model.motion_head(cache[0].motion, cache[1].motion, cache[0].xyz[..., 1], cache[1].xyz[..., 1])
        model.learned_motion = False
        residual = model(rgb, disp).velocity
        skipped = model.encode(rgb[:, 0], disp[:, 0]).motion  # the head's features are not computed either
    torch.testing.assert_close(learned, residual + head)
    assert skipped.numel() == 1


def test_velocities_of_a_flow_in_canonical_units():
    model = build_model("tiny", **SMALL_INPUT)
    head = model.motion_head
    gh, gw = model.config.gaussian_grid
    flow = torch.zeros(1, 2, gh, gw)
    flow[:, 0] = 8.0  # 8 model pixels right
    y_own = torch.full((1, gh * gw), 0.5)
    y_other = torch.full((1, gh * gw), 0.52)
    v = head.velocities(flow, y_own, y_other)
    torch.testing.assert_close(v[..., 0], torch.full_like(v[..., 0], 8.0 / 64))
    torch.testing.assert_close(v[..., 1], torch.full_like(v[..., 1], 0.02))
    torch.testing.assert_close(v[..., 2], torch.zeros_like(v[..., 2]))


def _scene(z: float = 2.0):
    k = torch.tensor([[[100.0, 0, 63.5], [0, 100.0, 31.5], [0, 0, 1]]], dtype=torch.float64)
    depth = torch.full((1, 1, 16, 32), z)
    return k, depth


def test_rigid_flow_of_a_sideways_camera_step():
    k, depth = _scene(2.0)
    pose0 = torch.from_numpy(_pose(np.zeros(3), np.array([0, 0, 0, 1.0])))[None]
    pose1 = torch.from_numpy(_pose(np.array([0.1, 0, 0]), np.array([0, 0, 0, 1.0])))[None]
    flow, valid = rigid_flow(depth, pose0, pose1, k, (64, 128))
    assert valid.all()
    # the camera moves 0.1 m right: a point 2 m away moves fx * 0.1 / 2 = 5 px left
    torch.testing.assert_close(flow[:, 0], torch.full_like(flow[:, 0], -5.0))
    torch.testing.assert_close(flow[:, 1], torch.zeros_like(flow[:, 1]))
    same, _ = rigid_flow(depth, pose0, pose0, k, (64, 128))
    assert same.abs().max() < 1e-9


def test_rigid_flow_leaves_unknown_depth_out_and_warp_follows_the_flow():
    k, depth = _scene()
    depth[..., :4] = 0
    pose = torch.eye(4, dtype=torch.float64)[None]
    flow, valid = rigid_flow(depth, pose, pose, k, (64, 128))
    assert not valid[..., :4].any() and valid[..., 4:].all()
    image = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 8, 32)
    shifted = warp(image, torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 8, 32))
    torch.testing.assert_close(shifted[..., :30], image[..., 2:])
    assert math.isclose(epe(torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2), torch.ones(1, 1, 2, 2)).item(),
                        math.sqrt(2), rel_tol=1e-6)
