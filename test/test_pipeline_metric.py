"""Metric scale: per-frame depth normalisation, the shared depth frame, rendered metric depth and optical-frame
Gaussians, checked with Gaussians constructed at known depths (no learned model involved)."""
import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.geometry import DepthNormalization, Intrinsics, rendered_depth_to_depth
from nut_ros.pipeline.depth import model_depth_input, normalize_inverse_depth, valid_depth
from nut_ros.pipeline.optical import FAR_MARGIN, queue_optical_cloud, rebase_inverse_depth, shared_normalization
from nut_ros.render import rasterize
from nut_ros.render.projection import LOWPASS

H, W = 24, 32
K = Intrinsics(40.0, 42.0, 15.0, 11.0, W, H)


def norm_of(depth_m: np.ndarray) -> DepthNormalization:
    d = torch.as_tensor(depth_m, dtype=torch.float32)[None, None]
    _, far, near = normalize_inverse_depth(d, valid_depth(d))
    return DepthNormalization(float(far), float(near), metric=True)


def y_hat_of(depth_m, norm: DepthNormalization):
    return norm.depth_to_yhat(torch.as_tensor(depth_m, dtype=torch.float64)).float()


def render_depth(g: Gaussians, t: float, norm: DepthNormalization) -> torch.Tensor:
    out = rasterize(g.at(t), H, W, impl="torch", lowpass=LOWPASS)
    return rendered_depth_to_depth(out.depth_normalized()[0, 0], norm)


