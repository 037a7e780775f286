"""Condition encoders: DINOv2 (reduced size, random weights, official key names) and the light token condition."""
import pytest
import torch

from nut_ros.core.checkpoint import CheckpointMismatch, load_checkpoint, load_dinov2_weights, save_checkpoint
from nut_ros.core.condition import DinoV2Condition, EncoderTokenCondition
from nut_ros.core.config import DinoConfig
from nut_ros.core.model import build_model

SMALL_DINO = dict(embed_dim=64, depth=2, heads=2)


def _official_state(cfg: DinoConfig, seed=0):
    """A random state dict with the official ``dinov2_vitb14_reg4`` key names (including ``mask_token``)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in DinoV2Condition(cfg).model.state_dict().items()}
    state["mask_token"] = torch.zeros(1, cfg.embed_dim)
    return state


def test_official_keys_load_strictly_and_token_count(tmp_path):
    cfg = DinoConfig(**SMALL_DINO)
    state = _official_state(cfg)
    path = tmp_path / "dinov2_reg4.pth"
    torch.save(state, path)
    cond = DinoV2Condition(cfg)
    load_dinov2_weights(cond, path)
    assert torch.equal(cond.model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])
    assert torch.equal(cond.model.register_tokens, state["register_tokens"])
    assert not any(p.requires_grad for p in cond.parameters())
    with torch.no_grad():
        tokens = cond(torch.rand(2, 3, 144, 256))  # resized to 252x448 inside
    assert tokens.shape == (2, 576, 64) and cfg.num_tokens == 576
    # final LayerNorm output: zero mean per token up to the affine part
    expected = (tokens - cond.model.norm.bias) / cond.model.norm.weight
    torch.testing.assert_close(expected.mean(-1), torch.zeros(2, 576), atol=1e-4, rtol=0)


def test_wrong_shapes_are_reported():
    cfg = DinoConfig(**SMALL_DINO)
    state = _official_state(cfg)
    state["pos_embed"] = torch.zeros(1, 257, 64)  # a ViT-?/14 at 224
    with pytest.raises(CheckpointMismatch, match=r"'pos_embed': checkpoint \(1, 257, 64\) vs model \(1, 1370, 64\)"):
        load_dinov2_weights(DinoV2Condition(cfg), state)


def test_position_embedding_resize():
    cond = DinoV2Condition(DinoConfig(**SMALL_DINO))
    torch.nn.init.normal_(cond.model.pos_embed)
    assert torch.equal(cond.model._pos_embed(37, 37), cond.model.pos_embed[:, 1:])
    resized = cond.model._pos_embed(18, 32)
    assert resized.shape == (1, 576, 64)
    # a constant embedding stays constant under (antialiased) bicubic resizing
    torch.nn.init.constant_(cond.model.pos_embed, 0.25)
    torch.testing.assert_close(cond.model._pos_embed(18, 32), torch.full((1, 576, 64), 0.25))


def test_dino_weights_stay_out_of_model_checkpoints(tmp_path):
    cfg_kw = dict(image_size=(72, 128), width=64, encoder_layers=1, decoder_layers=1, upsampler_dims=(64, 64),
                  window=144, dino=SMALL_DINO)
    model = build_model("streamsplat", **cfg_kw).eval()
    assert not any(k.startswith("condition_encoder.") for k in model.state_dict())
    model.train()
    assert not model.condition_encoder.model.training
    state = _official_state(DinoConfig(**SMALL_DINO), seed=1)
    dino_path = tmp_path / "dino.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(dino_path))
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path, dino=DinoConfig(**SMALL_DINO, weights=str(dino_path)))
    assert torch.equal(loaded.condition_encoder.model.cls_token, state["cls_token"])
    h, w = 72, 128
    with torch.no_grad():
        cache = loaded.encode(torch.rand(1, 3, h, w), torch.rand(1, 1, h, w))
    assert cache.condition.shape == (1, 576, 64)


def test_encoder_token_condition_pools_the_grid():
    cond = EncoderTokenCondition((2, 4), 2)
    tokens = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1)  # grid [[0,1,2,3],[4,5,6,7]]
    torch.testing.assert_close(cond(tokens), torch.tensor([[[2.5], [4.5]]]))
