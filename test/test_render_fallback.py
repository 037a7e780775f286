"""``rasterize(impl="auto")`` falls back to torch, warning once, when the CUDA extension cannot be imported or built."""
import warnings

import pytest
import torch

from nut_ros.render import rasterize, rasterizer
from nut_ros.render.projection import LOWPASS
from nut_ros.render._torch_impl import rasterize_torch
from bench.scenes import pixel_aligned_scene


class _OnGpu(torch.Tensor):
    """A CPU tensor that reports ``is_cuda`` so ``rasterize`` takes its GPU branch on this CPU-only machine."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture(params=[ImportError("no CUDA device"), RuntimeError("nvcc: build failed")], ids=["import", "build"])
def broken_loader(request, monkeypatch):
    def fail():
        raise request.param

    monkeypatch.setattr(rasterizer, "_import_cuda", fail)
    _clear_caches()
    yield str(request.param)
    _clear_caches()


def _clear_caches():
    rasterizer._cuda_rasterizer.cache_clear()
    rasterizer._warn_fallback.cache_clear()


def test_auto_falls_back_to_torch_with_one_warning(broken_loader):
    inputs = pixel_aligned_scene(8, 6, seed=3)
    gpu_like = inputs._replace(means=inputs.means.as_subclass(_OnGpu))
    with pytest.warns(RuntimeWarning, match=broken_loader):
        first = rasterize(gpu_like, 24, 32, lowpass=LOWPASS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would fail here
        second = rasterize(gpu_like, 24, 32, lowpass=LOWPASS)
    want = rasterize_torch(*inputs, 24, 32, torch.full((3,), 0.5))
    for got in (first, second):
        for g, w in zip(got, want):
            assert torch.equal(g.as_subclass(torch.Tensor), w)


def test_cuda_impl_raises_with_the_cause(broken_loader):
    inputs = pixel_aligned_scene(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "falling back" warning: impl="cuda" does not fall back
        with pytest.raises(RuntimeError, match=broken_loader):
            rasterize(inputs, 16, 16, impl="cuda", lowpass=LOWPASS)


def test_cpu_tensors_never_touch_the_loader(monkeypatch):
    def fail():
        raise AssertionError("the CUDA loader must not run for CPU tensors")

    monkeypatch.setattr(rasterizer, "_import_cuda", fail)
    _clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rasterize(pixel_aligned_scene(4, 4), 16, 16, lowpass=LOWPASS)
    _clear_caches()