def grid_gaussians(y_hat: torch.Tensor, t0: float = 1.0, scale: float = 0.6) -> Gaussians:
    """One Gaussian per pixel centre of a W x H image, footprint ``scale`` px, nearly opaque."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    x, z = (2 * u.flatten() - (W - 1)) / W, -(2 * v.flatten() - (H - 1)) / H
    n = x.numel()
    xyz = torch.stack([x, y_hat.flatten().float(), z], -1)[None]
    sc = torch.tensor([2 * scale / W, 2 * scale / H]).expand(1, n, 2)
    return Gaussians(xyz, torch.zeros_like(xyz), torch.full((1, n, 3), 0.5), torch.full((1, n, 1), 0.99), sc.clone(),
                     torch.zeros(1, n, 2), torch.full((1, n), t0))


def test_normalisation_round_trip_and_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 6.0, (2, 1, H, W)).astype(np.float32)
    depth[0, 0, :3] = np.nan
    depth[0, 0, 3, :5] = 0.0
    depth[1, 0, 5] = np.inf
    d = torch.from_numpy(depth)
    valid = valid_depth(d)
    disp, far, near = normalize_inverse_depth(d, valid)
    assert disp.min() >= 0 and disp.max() <= 1 and torch.all(disp[~valid] == 0)
    for b in range(2):
        assert disp[b][valid[b]].max() == pytest.approx(1.0) and disp[b][valid[b]].min() == pytest.approx(0.0)
        back = DepthNormalization(float(far[b]), float(near[b]), True).yhat_to_depth(disp[b])
        torch.testing.assert_close(back[valid[b]], d[b][valid[b]], rtol=1e-5, atol=0)
    both = model_depth_input(disp, valid, 2)
    assert both.shape == (2, 2, H, W) and torch.equal(both[:, 1].bool(), valid[:, 0])


def test_constant_depth_maps_to_middle_and_back():
    norm = norm_of(np.full((H, W), 2.0))
    assert float(y_hat_of(2.0, norm)) == pytest.approx(0.5)
    assert 1 / norm.disp_min > 2.0 > 1 / norm.disp_max


def test_rendered_depth_and_points_of_a_plane_at_two_metres():
    norm = norm_of(np.full((H, W), 2.0))
    g = grid_gaussians(torch.full((H, W), 0.5))
    shared = shared_normalization([norm])
    g = rebase_inverse_depth(g, [norm], shared)
    assert rasterize(g.at(1.0), H, W, impl="torch", lowpass=LOWPASS).alpha.min() > 0.9
    depth = render_depth(g, 1.0, shared)
    torch.testing.assert_close(depth, torch.full_like(depth, 2.0), rtol=1e-4, atol=0)

    cloud = queue_optical_cloud(g, 1.0, K, shared, None).result()
    assert cloud.count == H * W and cloud.metric
    np.testing.assert_allclose(cloud.positions[:, 2], 2.0, rtol=1e-5)
    v, u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(cloud.positions[:, 0], (u.ravel() - K.cx) * 2.0 / K.fx, atol=1e-5)
    np.testing.assert_allclose(cloud.positions[:, 1], (v.ravel() - K.cy) * 2.0 / K.fy, atol=1e-5)
    # a footprint of 0.6 px in x at 2 m and fx = 40 px is 0.6 * 2 / 40 m
    np.testing.assert_allclose(cloud.scales[:, 0], 0.6 * 2.0 / K.fx, rtol=1e-5)
    np.testing.assert_array_equal(cloud.rotations, np.tile([1, 0, 0, 0], (H * W, 1)))


def test_stepped_scene_depth_is_exact_inside_each_step():
    steps = np.array([0.8, 1.7, 3.0, 4.5])
    true = np.repeat(steps, W // 4)[None].repeat(H, 0)  # four 8-column bands, nearest on the left
    norm = norm_of(true)
    shared = shared_normalization([norm])
    g = rebase_inverse_depth(grid_gaussians(y_hat_of(true, norm)), [norm], shared)
    depth = render_depth(g, 1.0, shared).numpy()
    inner = np.concatenate([np.arange(b * 8 + 3, b * 8 + 6) for b in range(4)])  # 3 px from band edges
    np.testing.assert_allclose(depth[2:-2, inner], true[2:-2, inner], rtol=1e-4)


def test_pair_with_different_normalisations_is_ordered_metrically():
    norm0 = DepthNormalization(1 / 3, 1.0, True)  # frame 0 spans 1-3 m
    norm1 = DepthNormalization(1 / 5, 1 / 2, True)  # frame 1 spans 2-5 m
    # frame 0 surface at 2.1 m (ŷ≈0.21), frame 1 surface behind it at 2.4 m (ŷ≈0.72: "nearer" in raw slots)
    g0 = grid_gaussians(torch.full((H, W), float(y_hat_of(2.1, norm0))), t0=0.0)
    g1 = grid_gaussians(torch.full((H, W), float(y_hat_of(2.4, norm1))), t0=1.0)
    g0.rgb[..., :] = torch.tensor([1.0, 0.0, 0.0])
    g1.rgb[..., :] = torch.tensor([0.0, 0.0, 1.0])
    shared = shared_normalization([norm0, norm1])
    g = rebase_inverse_depth(Gaussians.cat(g0, g1), [norm0, norm1], shared)
    torch.testing.assert_close(shared.yhat_to_depth(g.xyz[0, :1, 1]), torch.tensor([2.1]), rtol=1e-5, atol=0)
    torch.testing.assert_close(shared.yhat_to_depth(g.xyz[0, -1:, 1]), torch.tensor([2.4]), rtol=1e-5, atol=0)
    out = rasterize(g.at(0.5), H, W, impl="torch", lowpass=LOWPASS)
    assert out.color[0, 0].mean() > 0.95 and out.color[0, 2].mean() < 0.05  # red (frame 0, nearer) in front
    assert float(render_depth(g, 0.5, shared).mean()) == pytest.approx(2.1, rel=0.01)


def test_velocities_in_metres_per_second():
    norm = DepthNormalization(0.2, 1.0, True)  # 1-5 m
    y = float(y_hat_of(2.0, norm))
    g = grid_gaussians(torch.full((H, W), y))
    g.velocity[..., 0] = 0.1  # canonical x per pair interval
    g.velocity[..., 1] = 0.05  # towards the camera
    shared = shared_normalization([norm])
    g = rebase_inverse_depth(g, [norm], shared)
    dt = 0.1
    cloud = queue_optical_cloud(g, 1.0, K, shared, dt).result()
    eps = 1e-3
    ahead = queue_optical_cloud(g, 1.0 + eps, K, shared, dt).result()
    numeric = (ahead.positions - cloud.positions) / (eps * dt)
    np.testing.assert_allclose(cloud.velocities, numeric, rtol=2e-2, atol=2e-3)
    assert np.all(cloud.velocities[:, 2] < 0)  # moving nearer
    # x: (W/2)·0.1 px per interval at Z = 2 m is 1.6·2/40 m per 0.1 s (plus the depth term at u != cx)
    centre = np.argmin(np.abs(cloud.positions[:, 0]) + np.abs(cloud.positions[:, 1]))
    assert cloud.velocities[centre, 0] == pytest.approx((W / 2) * 0.1 * 2.0 / K.fx / dt, rel=0.05)


def test_culled_and_faded_gaussians_leave_the_cloud():
    y = torch.full((H, W), 0.5)
    y[0] = 1.5  # outside [0, 1]: culled
    g = grid_gaussians(y)
    g.gamma[:, : 2 * W] = torch.tensor([50.0, 0.1])  # rows 0-1 fade out quickly away from t0
    cloud = queue_optical_cloud(g, 0.5, K, DepthNormalization.relative(), None, min_opacity=0.01).result()
    assert cloud.count == (H - 2) * W and not cloud.metric


def test_shared_frame_keeps_the_near_end_of_very_deep_scenes():
    def frame(far_m, near_m):
        return DepthNormalization(1 / far_m, 1 / near_m, True)

    shared = shared_normalization([frame(3.6, 0.8), frame(3.0, 1.0)])
    assert float(shared.yhat_to_depth(torch.tensor(FAR_MARGIN))) == pytest.approx(3.6, rel=1e-6)
    assert float(shared.yhat_to_depth(torch.tensor(1.0))) < 0.8
    shared = shared_normalization([frame(20.0, 0.3)])  # a 67:1 range cannot fit the 50:1 frame
    assert float(shared.yhat_to_depth(torch.tensor(1 - FAR_MARGIN))) == pytest.approx(0.3, rel=1e-6)
    assert float(shared.yhat_to_depth(torch.tensor(0.0))) < 20.0
