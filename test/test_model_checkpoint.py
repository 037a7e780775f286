"""Checkpoint I/O: safetensors with the config in the metadata, strict loading and its error messages."""
import pytest
import torch
from safetensors.torch import save_file

from nut_ros.core.checkpoint import (CheckpointMismatch, check_state_dict, load_checkpoint,
                                     load_reference_state_dict, read_config, save_checkpoint, strip_reference_prefix)
from nut_ros.core.config import get_config
from nut_ros.core.model import NutModel, build_model


@pytest.fixture(scope="module")
def small_tiny():
    torch.manual_seed(0)
    return build_model("tiny", encoder_layers=1, decoder_layers=1).eval()


def _pair(cfg):
    g = torch.Generator().manual_seed(3)
    h, w = cfg.image_size
    frames = torch.rand(1, 2, 3, h, w, generator=g)
    disps = torch.rand(1, 2, cfg.depth_channels, h, w, generator=g)
    return frames, disps


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 0.0), (torch.float16, 2e-2)])
def test_round_trip(tmp_path, small_tiny, dtype, tol):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_tiny, path, dtype=dtype)
    assert read_config(path) == small_tiny.config
    loaded = load_checkpoint(path)
    assert not loaded.training and loaded.config == small_tiny.config
    frames, disps = _pair(small_tiny.config)
    with torch.no_grad():
        a, b = small_tiny(frames, disps), loaded(frames, disps)
    for name in ("xyz", "velocity", "rgb", "opacity", "scale", "gamma"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=tol, rtol=0)
    # buffers are kept in float32 whatever the parameter dtype
    assert torch.equal(loaded.gs_predictor.predictor.x_map, small_tiny.gs_predictor.predictor.x_map)


def test_mismatch_names_first_key_and_shapes(tmp_path, small_tiny):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_tiny, path)
    with pytest.raises(CheckpointMismatch) as err:
        load_checkpoint(path, width=192)
    msg = str(err.value)
    first = "gs_predictor.encoder.transformer_encoder.conv.weight"
    assert f"first shape mismatch: '{first}': checkpoint (128, 5, 8, 8) vs model (192, 5, 8, 8)" in msg


def test_missing_and_unexpected_keys_are_listed(small_tiny):
    state = dict(small_tiny.state_dict())
    del state["encoder_proj.weight"]
    state["bogus.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch, match=r"1 missing keys \(first: \['encoder_proj.weight'\]\).*"
                                                 r"1 unexpected keys \(first: \['bogus.weight'\]\)"):
        check_state_dict(small_tiny, state)


def test_reference_prefixes_load_strictly(small_tiny):
    state = small_tiny.state_dict()
    for prefix in ("model.", "model._orig_mod."):
        target = build_model("tiny", encoder_layers=1, decoder_layers=1)
        load_reference_state_dict(target, {prefix + k: v.clone() for k, v in state.items()})
        assert torch.equal(target.encoder_proj.weight, small_tiny.encoder_proj.weight)


def test_foreign_file_is_rejected(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointMismatch, match="not a nut_ros model checkpoint.*reference_config"):
        load_checkpoint(path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointMismatch, match="not a nut_ros model checkpoint"):
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(CheckpointMismatch, match="1 unexpected keys"):  # imported strictly, not skipped
        load_checkpoint(path, reference_config="tiny")


def test_a_nut_ros_checkpoint_ignores_reference_config(tmp_path, small_tiny):
    """The pipeline passes its model name as ``reference_config``: our own files still load from their metadata."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_tiny, path)
    assert load_checkpoint(path, reference_config="streamsplat").config == small_tiny.config


def _authors_keys(path, kind):
    rows = (line.split("\t") for line in path.read_text().splitlines())
    return {key: tuple(int(s) for s in shape.strip("[]").split(",")) for k, key, shape in rows if k.startswith(kind)}


def test_authors_streamsplat_checkpoint_keys_import_at_full_size(fixtures_dir):
    """Every key of the authors' inference checkpoint (``model.`` prefix, no DINOv2: the reference never saves it)
    maps onto the full-size ``streamsplat`` model with its shape, through the import's prefix handling."""
    keys = _authors_keys(fixtures_dir / "model_streamsplat_keys.tsv", "inference")
    frozen = _authors_keys(fixtures_dir / "model_streamsplat_keys.tsv", "frozen")
    assert len(keys) == 320 and all(k.startswith("model.") for k in keys)
    with torch.device("meta"):
        model = NutModel(get_config("streamsplat"))
        state = {k: torch.empty(shape) for k, shape in {**keys, **frozen}.items()}
    check_state_dict(model, strip_reference_prefix(state))
    del state[next(iter(keys))]
    with pytest.raises(CheckpointMismatch, match="1 missing keys"):
        check_state_dict(model, strip_reference_prefix(state))
