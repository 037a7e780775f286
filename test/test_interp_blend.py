"""PipelineConfig.interp_blend: between a pair's frames, "per_frame" blends each frame's own render by time and
coverage (stream.per_frame_blend), as the flow-warp baseline blends its two warped key frames; "joint" composites
both frames' Gaussians by depth. Key frames render the same either way."""
import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.core.model import build_model
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.stream import StreamingPipeline, per_frame_blend
from nut_ros.pipeline.types import Frame, PipelineConfig

BG = (0.5, 0.5, 0.5)
RED, BLUE = (0.9, 0.05, 0.05), (0.05, 0.05, 0.9)


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return TorchBackend(build_model("tiny", image_size=(48, 96)))


def patch(x0: float, x1: float, color, t0: float, velocity: float, y_hat: float = 0.5, fade=(0.0, 0.0)) -> Gaussians:
    """Opaque Gaussians tiling ``x in [x0, x1]``, ``z in [-0.4, 0.4]`` at inverse-depth slot ``y_hat``, moving
    right at ``velocity`` per unit pair time, with temporal opacity ``fade = (γ0, γ1)``."""
    xs, zs = torch.meshgrid(torch.arange(x0, x1 + 1e-6, 0.02), torch.arange(-0.4, 0.4 + 1e-6, 0.04), indexing="ij")
    n = xs.numel()
    xyz = torch.stack([xs.flatten(), torch.full((n,), y_hat), zs.flatten()], -1)[None]
    return Gaussians(xyz, torch.tensor([velocity, 0.0, 0.0]).expand(1, n, 3).clone(),
                     torch.tensor(color).expand(1, n, 3).clone(), torch.full((1, n, 1), 0.99),
                     torch.full((1, n, 2), 0.03), torch.tensor(fade).expand(1, n, 2).clone(), torch.full((1, n), t0))


def pixel(out, x: float) -> np.ndarray:
    """Normalised colour at canonical ``(x, z = 0)``."""
    h, w = out.color.shape[-2:]
    u, v = round(w / 2 * x + (w - 1) / 2), round((h - 1) / 2)
    return out.color_normalized(BG)[0, :, v, u].numpy()


@pytest.mark.parametrize("t", [0.25, 0.6])
def test_per_frame_blends_the_two_frames_by_time_where_the_joint_render_shows_the_front_one(backend, t):
    # one surface moving right by 0.4 per pair interval, seen red in the older frame and blue in the newer one (a
    # lighting change); the newer frame's estimate of its depth is slightly nearer
    old = patch(-0.3, 0.1, RED, 0.0, 0.4)
    new = patch(0.1, 0.5, BLUE, 1.0, 0.4, y_hat=0.55)
    pair = Gaussians.cat(old, new)
    x = -0.1 + 0.4 * t  # the patch centre at time t, where both frames' Gaussians land
    mixed = per_frame_blend(backend, pair, t, BG)
    expected = (1 - t) * np.array(RED) + t * np.array(BLUE)
    np.testing.assert_allclose(pixel(mixed, x), expected, atol=0.03)
    np.testing.assert_allclose(pixel(backend.render(pair, t, BG), x), BLUE, atol=0.03)  # depth order, not time
    assert torch.all(mixed.alpha <= 1) and mixed.alpha.max() > 0.99


def test_a_hole_in_one_frame_is_left_to_the_other(backend):
    # the older frame sees [-0.5, -0.1] (static), the newer one [0.1, 0.5] at t = 0.75 (moving right by 0.4)
    pair = Gaussians.cat(patch(-0.5, -0.1, RED, 0.0, 0.0, fade=(6.5, 0.5)),
                         patch(0.2, 0.6, BLUE, 1.0, 0.4, fade=(6.5, 0.5)))
    mixed = per_frame_blend(backend, pair, 0.75, BG)
    np.testing.assert_allclose(pixel(mixed, 0.35), BLUE, atol=0.03)  # not 0.25·background + 0.75·blue
    np.testing.assert_allclose(pixel(mixed, -0.3), RED, atol=0.03)  # not 0.75·red + 0.25·background
    np.testing.assert_allclose(pixel(mixed, -0.9), BG, atol=0.03)  # neither: the background, as one render


def frames(k: int):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    for i in range(k):
        yield Frame(np.roll(base, 4 * i, axis=1), (i + 1) * 33_000_000)


def test_pipeline_blends_per_frame_between_key_frames_only(backend):
    results = {}
    for mode in ("joint", "per_frame"):
        pipe = StreamingPipeline(backend, PipelineConfig(render_times=(0.5, 1.0), interp_blend=mode))
        results[mode] = [pipe.push(f) for f in frames(2)][-1]
        if mode == "per_frame":
            expected = per_frame_blend(backend, pipe._live.gaussians, 0.5, BG).color_normalized(BG)[0]
            rgb = (expected.clamp(0, 1) * 255 + 0.5).floor().permute(1, 2, 0).numpy().astype(np.uint8)
            np.testing.assert_array_equal(results[mode].view_at(0.5).rgb, rgb)
    joint, per_frame = results["joint"], results["per_frame"]
    np.testing.assert_array_equal(joint.newest.rgb, per_frame.newest.rgb)  # the key frame: one render in both
    np.testing.assert_array_equal(joint.newest.alpha, per_frame.newest.alpha)
    assert np.abs(joint.view_at(0.5).rgb.astype(int) - per_frame.view_at(0.5).rgb).max() > 0


def test_unknown_interp_blend_is_refused(backend):
    with pytest.raises(ValueError, match="interp_blend"):
        StreamingPipeline(backend, PipelineConfig(interp_blend="union"))
