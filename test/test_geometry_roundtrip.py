"""Canonical <-> pixels <-> optical-frame geometry: round trips, resized intrinsics, chain-rule velocities."""
import math

import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians, disparity_to_depth
from nut_ros.core.geometry import (DepthNormalization, Intrinsics, backproject, canonical_scale_to_optical,
                                   canonical_to_optical, canonical_to_pixels, canonical_velocity_to_optical,
                                   optical_to_canonical, pixels_to_canonical, project, rendered_depth_to_depth,
                                   rendered_depth_to_yhat, world_quaternion_to_optical)
from nut_ros.pipeline.depth import normalize_inverse_depth, valid_depth
from nut_ros.render import project_gaussians

CAMERA = Intrinsics(fx=615.0, fy=610.0, cx=321.3, cy=238.7, width=640, height=480)
MODEL = CAMERA.scaled(512, 288)


def random_canonical(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 2.0]) - torch.tensor(
        [1.0, 0.0, 1.0])


def test_pixels_match_the_rasterizer_projection():
    xyz = random_canonical(50)
    means = torch.stack([xyz[:, 0], disparity_to_depth(xyz[:, 1]), xyz[:, 2]], -1)[None]
    identity = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(1, 50, 4)
    proj = project_gaussians(means, torch.full_like(means, 0.01), identity, 288, 512)
    u, v = canonical_to_pixels(xyz[:, 0], xyz[:, 2], 512, 288)
    assert torch.allclose(proj.uv[0], torch.stack([u, v], -1), atol=1e-4)  # the kernel's 1/(1+1e-7) aside
    x, z = pixels_to_canonical(u, v, 512, 288)
    assert torch.allclose(x, xyz[:, 0]) and torch.allclose(z, xyz[:, 2])
    # corners: pixel centres 0 and w-1 sit half a pixel inside x = -1 and x = 1
    assert canonical_to_pixels(torch.tensor(-1.0), torch.tensor(1.0), 512, 288) == (-0.5, -0.5)


def test_scaled_intrinsics_keep_rays():
    """A ray through a camera pixel is the ray through the corresponding model pixel."""
    u_cam, v_cam = torch.tensor([0.0, 639.0, 100.5]), torch.tensor([0.0, 479.0, 300.25])
    ray = backproject(u_cam, v_cam, torch.ones(3), CAMERA)
    u_mod, v_mod = (u_cam + 0.5) * 512 / 640 - 0.5, (v_cam + 0.5) * 288 / 480 - 0.5
    assert torch.allclose(backproject(u_mod, v_mod, torch.ones(3), MODEL), ray, atol=1e-12)
    back = MODEL.scaled(640, 480)
    assert [back.fx, back.fy, back.cx, back.cy] == pytest.approx([CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy])


@pytest.mark.parametrize("norm", [DepthNormalization(0.2, 1.5, True), DepthNormalization.relative()])
def test_canonical_optical_round_trip(norm):
    xyz = random_canonical(200, seed=1)
    pts = canonical_to_optical(xyz, norm, MODEL)
    assert torch.allclose(optical_to_canonical(pts, norm, MODEL), xyz, atol=1e-10)
    assert torch.allclose(1.0 / pts[:, 2], norm.disp_min + xyz[:, 1] * norm.span)
    u, v = project(pts, MODEL)
    assert torch.allclose(torch.stack(pixels_to_canonical(u, v, 512, 288), -1), xyz[:, [0, 2]], atol=1e-10)


