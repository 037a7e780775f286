"""Checkpoint I/O: our safetensors checkpoints (config JSON in the metadata) and the reference's state dicts.

All loading is strict; a mismatch raises :class:`CheckpointMismatch` naming the first mismatching key with both
shapes, plus the missing and unexpected keys.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from nut_ros.core.condition import read_state_dict
from nut_ros.core.config import ModelConfig

if TYPE_CHECKING:  # the model module re-exports this one's functions
    from nut_ros.core.model import NutModel

CONFIG_KEY = "nut_ros.config"
FORMAT_KEY = "nut_ros.format"
FORMAT = "nut_ros-model-1"
REFERENCE_PREFIXES = ("model._orig_mod.", "_orig_mod.", "model.")


class CheckpointMismatch(ValueError):
    """A state dict whose keys or shapes do not match the module."""


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


def strip_reference_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the reference's ``model.`` / ``model._orig_mod.`` key prefix (and its unsaved DINOv2 keys)."""
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
    """Load a reference (StreamSplat) checkpoint or state dict strictly into ``model`` (a NutModel, or its
    ``gs_predictor`` for a stage-1 checkpoint)."""
    state = read_state_dict(source) if not isinstance(source, dict) else source
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = strip_reference_prefix(state)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    return model


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


def read_config(path: str | Path) -> ModelConfig:
    """The model configuration embedded in a checkpoint."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get(FORMAT_KEY) != FORMAT or CONFIG_KEY not in meta:
        raise CheckpointMismatch(f"{path} is not a nut_ros model checkpoint (no {CONFIG_KEY!r} metadata)")
    return ModelConfig.from_dict(json.loads(meta[CONFIG_KEY]))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", **overrides) -> NutModel:
    """Build the model from the embedded config (fields replaced by ``overrides``), load strictly, eval mode."""

    from nut_ros.core.model import NutModel

    config = read_config(path)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    model = NutModel(config)
    state = read_state_dict(path)
    check_state_dict(model, state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.to(device).eval()
