"""``torch.compile`` of the network for inference, with the Gaussian upsamplers compiled stage by stage.

Compiled whole, the reference-size Gaussian upsampler (pixel shuffle + windowed attention, twice) gives wrong results
under bf16 (features off by up to 6.7; ``test/bench/check_compile.py --scan``), while each of its stages compiled on
its own matches eager. The scan names the cause: a looped reduction over the pixel shuffle's permuted output that
reads back what it stored, the race described below. So each upsampler stays an eager call inside the compiled
``encode``/``decode`` and its stages are separate graphs: on an H100 this is the fastest correct form
(docs/BENCHMARKS.md).

Inductor's fused kernels keep a chain of elementwise operations in float32 where eager rounds each intermediate
result to bf16; in bf16 that moved the shipped ``small``'s decoded positions by up to 0.57 from the fp32 result
(eager bf16: 0.013). With ``emulate_precision_casts`` the fused kernels round where eager rounds, and the compiled
bf16 network is as close to fp32 as the eager one (H200, ``test/test_compile_gpu.py``).

The encoders' patch convolutions run on a channels-last input, so that their tokens come out token-major. Read
channel-major, the first transformer block's residual add and RMSNorm became a looped reduction kernel that stores
the residual sum in its first loop and reads it back in its second without a barrier between them; a warp may read
an element that another warp has not written yet (the pattern of upstream PR pytorch/pytorch#190519). Its CUDA
graphs then replayed a wrong ``encode`` now and then: 9 of 100 replays on an H100 (encoder tokens up to 2.5,
positions up to 0.55), none of 100 with the channels-last input, which makes that reduction a single pass
(docs/BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Callable

import torch

from nut_ros.core.encoder import GaussianUpsampler, PatchViT
from nut_ros.core.model import NutModel

UPSAMPLER_MODES = ("split", "eager")
#: compiled variants one function may have before Dynamo runs it eagerly: every upsampler stage shares its class's
#: ``forward`` (six stages in ``small``'s two upsamplers, each per autocast setting); the default (8) left some eager
RECOMPILE_LIMIT = 64
#: Inductor settings of every compiled part (see the module docstring)
INDUCTOR_OPTIONS = {"emulate_precision_casts": True}


def compile_network(model: NutModel, mode: str = "default", upsampler: str = "split",
                    token_major_patches: bool = True) -> tuple[Callable, Callable]:
    """Compiled ``(encode, decode)`` of ``model``; ``upsampler``: "split" (stage by stage) or "eager";
    ``token_major_patches=False`` leaves the patch convolutions' input as it comes (reproduces the racy kernel).

    The upsamplers' ``forward`` are replaced in place and the patch convolutions get a channels-last input (see the
    module docstring; :func:`uncompile` undoes both); the model's own methods are not changed.
    """
    if upsampler not in UPSAMPLER_MODES:
        raise ValueError(f"upsampler must be one of {UPSAMPLER_MODES}, not {upsampler!r}")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        up.forward = torch.compiler.disable(up.forward)
        if upsampler == "split":
            for stage in up.children():
                stage.forward = _compile(stage.forward, mode)
    _remove_patch_hooks(model)
    if token_major_patches:
        for vit in (m for m in model.modules() if isinstance(m, PatchViT)):
            vit._channels_last_hook = vit.conv.register_forward_pre_hook(_channels_last_input)
    encode = _compile(model.encode, mode)

    def fresh_encode(rgb: torch.Tensor, disp: torch.Tensor):
        # A compiled graph is specialised to its inputs' strides and dispatch keys: a camera frame that arrives at
        # the model's size is a permuted view, a resized one is contiguous, and a tensor made in inference mode has
        # other keys than one made outside it; each would compile a graph of its own on a live frame. A contiguous
        # copy made here (0.7 MB for tiny) is the same kind of tensor on every call.
        return encode(rgb.clone(memory_format=torch.contiguous_format),
                      disp.clone(memory_format=torch.contiguous_format))

    return fresh_encode, _compile(model.decode, mode)


def _channels_last_input(_conv: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a patch convolution: its input, and so its output, channels-last (token-major tokens)."""
    return (args[0].contiguous(memory_format=torch.channels_last),)


def _compile(fn: Callable, mode: str) -> Callable:
    """``fn`` compiled in ``mode`` with :data:`INDUCTOR_OPTIONS` (torch.compile takes a mode or options: the
    mode's own options are merged in)."""
    return torch.compile(fn, dynamic=False, options={**torch._inductor.list_mode_options(mode), **INDUCTOR_OPTIONS})


def uncompile(model: NutModel) -> None:
    """Undo :func:`compile_network`'s changes to the upsamplers and patch convolutions (back to plain eager modules)."""
    for up in (m for m in model.modules() if isinstance(m, GaussianUpsampler)):
        for module in (up, *up.children()):
            module.__dict__.pop("forward", None)
    _remove_patch_hooks(model)


def _remove_patch_hooks(model: NutModel) -> None:
    """Take :func:`compile_network`'s channels-last pre-hooks off the patch convolutions (none: nothing to do)."""
    for vit in (m for m in model.modules() if isinstance(m, PatchViT)):
        hook = vit.__dict__.pop("_channels_last_hook", None)
        if hook is not None:
            hook.remove()
