"""Rasterizer semantics on hand-made scenes: analytic footprints, depth order, early stop, culling, gradients."""
import math

import pytest
import torch

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render import project_gaussians, rasterize
from nut_ros.render.projection import LOWPASS
from bench.scenes import pixel_aligned_scene

BG = (0.5, 0.5, 0.5)


def scene(means, scales, opacities, colors, rotations=None, dtype=torch.float32) -> RasterInputs:
    t = lambda v: torch.as_tensor(v, dtype=dtype)[None]  # noqa: E731
    n = len(means)
    rot = rotations if rotations is not None else [[1.0, 0.0, 0.0, 0.0]] * n
    return RasterInputs(t(means), t(scales), t(rot), t(opacities).reshape(1, n, 1), t(colors))


@pytest.mark.parametrize("lowpass", [LOWPASS, 0.1])  # the reference's 0.3 px², our configs' 0.1
def test_single_gaussian_matches_analytic_footprint(lowpass):
    h, w = 40, 64
    sx, sz, o, d = 0.05, 0.08, 0.7, 2.0
    x, z = 0.1, -0.2
    out = rasterize(scene([[x, d, z]], [[sx, 0.1, sz]], [o], [[1.0, 0.0, 0.25]]), h, w, lowpass=lowpass)
    u, v = (w / 2) * x + (w - 1) / 2, -(h / 2) * z + (h - 1) / 2
    var_u, var_v = (w / 2 * sx) ** 2 + lowpass, (h / 2 * sz) ** 2 + lowpass
    py, px = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    alpha = o * torch.exp(-0.5 * ((px - u) ** 2 / var_u + (py - v) ** 2 / var_v))
    radius = math.ceil(3 * math.sqrt(max(var_u, var_v)))
    tile_x = (px // 16 >= int((u - radius) / 16)) & (px // 16 < int((u + radius + 15) / 16))
    tile_y = (py // 16 >= int((v - radius) / 16)) & (py // 16 < int((v + radius + 15) / 16))
    alpha = torch.where((alpha >= 1 / 255) & tile_x & tile_y, alpha.clamp(max=0.99), torch.zeros_like(alpha))
    assert torch.allclose(out.alpha[0, 0].double(), alpha, atol=1e-6)
    assert torch.allclose(out.depth[0, 0].double(), alpha * d, atol=1e-5)
    expect = alpha * torch.tensor([1.0, 0.0, 0.25], dtype=torch.float64)[:, None, None] + (1 - alpha) * 0.5
    assert torch.allclose(out.color[0].double(), expect, atol=1e-6)
    assert torch.allclose(out.depth_normalized()[0, 0][alpha > 0.01].double(), torch.tensor(d, dtype=torch.float64))


def test_depth_order_not_index_order():
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    near_first = scene([[0, 1.0, 0], [0, 3.0, 0]], [[0.3] * 3] * 2, [0.9, 0.9], [red, blue])
    far_first = scene([[0, 3.0, 0], [0, 1.0, 0]], [[0.3] * 3] * 2, [0.9, 0.9], [blue, red])
    a, b = rasterize(near_first, 16, 16, lowpass=LOWPASS), rasterize(far_first, 16, 16, lowpass=LOWPASS)
    assert torch.allclose(a.color, b.color) and torch.allclose(a.depth, b.depth)
    centre = a.color[0, :, 7, 7]
    assert centre[0] > 5 * centre[2]  # red (near) in front of blue


def test_equal_depth_ties_follow_index_order():
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    for first, second in ((red, blue), (blue, red)):
        out = rasterize(scene([[0, 2.0, 0], [0, 2.0, 0]], [[0.3] * 3] * 2, [0.9, 0.9], [first, second]), 16, 16,
                        lowpass=LOWPASS)
        front = 0 if first is red else 2
        assert out.color[0, front, 7, 7] > 5 * out.color[0, 2 - front, 7, 7]


def test_early_stop_excludes_the_gaussian_that_crosses_the_threshold():
    # u = v = 0 at W = H = 1 is the single pixel's centre: power = 0, alpha = opacity exactly
    colors = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
    depths = [1.0, 1.5, 2.0, 2.5, 3.0]
    inputs = scene([[0, d, 0] for d in depths], [[0.5] * 3] * 5, [0.95] * 5, colors, dtype=torch.float64)
    out = rasterize(inputs, 1, 1, lowpass=LOWPASS)
    t, color, depth = 1.0, torch.zeros(3, dtype=torch.float64), 0.0
    for c, d in zip(colors, depths):
        if t * 0.05 < 1e-4:
            break
        color += 0.95 * t * torch.tensor(c, dtype=torch.float64)
        depth += 0.95 * t * d
        t *= 0.05
    assert t == pytest.approx(0.05**3)  # three Gaussians composited, the fourth stops the pixel
    assert out.alpha.item() == pytest.approx(1 - t, abs=1e-12)
    assert torch.allclose(out.color[0, :, 0, 0], color + t * 0.5, atol=1e-12)
    assert out.depth.item() == pytest.approx(depth, abs=1e-12)


def test_culling_and_background():
    inputs = scene([[0, -0.5, 0], [0, 0.0, 0], [3.0, 1.0, 0], [0, 1.0, 0]], [[0.2] * 3] * 4,
                   [0.9, 0.9, 0.9, 0.001], [[1, 0, 0]] * 4)
    out = rasterize(inputs, 24, 32, background=(0.1, 0.2, 0.3), lowpass=LOWPASS)
    assert out.alpha.abs().max() == 0 and out.depth.abs().max() == 0
    assert torch.allclose(out.color[0], torch.tensor([0.1, 0.2, 0.3])[:, None, None].expand(3, 24, 32))


def test_normalised_colour_is_the_splats_colour_without_the_background():
    # a wide faded red splat with a narrow opaque blue one in front: partial cover everywhere but the centre
    out = rasterize(scene([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]], [[0.05, 0.1, 0.05], [2.0, 0.1, 2.0]], [0.99, 0.3],
                          [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), 16, 16, background=BG, lowpass=LOWPASS)
    normalised = out.color_normalized(BG)
    alpha = out.alpha[0, 0]
    corner = normalised[0, :, 0, 0]
    assert 0.02 < alpha[0, 0] < 0.35
    torch.testing.assert_close(corner, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5, rtol=0)  # red, no grey mixed in
    assert abs(out.color[0, 0, 0, 0].item() - 1.0) > 0.3  # the composite is mostly background there
    bg = torch.tensor(BG).reshape(1, 3, 1, 1)
    torch.testing.assert_close(normalised * out.alpha + (1 - out.alpha) * bg, out.color)  # compositing undone exactly
    assert normalised[0, 2, 7:9, 7:9].min() > out.color[0, 2, 7:9, 7:9].max()  # the blue centre loses its grey
    empty = rasterize(scene([[0.0, -1.0, 0.0]], [[0.05, 0.1, 0.05]], [0.9], [[1.0, 0.0, 0.0]]), 8, 8, background=BG,
                      lowpass=LOWPASS)
    torch.testing.assert_close(empty.color_normalized(BG), empty.color)  # nothing visible: the background stays


def test_batch_elements_are_independent():
    a, b = pixel_aligned_scene(16, 9, seed=1), pixel_aligned_scene(16, 9, seed=2)
    both = RasterInputs(*(torch.cat([x, y]) for x, y in zip(a, b)))
    out = rasterize(both, 36, 64, lowpass=LOWPASS)
    for i, single in enumerate((a, b)):
        ref = rasterize(single, 36, 64, lowpass=LOWPASS)
        assert torch.equal(out.color[i:i + 1], ref.color) and torch.equal(out.depth[i:i + 1], ref.depth)


@pytest.fixture
def one_thread():
    """Hundreds of tiny renders: faster (and immune to a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gradcheck_float64(one_thread):
    inputs = [t.double() for t in pixel_aligned_scene(3, 2, random_rotations=True, seed=3)]
    inputs[1] = inputs[1] * 3  # overlapping footprints
    args = [t.clone().requires_grad_(True) for t in inputs]

    def render(*a):
        return tuple(rasterize(RasterInputs(*a), 10, 16, background=(0.2, 0.5, 0.7), lowpass=LOWPASS))

    assert torch.autograd.gradcheck(render, args, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_means_get_no_gradient_through_the_covariance():
    """The Jacobian is constant: colour and alpha do not depend on depth (the reference backward says otherwise)."""
    inputs = pixel_aligned_scene(8, 6, seed=4)
    means = inputs.means.clone().requires_grad_(True)
    out = rasterize(inputs._replace(means=means), 24, 32, lowpass=LOWPASS)
    (grad,) = torch.autograd.grad(out.color.sum() + out.alpha.sum(), means)
    assert grad[..., 1].abs().max() == 0 and grad[..., 0].abs().max() > 0


def test_unknown_or_unavailable_impl():
    inputs = pixel_aligned_scene(4, 3)
    with pytest.raises(ValueError):
        rasterize(inputs, 8, 8, impl="opengl", lowpass=LOWPASS)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            rasterize(inputs, 8, 8, impl="cuda", lowpass=LOWPASS)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    inputs = pixel_aligned_scene(128, 72, random_rotations=True, seed=5)
    cpu = rasterize(inputs, 144, 256, impl="torch", lowpass=LOWPASS)
    for impl in ("torch", "cuda"):
        gpu = rasterize(RasterInputs(*(t.cuda() for t in inputs)), 144, 256, impl=impl, lowpass=LOWPASS)
        for name in ("color", "depth", "alpha"):
            err = (getattr(gpu, name).cpu() - getattr(cpu, name)).abs().max().item()
            assert err <= 1e-3, (impl, name, err)


def sequential_reference(inputs: RasterInputs, height: int, width: int, bg: float = 0.5):
    """The kernel's per-pixel loop written directly (a loop over depth-sorted Gaussians, vectorised over pixels)."""
    proj = project_gaussians(*inputs[:3], height, width)
    py, px = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    tx, ty = px // 16, py // 16
    color, depth, acc = torch.zeros(3, height, width, dtype=torch.float64), torch.zeros_like(px), torch.zeros_like(px)
    trans, done = torch.ones_like(px), torch.zeros_like(px, dtype=torch.bool)
    for i in torch.sort(proj.depth[0], stable=True).indices.tolist():
        if not proj.visible[0, i]:
            continue
        (x0, y0), (x1, y1) = proj.rect_min[0, i].tolist(), proj.rect_max[0, i].tolist()
        a, b, c = proj.conic[0, i].tolist()
        dx, dy = proj.uv[0, i, 0].item() - px, proj.uv[0, i, 1].item() - py
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = (inputs.opacities[0, i, 0].item() * torch.exp(power)).clamp(max=0.99)
        use = (tx >= x0) & (tx < x1) & (ty >= y0) & (ty < y1) & (power <= 0) & (alpha >= 1 / 255) & ~done
        stop = use & (trans * (1 - alpha) < 1e-4)
        done |= stop
        w = torch.where(use & ~stop, alpha * trans, torch.zeros_like(alpha))
        color += w * inputs.colors[0, i, :, None, None].double()
        depth += w * proj.depth[0, i].item()
        acc += w
        trans = torch.where(use & ~stop, trans * (1 - alpha), trans)
    return color + trans * bg, depth, acc


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sequential_loop_with_elongated_rotated_gaussians(seed):
    g = torch.Generator().manual_seed(seed)
    n = 60
    means = torch.cat([torch.rand(1, n, 1, generator=g) * 2.4 - 1.2, 0.2 + 4 * torch.rand(1, n, 1, generator=g),
                       torch.rand(1, n, 1, generator=g) * 2.4 - 1.2], -1).double()
    scales = (0.003 + 0.2 * torch.rand(1, n, 3, generator=g) ** 2).double()  # from sub-pixel to long needles
    rotations = torch.randn(1, n, 4, generator=g).double()  # unnormalised, as the kernel uses them
    inputs = RasterInputs(means, scales, rotations, torch.rand(1, n, 1, generator=g).double(),
                          torch.rand(1, n, 3, generator=g).double())
    out = rasterize(inputs, 40, 56, lowpass=LOWPASS)
    color, depth, acc = sequential_reference(inputs, 40, 56)
    assert torch.allclose(out.color[0], color, atol=1e-9)
    assert torch.allclose(out.depth[0, 0], depth, atol=1e-9)
    assert torch.allclose(out.alpha[0, 0], acc, atol=1e-9)
