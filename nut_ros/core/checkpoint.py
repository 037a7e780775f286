"""Every weight loader and weight-file reader of the model: our safetensors checkpoints (config JSON in the
metadata), the authors' StreamSplat checkpoints and the official DINOv2 weights.

All loading is strict; a mismatch raises :class:`CheckpointMismatch` naming the first mismatching key with both
shapes, plus the missing and unexpected keys. The model modules read no files: this module sits above them
(``checkpoint -> model -> condition``), so the dependencies run one way.

The authors' checkpoint (``streamsplat``) has no nut_ros metadata; ``load_checkpoint(path,
reference_config="streamsplat")`` imports it: the keys lose their ``model.`` / ``model._orig_mod.`` prefix and load
strictly into the configuration named (module attribute names mirror the reference). It does not contain the
frozen DINOv2 (the reference never saves it): pass ``dino=DinoConfig(..., weights=<official dinov2_vitb14_reg4
file>)``, otherwise the condition encoder keeps random weights.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from nut_ros.core.condition import DinoV2Condition
from nut_ros.core.config import ModelConfig, get_config
from nut_ros.core.model import NutModel

CONFIG_KEY = "nut_ros.config"
FORMAT_KEY = "nut_ros.format"
FORMAT = "nut_ros-model-1"
REFERENCE_PREFIXES = ("model._orig_mod.", "_orig_mod.", "model.")
DINO_PREFIXES = ("model.condition_encoder.model.", "condition_encoder.model.", "model.", "module.")


class CheckpointMismatch(ValueError):
    """A state dict whose keys or shapes do not match the module, or a file that is not the expected kind."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or torch (``.pth``/``.pt``/``.ckpt``, ``weights_only``) state-dict file; the
    model of a training checkpoint (its ``state_dict`` entry, or ``model`` in a nut_ros trainer's ``last.pt``) is
    unwrapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
    return state


def read_training_state(path: str | Path) -> dict:
    """A nut_ros trainer checkpoint (``last.pt``): model and optimiser state, step, RNG states and run config."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def save_training_state(state: dict, path: str | Path) -> None:
    """Write a trainer checkpoint atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def check_state_dict(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Raise :class:`CheckpointMismatch` unless ``state`` has exactly the module's keys and shapes."""
    expected = module.state_dict()
    problems = []
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        problems.append(f"first shape mismatch: {k!r}: checkpoint {tuple(state[k].shape)} vs model "
                        f"{tuple(expected[k].shape)} ({len(wrong)} mismatching in all)")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
    if problems:
        raise CheckpointMismatch(f"state dict does not match {type(module).__name__}: " + "; ".join(problems))


def _load_strict(module: nn.Module, state: dict[str, Tensor]) -> None:
    check_state_dict(module, state)
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)


def _state(source: str | Path | dict[str, Tensor]) -> dict[str, Tensor]:
    return dict(source) if isinstance(source, dict) else read_state_dict(source)


def strip_reference_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The reference's keys without their ``model.`` / ``model._orig_mod.`` prefix (and without DINOv2 keys,
    which the reference never saves and our state dicts leave out)."""
    out = {}
    for key, value in state.items():
        for prefix in REFERENCE_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if not key.startswith("condition_encoder."):
            out[key] = value
    return out


def load_reference_state_dict(model: nn.Module, source: str | Path | dict[str, Tensor]) -> nn.Module:
    """Load a reference (StreamSplat) checkpoint file or state dict strictly into ``model`` (a NutModel, or its
    ``gs_predictor`` for a stage-1 checkpoint)."""
    state = _state(source)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    _load_strict(model, strip_reference_prefix(state))
    return model


def load_dinov2_weights(condition: DinoV2Condition, source: str | Path | dict[str, Tensor]) -> None:
    """Load official ``dinov2_vitb14_reg4`` weights (a file or state dict) strictly into a DINOv2 condition
    encoder; ``mask_token``, unused at inference, is accepted and ignored."""
    state = _state(source)
    for prefix in DINO_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            break
    state.pop("mask_token", None)
    _load_strict(condition.model, state)


def save_checkpoint(model: NutModel, path: str | Path, dtype: torch.dtype = torch.float32) -> None:
    """Write ``model`` as safetensors; floating parameters in ``dtype`` (buffers stay float32)."""
    buffers = {name for name, _ in model.named_buffers()}
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point() and key not in buffers:
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    metadata = {FORMAT_KEY: FORMAT, CONFIG_KEY: json.dumps(model.config.to_dict())}
    save_file(tensors, str(path), metadata=metadata)


def _metadata(path: Path) -> dict[str, str]:
    if path.suffix != ".safetensors":
        return {}
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def read_config(path: str | Path) -> ModelConfig:
    """The model configuration embedded in a nut_ros checkpoint."""
    meta = _metadata(Path(path))
    if meta.get(FORMAT_KEY) != FORMAT or CONFIG_KEY not in meta:
        raise CheckpointMismatch(f"{path} is not a nut_ros model checkpoint (no {CONFIG_KEY!r} metadata); the "
                                 f"authors' StreamSplat checkpoints load with reference_config='streamsplat'")
    return ModelConfig.from_dict(json.loads(meta[CONFIG_KEY]))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", reference_config: str | None = None,
                    **overrides) -> NutModel:
    """The model of a checkpoint, loaded strictly, in eval mode.

    A nut_ros checkpoint builds the model from its embedded config (fields replaced by ``overrides``). A file
    without nut_ros metadata is imported as the authors' checkpoint when ``reference_config`` names the
    configuration it was trained with (``get_config(reference_config, **overrides)``), else refused. With a
    DINOv2 condition and ``config.dino.weights`` set, those weights are loaded too.
    """
    path = Path(path)
    if reference_config is not None and FORMAT_KEY not in _metadata(path):
        model = NutModel(get_config(reference_config, **overrides))
        load_reference_state_dict(model, path)
    else:
        config = read_config(path)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        model = NutModel(config)
        _load_strict(model, read_state_dict(path))
    if isinstance(model.condition_encoder, DinoV2Condition):
        if model.config.dino.weights:
            load_dinov2_weights(model.condition_encoder, model.config.dino.weights)
        else:
            warnings.warn(f"{path.name}: no DINOv2 weights (dino=DinoConfig(weights=...)): the condition encoder of "
                          f"{model.config.name!r} keeps random weights", RuntimeWarning, stacklevel=2)
    return model.to(device).eval()
