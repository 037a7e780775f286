"""Model API (docs/ARCHITECTURE.md): shapes, ranges, encode/decode vs forward, training paths, registry."""
import pytest
import torch

from nut_ros.core.config import CONFIGS, get_config
from nut_ros.core.model import FrameCache, NutModel, build_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def _inputs(cfg, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_size
    rgb = torch.rand(b, 3, h, w, generator=g)
    disp = torch.cat([torch.rand(b, 1, h, w, generator=g), torch.ones(b, 1, h, w)], 1)
    return rgb, disp


def test_tiny_encode_decode_shapes_and_ranges(tiny):
    cfg = tiny.config
    n = cfg.gaussians_per_frame
    assert n == 9216
    rgb, disp = _inputs(cfg, b=2)
    with torch.no_grad():
        prev = tiny.encode(rgb, disp)
        cur = tiny.encode(rgb.flip(-1), disp)
        g = tiny.decode(prev, cur)
    assert isinstance(prev, FrameCache) and all(isinstance(t, torch.Tensor) for t in prev)
    assert prev.tokens.shape == (2, cfg.num_tokens, cfg.width)
    assert prev.features.shape == (2, n, cfg.feature_dim)
    assert prev.condition.shape == (2, cfg.condition_tokens, cfg.condition_dim)
    assert g.xyz.shape == (2, 2 * n, 3) and g.gamma.shape == (2, 2 * n, 2) and g.t0.shape == (2, 2 * n)
    assert torch.equal(g.xyz[:, :n], prev.xyz) and torch.equal(g.xyz[:, n:], cur.xyz)
    assert (g.t0[:, :n] == 0).all() and (g.t0[:, n:] == 1).all()
    assert ((g.opacity > 0.05) & (g.opacity < 1)).all() and ((g.rgb > 0) & (g.rgb < 1)).all() and (g.scale > 0).all()
    assert (g.gamma[..., 0] >= 0).all() and ((g.gamma[..., 1] > 0) & (g.gamma[..., 1] < 1)).all()
    bound = torch.tensor([0.5, 0.1, 0.5])
    assert (g.velocity.abs() < bound).all() and g.velocity.abs().max() > 0
    # positions stay within ±1 Gaussian cell of the pixel-aligned grid
    gh, gw = cfg.gaussian_grid
    head = tiny.gs_predictor.predictor
    assert ((prev.xyz[..., 0] - head.x_map).abs() <= 1 / gw).all()
    assert ((prev.xyz[..., 2] - head.z_map).abs() <= 1 / gh).all()
    assert ((prev.xyz[..., 1] >= 0) & (prev.xyz[..., 1] <= 1)).all()


def test_forward_equals_encode_then_decode_and_batches_are_independent(tiny):
    rgb, disp = _inputs(tiny.config, b=2, seed=1)
    frames = torch.stack([rgb, rgb.roll(8, -1)], 1)
    disps = torch.stack([disp, disp.roll(8, -1)], 1)
    with torch.no_grad():
        g = tiny(frames, disps)
        single = tiny.decode(tiny.encode(frames[1:, 0], disps[1:, 0]), tiny.encode(frames[1:, 1], disps[1:, 1]))
    for name in ("xyz", "velocity", "rgb", "opacity", "scale", "gamma", "t0"):
        # float32 kernels may pick batch-size-dependent reduction orders; 1e-5 is that noise, not cross-talk
        torch.testing.assert_close(getattr(g, name)[1:], getattr(single, name), atol=1e-5, rtol=1e-5)


def test_rgb_only_input_changes_output(tiny):
    """The validity channel is a real input: an all-zero mask (no depth) must change the prediction."""
    rgb, disp = _inputs(tiny.config)
    no_depth = torch.zeros_like(disp)
    with torch.no_grad():
        a, b = tiny.encode(rgb, disp), tiny.encode(rgb, no_depth)
    assert (a.xyz - b.xyz).abs().max() > 1e-4


def test_encode_static_is_motionless(tiny):
    rgb, disp = _inputs(tiny.config)
    with torch.no_grad():
        g = tiny.encode_static(rgb, disp)
    assert g.count == 9216 and not g.velocity.any() and not g.gamma.any() and not g.t0.any()


def test_training_samples_positions_and_velocities_with_gradients():
    torch.manual_seed(0)
    model = build_model("tiny", encoder_layers=1, decoder_layers=1).train()
    rgb, disp = _inputs(model.config)
    g1 = model.encode_static(rgb, disp)
    g2 = model.encode_static(rgb, disp)
    assert (g1.xyz - g2.xyz).abs().max() > 0  # sampled
    g1.xyz.sum().backward()
    head = model.gs_predictor.predictor.mix_layer
    assert head["xyz_static_mean"].weight.grad.abs().sum() > 0 and head["xyz_static_scale"].weight.grad.abs().sum() > 0

    model.zero_grad()
    model.freeze_static().train()
    assert not model.gs_predictor.training and model.decoder.training
    frames = torch.stack([rgb, rgb.roll(4, -1)], 1)
    disps = torch.stack([disp, disp], 1)
    a, b = model(frames, disps), model(frames, disps)
    assert torch.equal(a.xyz, b.xyz)  # frozen static encoder: deterministic positions
    assert (a.velocity - b.velocity).abs().max() > 0  # velocities sampled
    a.velocity.square().sum().backward()
    dyn = model.gs_dynamic_predictor.gs_layer
    assert dyn["xyz_dynamic_scale"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.gs_predictor.parameters())


def test_registry():
    assert set(CONFIGS) >= {"streamsplat", "small", "tiny"}
    assert get_config("small").gaussians_per_frame == 288 * 512  # one per pixel
    assert get_config("small").stage_layers == (2, 2, 0) and get_config("tiny").stage_layers == (1, 1)
    assert get_config("streamsplat").gaussians_per_frame == 36864
    assert get_config("tiny", width=192).width == 192
    with pytest.raises(KeyError, match="unknown model config"):
        get_config("huge")
    cfg = get_config("tiny", dino=dict(depth=3))
    assert cfg.dino.depth == 3 and cfg.dino.embed_dim == 768


def _reference_rows(path, checkpoint):
    rows = {}
    for line in path.read_text().splitlines():
        kind, key, shape = line.split("\t")
        if kind.startswith(checkpoint):
            rows[key] = tuple(int(s) for s in shape.strip("[]").split(","))
    return rows


def test_streamsplat_state_dict_matches_reference_keys(fixtures_dir):
    """Every key and shape of the reference inference checkpoint, and no other (built on the meta device)."""
    with torch.device("meta"):
        model = NutModel(get_config("streamsplat"))
    ref = _reference_rows(fixtures_dir / "model_streamsplat_keys.tsv", "inference")
    ours = {"model." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("condition_encoder."))
    assert params == 181_689_998
    dino = _reference_rows(fixtures_dir / "model_streamsplat_keys.tsv", "frozen")
    ours = {"model.condition_encoder.model." + k: tuple(v.shape)
            for k, v in model.condition_encoder.model.state_dict().items()}
    assert ours == dino


def test_silu_of_fresh_activations_is_in_place_only_without_gradients():
    """Inference writes the SiLU over the layer's output (no second 4x-wide tensor); training keeps the input its
    gradient needs, with the gradient of plain SiLU."""
    import torch.nn.functional as F

    from nut_ros.core.layers import silu_fresh

    x = torch.randn(64, 32)
    expected = F.silu(x)
    with torch.inference_mode():
        fresh = x.clone()
        assert silu_fresh(fresh) is fresh and torch.equal(fresh, expected)
    leaf = x.clone().requires_grad_()
    hidden = leaf * 2.0
    out = silu_fresh(hidden)
    assert out is not hidden and torch.equal(hidden, 2 * x), "the input kept for the gradient"
    out.sum().backward()
    reference = x.clone().requires_grad_()
    F.silu(reference * 2.0).sum().backward()
    assert torch.allclose(leaf.grad, reference.grad)
