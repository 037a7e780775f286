"""``torch.compile`` of the network for inference, with the Gaussian upsamplers compiled stage by stage.

Compiled whole, a Gaussian upsampler (pixel shuffle + windowed attention, twice) gives wrong results under bf16 with
torch 2.11 (features off by up to 5.7; ``test/bench/check_compile.py``), while each of its stages compiled
on its own matches eager. So each upsampler stays an eager call inside the compiled ``encode``/``decode`` and its
stages are separate graphs: on an H100 this is the fastest correct form (docs/BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Callable

import torch

from nut_ros.core.encoder import GaussianUpsampler
from nut_ros.core.model import NutModel

UPSAMPLER_MODES = ("split", "eager")


def compile_network(model: NutModel, mode: str = "default", upsampler: str = "split") -> tuple[Callable, Callable]:
    """Compiled ``(encode, decode)`` of ``model``; ``upsampler``: "split" (stage by stage) or "eager".

    The upsamplers' ``forward`` are replaced in place (see :func:`uncompile`); the model's own methods are not.
    """
    if upsampler not in UPSAMPLER_MODES:
        raise ValueError(f"upsampler must be one of {UPSAMPLER_MODES}, not {upsampler!r}")
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        up.forward = torch.compiler.disable(up.forward)
        if upsampler == "split":
            for stage in up.children():
                stage.forward = torch.compile(stage.forward, mode=mode, dynamic=False)
    return (torch.compile(model.encode, mode=mode, dynamic=False),
            torch.compile(model.decode, mode=mode, dynamic=False))


def uncompile(model: NutModel) -> None:
    """Undo :func:`compile_network`'s changes to the upsamplers (back to plain eager modules)."""
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        for module in (up, *up.children()):
            module.__dict__.pop("forward", None)