def test_depth_normalization_from_metric_depth():
    depth = torch.tensor([[0.5, 2.0, float("nan")], [0.0, 4.0, float("inf")]])[None, None]
    disp, far, near = normalize_inverse_depth(depth, valid_depth(depth, 0.05, 20.0))
    norm = DepthNormalization(float(far), float(near), metric=True)
    assert norm.disp_min == pytest.approx(0.25) and norm.disp_max == pytest.approx(2.0)
    y = norm.depth_to_yhat(torch.tensor([0.5, 4.0, 2.0]))
    assert torch.allclose(y, torch.tensor([1.0, 0.0, (0.5 - 0.25) / 1.75]))
    assert torch.allclose(disp[0, 0], torch.tensor([[1.0, (0.5 - 0.25) / 1.75, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(norm.yhat_to_depth(y), torch.tensor([0.5, 4.0, 2.0]))
    assert torch.allclose(norm.yhat_to_disparity(norm.disparity_to_yhat(torch.tensor([0.3, 1.9]))),
                          torch.tensor([0.3, 1.9]))
    none, far, near = normalize_inverse_depth(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    assert float(far) == 0.0 and not none.any()  # no valid pixel: no depth input, and a range that maps back
    empty = DepthNormalization(float(far), float(near), metric=True)
    assert float(near) > 0.0 and torch.isfinite(empty.yhat_to_depth(torch.tensor([0.0, 0.5, 1.0])))[1:].all()
    assert torch.isfinite(empty.disparity_to_yhat(torch.tensor([1.0]))).all()


def test_rendered_depth_maps_back_to_metres():
    norm = DepthNormalization(0.25, 2.0, True)
    y = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(rendered_depth_to_yhat(disparity_to_depth(y)), y, atol=1e-12)
    assert torch.allclose(rendered_depth_to_depth(disparity_to_depth(y), norm), norm.yhat_to_depth(y))
    # relative mode: the rendered depth is the relative depth
    assert torch.allclose(rendered_depth_to_depth(disparity_to_depth(y), DepthNormalization.relative()),
                          disparity_to_depth(y), rtol=1e-5)


@pytest.mark.parametrize("interval_s", [None, 0.1])
def test_velocity_chain_rule_matches_finite_differences(interval_s):
    norm = DepthNormalization(0.3, 1.2, True)
    xyz, vel = random_canonical(100, seed=2) * 0.8 + 0.1, (random_canonical(100, seed=3) - 0.2) * 0.05
    got = canonical_velocity_to_optical(xyz, vel, norm, MODEL, interval_s)
    h = 1e-6
    ahead, behind = canonical_to_optical(xyz + h * vel, norm, MODEL), canonical_to_optical(xyz - h * vel, norm, MODEL)
    fd = (ahead - behind) / (2 * h)
    assert torch.allclose(got, fd / (interval_s or 1.0), rtol=1e-6, atol=1e-9)


def test_gaussian_motion_in_metres_per_second():
    """A Gaussians set moved for dτ lands where its optical-frame velocity says (first order)."""
    norm, dt = DepthNormalization(0.3, 1.2, True), 1 / 15
    xyz = random_canonical(20, seed=4) * 0.5 + 0.25
    g = Gaussians(xyz[None], (random_canonical(20, seed=5) * 0.01)[None], torch.rand(1, 20, 3), torch.rand(1, 20, 1),
                  torch.rand(1, 20, 2), torch.zeros(1, 20, 2), torch.zeros(1, 20, dtype=torch.float64))
    vel = canonical_velocity_to_optical(g.xyz, g.velocity, norm, MODEL, dt)
    tau = 1e-5
    moved = canonical_to_optical(g.premap_position(tau), norm, MODEL)
    assert torch.allclose((moved - canonical_to_optical(g.xyz, norm, MODEL)) / (tau * dt), vel, rtol=1e-3, atol=1e-6)


def test_scale_footprint():
    scale = torch.tensor([[0.01, 0.02]], dtype=torch.float64)
    depth = torch.tensor([2.0], dtype=torch.float64)
    s = canonical_scale_to_optical(scale, depth, MODEL)
    # a footprint of (w/2·s_x) pixels at depth z spans that many pixels / f · z metres
    assert s[0, 0] == pytest.approx(256 * 0.01 * 2.0 / MODEL.fx)
    assert s[0, 1] == pytest.approx(144 * 0.02 * 2.0 / MODEL.fy)
    assert s[0, 2] == pytest.approx((s[0, 0] + s[0, 1]) / 2)


def test_quaternion_frame_change():
    def mat(q):
        w, x, y, z = q
        return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                             [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                             [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=torch.float64)

    world_to_cam = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # p_cam = (x, -z, y)
    q = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.7, 0.2], dtype=torch.float64), dim=0)
    got = mat(world_quaternion_to_optical(q))
    assert torch.allclose(got, world_to_cam @ mat(q) @ world_to_cam.T, atol=1e-12)
    assert torch.allclose(world_quaternion_to_optical(torch.tensor([1.0, 0, 0, 0])), torch.tensor([1.0, 0, 0, 0]))


def test_from_fov():
    k = Intrinsics.from_fov(512, 288, 90.0)
    assert k.fx == pytest.approx(256) and k.cx == 255.5 and k.cy == 143.5
    assert math.isclose(k.scaled(256, 144).fx, 128)


@pytest.mark.parametrize("size, to", [((480, 640), (144, 256)), ((720, 1280), (288, 512)), ((8, 8), (4, 4)),
                                      ((192, 256), (144, 256)), ((144, 256), (480, 640)), ((5, 7), (3, 11))])
def test_nearest_resizing_takes_the_source_pixel_holding_each_centre(size, to):
    """``resize_nearest`` (depth images and masks) maps pixel centres as ``Intrinsics.scaled`` does: each target
    pixel takes the source pixel under its centre, as torch's ``nearest-exact`` (OpenCV's ``INTER_NEAREST`` takes the
    one half a source pixel up and left when shrinking), for any size and channel count."""
    import torch.nn.functional as F

    from nut_ros.core.geometry import resize_nearest

    (h0, w0), (h, w) = size, to
    image = np.arange(h0 * w0 * 2, dtype=np.float32).reshape(h0, w0, 2)
    want = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=(h, w), mode="nearest-exact")[0]
    np.testing.assert_array_equal(resize_nearest(image, w, h), want.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(resize_nearest(image[..., 0], w, h), want[0].numpy())
    # the target pixel (u, v) holds the value of the source pixel its centre falls in, (u + 0.5) * w0 / w - 0.5 ...
    u, v = w - 1, h // 2
    src_u, src_v = (u + 0.5) * w0 / w - 0.5, (v + 0.5) * h0 / h - 0.5
    assert resize_nearest(image, w, h)[v, u, 0] == image[int(np.floor(src_v + 0.5)), int(np.floor(src_u + 0.5)), 0]
