"""The background colour given as numbers is one cached device constant that also works with autograd."""
import torch

from bench.scenes import pixel_aligned_scene
from nut_ros.render import rasterize
from nut_ros.render.projection import LOWPASS
from nut_ros.render.rasterizer import background_vector


def test_numbers_give_one_cached_constant_and_tensors_pass_through():
    like = torch.zeros(2, dtype=torch.float32)
    a, b = background_vector((0.5, 0.25, 1.0), like), background_vector([0.5, 0.25, 1.0], like)
    assert a is b and a.tolist() == [0.5, 0.25, 1.0]
    t = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    assert torch.equal(background_vector(t, like), t.float())


def test_constant_made_under_inference_mode_still_renders_with_gradients():
    background = (0.3, 0.6, 0.9)  # a value no other test uses: the first request happens under inference mode
    inputs = pixel_aligned_scene(8, 6, seed=5)
    with torch.inference_mode():
        rasterize(inputs, 24, 32, background=background, lowpass=LOWPASS)
    means = inputs.means.clone().requires_grad_(True)
    out = rasterize(inputs._replace(means=means), 24, 32, background=background, lowpass=LOWPASS)
    (grad,) = torch.autograd.grad(out.color.sum(), [means])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
