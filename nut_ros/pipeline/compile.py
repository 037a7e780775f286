"""``torch.compile`` of the network for inference, with the Gaussian upsamplers compiled stage by stage.

Compiled whole, a Gaussian upsampler (pixel shuffle + windowed attention, twice) gives wrong results under bf16 with
torch 2.11 (features off by up to 5.7; ``test/bench/check_compile.py``), while each of its stages compiled
on its own matches eager. So each upsampler stays an eager call inside the compiled ``encode``/``decode`` and its
stages are separate graphs: on an H100 this is the fastest correct form (docs/BENCHMARKS.md).

Inductor's fused kernels keep a chain of elementwise operations in float32 where eager rounds each intermediate
result to bf16; in bf16 that moved the shipped ``small``'s decoded positions by up to 0.57 from the fp32 result
(eager bf16: 0.013). With ``emulate_precision_casts`` the fused kernels round where eager rounds, and the compiled
bf16 network is as close to fp32 as the eager one (H200, ``test/test_compile_gpu.py``), though not in every
process: after other GPU work in the same process it has come out up to 0.33 from eager bf16 in positions, and now
and then one replay of its CUDA graphs (:class:`nut_ros.pipeline.cuda_graphs.GraphedCall`, the backend's
``cuda_graphs``) is far from the direct calls (from none of 40 to 1 of 6 replays of ``encode`` in a run, positions
up to 0.53 off; the others agree with them as closely as direct calls agree with each other): not the capturing call
as such, nor a race with the host or between launches, nor cuDNN's attention kernel, and not explained
(docs/BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Callable

import torch

from nut_ros.core.encoder import GaussianUpsampler
from nut_ros.core.model import NutModel

UPSAMPLER_MODES = ("split", "eager")
#: compiled variants one function may have before Dynamo runs it eagerly: every upsampler stage shares its class's
#: ``forward`` (six stages in ``small``'s two upsamplers, each per autocast setting); the default (8) left some eager
RECOMPILE_LIMIT = 64
#: Inductor settings of every compiled part (see the module docstring)
INDUCTOR_OPTIONS = {"emulate_precision_casts": True}


def compile_network(model: NutModel, mode: str = "default", upsampler: str = "split") -> tuple[Callable, Callable]:
    """Compiled ``(encode, decode)`` of ``model``; ``upsampler``: "split" (stage by stage) or "eager".

    The upsamplers' ``forward`` are replaced in place (see :func:`uncompile`); the model's own methods are not.
    """
    if upsampler not in UPSAMPLER_MODES:
        raise ValueError(f"upsampler must be one of {UPSAMPLER_MODES}, not {upsampler!r}")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        up.forward = torch.compiler.disable(up.forward)
        if upsampler == "split":
            for stage in up.children():
                stage.forward = _compile(stage.forward, mode)
    return _compile(model.encode, mode), _compile(model.decode, mode)


def _compile(fn: Callable, mode: str) -> Callable:
    """``fn`` compiled in ``mode`` with :data:`INDUCTOR_OPTIONS` (torch.compile takes a mode or options: the
    mode's own options are merged in)."""
    return torch.compile(fn, dynamic=False, options={**torch._inductor.list_mode_options(mode), **INDUCTOR_OPTIONS})


def uncompile(model: NutModel) -> None:
    """Undo :func:`compile_network`'s changes to the upsamplers (back to plain eager modules)."""
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        for module in (up, *up.children()):
            module.__dict__.pop("forward", None)
