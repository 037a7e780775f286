"""The compiled CPU rasterizer (``nut_ros.render._cpu``, ``impl="cpu"``) against the torch rasterizer, the
kernel's per-pixel loop and the reference rasterizer's outputs; when ``impl="auto"`` uses it; what happens without
a compiler."""
import math
import os
import warnings

import pytest
import torch
from safetensors.torch import load_file

from nut_ros.core.gaussians import RasterInputs
from nut_ros.render import _cpu, rasterize, rasterizer
from nut_ros.render.projection import LOWPASS
from bench.scenes import pixel_aligned_scene
from test_render_oracle import FIELDS, oracle  # noqa: F401  (the fixture)
from test_render_semantics import sequential_reference

pytestmark = pytest.mark.skipif(_cpu.compiler() is None, reason="no C++ compiler")


def test_matches_the_torch_rasterizer_on_batches_of_odd_sizes():
    inputs = pixel_aligned_scene(64, 36, batch=2, random_rotations=True, seed=3)
    for height, width in ((72, 128), (70, 125), (1, 1)):
        torch_out = rasterize(inputs, height, width, impl="torch", lowpass=LOWPASS)
        cpu_out = rasterize(inputs, height, width, impl="cpu", lowpass=LOWPASS)
        for name in ("color", "depth", "alpha"):
            got, want = getattr(cpu_out, name), getattr(torch_out, name)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert (got - want).abs().max().item() <= 1e-5, (height, width, name)


