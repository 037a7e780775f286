"""Generated scenes: determinism, value ranges and exactness of the ground-truth trajectories."""
import torch
import torch.nn.functional as F

from nut_ros.train.scenes import SceneConfig, SceneGenerator
from nut_ros.train.texture_pack import load_texture_bank

H, W = 48, 80


def _generator(**overrides) -> SceneGenerator:
    return SceneGenerator(SceneConfig(H, W, frames=4, **overrides), load_texture_bank(), seed=3)


def test_texture_pack_loads():
    bank = load_texture_bank()
    assert bank.shape[1:] == (3, 256, 256) and bank.shape[0] >= 40
    assert 0.2 < float(bank.mean()) < 0.8 and float(bank.std()) > 0.1  # real photographs, not flat colours


def test_clips_are_deterministic_and_well_formed():
    gen = _generator()
    a, b = gen.sample(3, seed=7), gen.sample(3, seed=7)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.tracks, b.tracks)
    assert not torch.equal(a.rgb, gen.sample(3, seed=8).rgb)
    assert a.rgb.shape == (3, 4, 3, H, W) and a.tracks.shape == (3, 2, 4, 3, H, W)
    assert float(a.rgb.min()) >= 0 and float(a.rgb.max()) <= 1
    assert float(a.depth.min()) > 0 and torch.isfinite(a.depth).all()
    assert set(a.moving.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(a.times, torch.tensor([0, 1 / 3, 2 / 3, 1]))


def test_tracks_start_at_their_own_pixels():
    clip = _generator().sample(2, seed=1)
    u = torch.arange(W, dtype=torch.float32).expand(H, W)
    v = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
    for key, frame in ((0, 0), (1, 3)):
        track = clip.tracks[:, key, frame]
        assert torch.allclose(track[:, 0], u, atol=1e-3) and torch.allclose(track[:, 1], v, atol=1e-3)
        assert torch.allclose(track[:, 2], 1 / clip.depth[:, frame, 0], rtol=1e-4)


def test_tracks_warp_key_frame_onto_later_frames():
    """Without lighting changes or noise, a surface point looks the same wherever its track says it went."""
    clip = _generator(lighting_change=0.0, noise_std=0.0).sample(4, seed=2)
    errors = []
    for frame in (1, 3):
        track = clip.tracks[:, 0, frame]
        grid = torch.stack([(track[:, 0] + 0.5) / W * 2 - 1, (track[:, 1] + 0.5) / H * 2 - 1], dim=-1)
        warped = F.grid_sample(clip.rgb[:, frame], grid, align_corners=False)
        depth_there = F.grid_sample(clip.depth[:, frame], grid, mode="nearest", align_corners=False)[:, 0]
        visible = ((1 / depth_there - track[:, 2]).abs() < 0.01 * track[:, 2]) & (grid.abs().amax(-1) < 1)
        assert visible.float().mean() > 0.5
        errors.append((warped - clip.rgb[:, 0]).abs().mean(1)[visible])
    err = torch.cat(errors)
    assert float(err.median()) < 0.005  # exact up to texture interpolation
    shuffled = clip.rgb[:, 0].roll(7, dims=-1)
    assert float((shuffled - clip.rgb[:, 0]).abs().mean()) > 10 * float(err.median())


def test_static_scene_with_static_camera_has_no_motion():
    clip = _generator(moving_prob=0.0, static_camera_prob=1.0).sample(2, seed=4)
    assert float(clip.moving.max()) == 0
    motion = clip.tracks[:, 0, -1, :2] - clip.tracks[:, 0, 0, :2]
    assert float(motion.abs().max()) < 1e-3


def test_moving_objects_move():
    clip = _generator(moving_prob=1.0, static_camera_prob=1.0).sample(4, seed=5)
    moving = clip.moving[:, 0, 0] > 0
    motion = (clip.tracks[:, 0, -1, :2] - clip.tracks[:, 0, 0, :2]).norm(dim=1)
    assert moving.any()
    assert float(motion[moving].mean()) > 0.5 and float(motion[~moving].max()) < 1e-3