@pytest.mark.parametrize("lowpass", [0.1, 0.7])
def test_its_own_projection_matches_torch_with_bad_values_and_other_lowpasses(lowpass):
    """The kernel projects the Gaussians itself (``project_gaussians`` in C++): with NaN, infinite and huge means,
    scales and rotations among ordinary ones, and at other low-passes than the reference's, it renders what the torch
    rasterizer renders (the bad ones culled, or drawn, alike)."""
    inputs = pixel_aligned_scene(32, 18, batch=1, random_rotations=True, seed=5)
    means, scales, rotations = (t.clone() for t in (inputs.means, inputs.scales, inputs.rotations))
    bad = (float("nan"), float("inf"), -float("inf"), 1e19, 3e38)
    for i, value in enumerate(bad):
        # depth (y) only NaN or -inf, both culled (a Gaussian drawn at an infinite or huge depth differs: the torch
        # rasterizer's depth sort and sums treat it otherwise, as before the kernel projected)
        for axis in (0, 2) if value in (float("inf"), 1e19, 3e38) else (0, 1, 2):
            means[0, 7 * i + axis, axis] = value
        scales[0, 7 * i + 3, i % 3] = value
        rotations[0, 7 * i + 4, i % 4] = value
    inputs = RasterInputs(means, scales, rotations, inputs.opacities, inputs.colors)
    for height, width in ((36, 64), (35, 61)):
        torch_out = rasterize(inputs, height, width, impl="torch", lowpass=lowpass)
        cpu_out = rasterize(inputs, height, width, impl="cpu", lowpass=lowpass)
        for name in ("color", "depth", "alpha"):
            torch.testing.assert_close(getattr(cpu_out, name), getattr(torch_out, name), rtol=1e-5, atol=1e-5,
                                       equal_nan=True, msg=f"{height}x{width} {name}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_kernel_loop_with_needles_off_screen_and_behind(seed):
    g = torch.Generator().manual_seed(seed)
    n = 80
    means = torch.cat([torch.rand(1, n, 1, generator=g) * 2.4 - 1.2, 4 * torch.rand(1, n, 1, generator=g) - 0.3,
                       torch.rand(1, n, 1, generator=g) * 2.4 - 1.2], -1)
    scales = 0.003 + 0.2 * torch.rand(1, n, 3, generator=g) ** 2  # from sub-pixel to long needles
    inputs = RasterInputs(means, scales, torch.randn(1, n, 4, generator=g), torch.rand(1, n, 1, generator=g),
                          torch.rand(1, n, 3, generator=g))
    out = rasterize(inputs, 40, 56, impl="cpu", lowpass=LOWPASS)
    color, depth, acc = sequential_reference(RasterInputs(*(t.double() for t in inputs)), 40, 56)
    assert torch.allclose(out.color[0].double(), color, atol=2e-5)
    assert torch.allclose(out.depth[0, 0].double(), depth, atol=1e-4)
    assert torch.allclose(out.alpha[0, 0].double(), acc, atol=2e-5)


@pytest.mark.parametrize("scene", range(5))
def test_reference_rasterizer_scenes(oracle, scene):  # noqa: F811
    tensors, meta = oracle
    info = meta["scenes"][scene]
    inputs = RasterInputs(*(tensors[f"{info['key']}.in.{f}"][None] for f in FIELDS))
    out = rasterize(inputs, info["H"], info["W"], impl="cpu", lowpass=LOWPASS)
    for name in ("color", "depth", "alpha"):
        assert (getattr(out, name)[0] - tensors[f"{info['key']}.out.{name}"]).abs().max().item() <= 1e-3, name


def test_an_empty_scene_is_the_background():
    none = RasterInputs(torch.zeros(1, 0, 3), torch.zeros(1, 0, 3), torch.zeros(1, 0, 4), torch.zeros(1, 0, 1),
                        torch.zeros(1, 0, 3))
    out = rasterize(none, 9, 14, background=(0.1, 0.2, 0.3), impl="cpu", lowpass=LOWPASS)
    assert out.alpha.abs().max() == 0 and out.depth.abs().max() == 0
    assert torch.equal(out.color[0], torch.tensor([0.1, 0.2, 0.3])[:, None, None].expand(3, 9, 14))


def test_auto_renders_float32_without_gradients_with_it_and_the_rest_with_torch():
    inputs = pixel_aligned_scene(32, 18, seed=1)
    cpu_out = rasterize(inputs, 36, 64, impl="cpu", lowpass=LOWPASS)
    torch_out = rasterize(inputs, 36, 64, impl="torch", lowpass=LOWPASS)
    assert not torch.equal(cpu_out.color, torch_out.color), "the two differ in rounding: the test can tell them apart"
    assert torch.equal(rasterize(inputs, 36, 64, lowpass=LOWPASS).color, cpu_out.color)
    with torch.inference_mode():
        assert torch.equal(rasterize(inputs, 36, 64, lowpass=LOWPASS).color, cpu_out.color)
    wanting = inputs._replace(colors=inputs.colors.clone().requires_grad_())
    auto = rasterize(wanting, 36, 64, lowpass=LOWPASS)
    assert auto.color.requires_grad and torch.equal(auto.color.detach(), torch_out.color)
    with pytest.raises(RuntimeError, match="gradients"):
        rasterize(wanting, 36, 64, impl="cpu", lowpass=LOWPASS)
    float64 = RasterInputs(*(t.double() for t in inputs))
    assert torch.equal(rasterize(float64, 36, 64, lowpass=LOWPASS).color,
                       rasterize(float64, 36, 64, impl="torch", lowpass=LOWPASS).color)


def test_the_build_is_kept_per_source_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("NUT_ROS_CACHE", str(tmp_path))
    _cpu.library.cache_clear()
    try:
        _cpu.library()
        built = list(tmp_path.glob("ortho_raster_cpu_*.so"))
        assert len(built) == 1
        _cpu.library.cache_clear()
        _cpu.library()  # loaded from the cache, not built again
        assert list(tmp_path.glob("ortho_raster_cpu_*.so")) == built
        assert not [p for p in tmp_path.iterdir() if p.is_dir()], "no build folder left behind"
        # another CPU (a cache shared over NFS) and an edited source each get a build of their own
        monkeypatch.setattr(_cpu, "cpu_identity", lambda: "another-cpu")
        _cpu.library.cache_clear()
        _cpu.library()
        edited = tmp_path / "src" / _cpu.SOURCE.name
        edited.parent.mkdir()
        edited.write_text(_cpu.SOURCE.read_text() + "\n// edited\n")
        monkeypatch.setattr(_cpu, "SOURCE", edited)
        _cpu.library.cache_clear()
        _cpu.library()
        assert len(set(tmp_path.glob("ortho_raster_cpu_*.so"))) == 3
    finally:
        _cpu.library.cache_clear()


def test_without_a_compiler_auto_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("NUT_ROS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    _cpu.library.cache_clear()
    rasterizer._kernel.cache_clear()
    rasterizer._warn_fallback.cache_clear()
    inputs = pixel_aligned_scene(16, 9, seed=2)
    try:
        with pytest.raises(RuntimeError, match="no-such-compiler"):
            rasterize(inputs, 18, 32, impl="cpu", lowpass=LOWPASS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = rasterize(inputs, 18, 32, lowpass=LOWPASS)
            rasterize(inputs, 18, 32, lowpass=LOWPASS)
        assert [str(w.message)[:38] for w in caught] == ["CPU rasterizer unavailable, rendering "]
        assert torch.equal(out.color, rasterize(inputs, 18, 32, impl="torch", lowpass=LOWPASS).color)
    finally:
        _cpu.library.cache_clear()
        rasterizer._kernel.cache_clear()
        rasterizer._warn_fallback.cache_clear()


def test_chunked_lists_give_the_same_image_and_one_thread_too():
    inputs = pixel_aligned_scene(64, 36, batch=2, random_rotations=True, seed=4)
    bg = torch.tensor([0.5, 0.5, 0.5])
    whole = _cpu.rasterize_cpu(*inputs, 72, 128, bg, LOWPASS, threads=2)
    for threads, max_entries in ((2, 1000), (1, 1), (1, _cpu.MAX_ENTRIES)):
        part = _cpu.rasterize_cpu(*inputs, 72, 128, bg, LOWPASS, threads=threads, max_entries=max_entries)
        assert all(torch.equal(a, b) for a, b in zip(whole, part)), (threads, max_entries)


def test_an_unwritable_cache_folder_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NUT_ROS_CACHE", str(blocked / "nut_ros"))
    monkeypatch.setattr(_cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert _cpu.cache_dir().parent == tmp_path / "tmp"
    _cpu.library.cache_clear()
    try:
        out = _cpu.rasterize_cpu(*pixel_aligned_scene(8, 6, seed=1), 12, 16, torch.full((3,), 0.5), LOWPASS)
        assert out[0].shape == (1, 3, 12, 16)
        assert list((tmp_path / "tmp").glob("nut_ros-*/ortho_raster_cpu_*.so"))
    finally:
        _cpu.library.cache_clear()


def test_a_fallback_folder_another_user_could_write_to_is_refused(tmp_path, monkeypatch):
    """A library is loaded from the temporary directory only out of a folder of this user's alone."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NUT_ROS_CACHE", str(blocked / "nut_ros"))
    monkeypatch.setattr(_cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    planted = tmp_path / "tmp" / f"nut_ros-{os.getuid()}"
    planted.mkdir(parents=True)
    planted.chmod(0o777)
    with pytest.raises(PermissionError, match="NUT_ROS_CACHE"):
        _cpu.cache_dir()


@pytest.mark.parametrize("bad, says", [(dict(colors=torch.ones(1, 4, 3)), "colors"),
                                       (dict(opacities=torch.ones(2, 4)), "opacities"),
                                       (dict(means=torch.zeros(2, 4, 3, device="meta")), "means")])
def test_the_cpu_kernel_refuses_inputs_it_would_read_past(bad, says):
    """The compiled kernel checks nothing itself: shapes and devices are checked before it runs."""
    good = dict(means=torch.zeros(2, 4, 3), scales=torch.ones(2, 4, 3), rotations=torch.tensor([1.0, 0, 0, 0]).repeat(
        2, 4, 1), opacities=torch.ones(2, 4, 1), colors=torch.ones(2, 4, 3))
    inputs = {**good, **bad}
    with pytest.raises(ValueError, match=says):
        _cpu.rasterize_cpu(*inputs.values(), 12, 16, torch.full((3,), 0.5), LOWPASS)


def test_a_gaussian_whose_float32_conic_is_indefinite_is_culled_by_the_torch_and_cpu_paths():
    """A needle (16.7 x 1e-3 x 1e-3) turned 46 degrees, alone, rounds to a negative determinant at 256x144: the
    torch path drew it over the whole image (alpha > 0.9 on 36,736 of 36,864 pixels), the CPU kernel as a band."""
    th = math.radians(46.0) / 2
    inputs = RasterInputs(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([[[16.713125, 1e-3, 1e-3]]]),
                          torch.tensor([[[math.cos(th), 0.0, math.sin(th), 0.0]]]), torch.tensor([[[0.5]]]),
                          torch.tensor([[[1.0, 0.0, 0.0]]]))
    for impl in ("torch", "cpu"):
        assert rasterize(inputs, 144, 256, impl=impl, lowpass=0.1).alpha.max() == 0, impl
