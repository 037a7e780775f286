"""Compiled vs eager network on the GPU (shipped ``small`` weights, two frames of the bundled clip).

Measured on the H200 (torch 2.11 cu130, 2026-12-03): in fp32 the compiled network equals the eager one to float
rounding (decoded positions within 6.6e-7), so the graphs are right. Under bf16 autocast, Inductor's fused kernels
without ``emulate_precision_casts`` moved the decoded positions by up to 0.57 canonical units (99.9th percentile
0.089) from the fp32 result, where the eager bf16 network stays within 0.013 (0.006): they keep intermediate results
in float32 where eager rounds them to bf16, and the network's later layers amplify the difference. With it
(:data:`nut_ros.pipeline.compile.INDUCTOR_OPTIONS`), the compiled bf16 network is as far from fp32 as eager bf16:
positions 0.0127 against 0.0127, velocities 0.021 against 0.050 (H100, 2026-12-06, the shipped heads). Unlike eager,
the compiled network is not bitwise deterministic from one call to the next. Its CUDA graphs (as the backend runs it
with ``compile`` and ``cuda_graphs``) give what it gives called directly, to that rounding, on every replay: before
the patch convolutions got a channels-last input (:mod:`nut_ros.pipeline.compile`), a racy reduction kernel made 9
of 100 replays of the compiled ``encode`` wrong (H100, 2026-12-07), and this file's graph test failed now and then;
with it, none of 100, and every test here passed (H100, 2026-12-07, about 250 s).
"""
from pathlib import Path

import cv2
import pytest
import torch
from torch._inductor.utils import run_and_get_code

from inductor_code import kernels, racy_reductions, stored_pointers
from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.pipeline.compile import compile_network, uncompile
from nut_ros.pipeline.cuda_graphs import GraphedCall
from nut_ros.pipeline.stream import resize_rgb

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")]

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("xyz", "velocity", "rgb", "opacity", "scale", "gamma")
#: replays after the capturing call: 40 of ``encode``, which at the racy kernel's 9 in 100 all pass 2 % of the time
REPLAYS = 20


def _run(encode, decode, frames, disp, bf16: bool, cache: bool = True) -> dict[str, torch.Tensor]:
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=bf16, cache_enabled=cache):
        g = decode(encode(frames[0], disp), encode(frames[1], disp))
    return {f: getattr(g, f).float() for f in FIELDS}


@pytest.fixture(scope="module")
def outputs():
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = load_checkpoint(ROOT / "nut_ros" / "weights" / "small.safetensors").cuda().eval()
    h, w = model.config.image_size
    with torch.inference_mode():  # as GraphedCall's static inputs are
        frames = [resize_rgb(cv2.imread(str(ROOT / "nut_ros" / "data" / "cups" / f"{i:03d}.jpg"))[..., ::-1].copy(),
                             h, w).cuda() for i in (0, 1)]
        disp = torch.zeros(1, model.config.depth_channels, h, w, device="cuda")
    out = {"eager32": _run(model.encode, model.decode, frames, disp, False),
           "eager16": _run(model.encode, model.decode, frames, disp, True)}
    encode, decode = compile_network(model)
    try:
        out["compiled32"] = _run(encode, decode, frames, disp, False)
        out["compiled16"] = _run(encode, decode, frames, disp, True)
    finally:
        uncompile(model)
    torch._dynamo.reset()
    # compiled afresh for bf16 alone, as the backend compiles it (graphs of functions also run in fp32 replayed
    # positions up to 0.164 away, H100, 2026-12-06, before the channels-last input; not measured since)
    encode, decode = compile_network(model)
    try:
        with torch._inductor.config.patch(force_disable_caches=True):  # every kernel generated here, none cached
            out["direct16"], codes = run_and_get_code(_run, encode, decode, frames, disp, True, cache=False)
        out["kernels"] = {name: src for code in codes for name, src in kernels(code).items()}
        out["racy"] = racy_reductions(codes)
        graphed = GraphedCall(encode), GraphedCall(decode)
        out["graphed16"] = _run(*graphed, frames, disp, True, cache=False)  # captured, then replayed
        out["replayed16"] = [_run(*graphed, frames, disp, True, cache=False) for _ in range(REPLAYS)]
    finally:
        uncompile(model)
    for f in FIELDS:
        ref = out["eager32"][f]
        print(f"{f:9s} fp32 compiled-eager {(out['compiled32'][f] - ref).abs().max().item():.2e} | from fp32: eager "
              f"bf16 {(out['eager16'][f] - ref).abs().max().item():.2e}, compiled bf16 "
              f"{(out['compiled16'][f] - ref).abs().max().item():.2e}")
    return out


def _q999(x: torch.Tensor) -> float:
    return torch.quantile(x.flatten()[:2**24], 0.999).item()


def test_compiled_network_equals_eager_in_fp32(outputs):
    for f in FIELDS:
        ref = outputs["eager32"][f]
        scale = ref.abs().max().item() + 1e-6
        assert (outputs["compiled32"][f] - ref).abs().max().item() <= 2e-3 * scale, f"{f}: a miscompile"


def test_compiled_bf16_is_within_eager_bf16_rounding(outputs):
    for f in FIELDS:
        ref = outputs["eager32"][f]
        scale = ref.abs().max().item() + 1e-6
        rounding = _q999((outputs["eager16"][f] - ref).abs())
        assert _q999((outputs["compiled16"][f] - ref).abs()) <= 2 * rounding + 1e-3 * scale, f


def _largest_differences_within_eager_bf16_rounding(outputs, a: str, b: str, got: dict | None = None) -> None:
    got = outputs[a] if got is None else got
    for f in FIELDS:
        ref = outputs["eager32"][f]
        own = (outputs["eager16"][f] - ref).abs().max().item()
        diff = (got[f] - outputs[b][f]).abs().max().item()
        bound = 2 * own + 1e-3 * (ref.abs().max().item() + 1e-6)
        print(f"{a} vs {b} {f:9s} largest difference {diff:.3g} (bound {bound:.3g}; eager bf16 from fp32 {own:.3g})")
        assert diff <= bound, (f, diff, own)


def test_the_largest_compiled_vs_eager_bf16_difference_is_bf16_rounding(outputs):
    # measured (H200, 2026-12-04): largest 0.0625 on gamma (one bf16 step at 8-16; eager's own error 0.089), velocity
    # 0.030 against eager's 0.027; every other field well inside eager's own error
    _largest_differences_within_eager_bf16_rounding(outputs, "compiled16", "eager16")


def test_no_compiled_reduction_reads_back_what_it_stored(outputs):
    # the deterministic side of the replay test below (test/inductor_code.py): with channel-major patch tokens the
    # compiled encode had one looped reduction that loads what it stored, and 9 of 100 of its replays were wrong
    found = outputs["kernels"]
    assert found, "no generated kernel was captured: nothing was read"
    unread = [name for name, src in found.items() if "tl.store(" in src and not stored_pointers(src)]
    assert not unread, f"stores the scan cannot read (has Inductor's code changed?): {unread[:3]}"
    assert outputs["racy"] == []


def test_the_compiled_network_replays_as_cuda_graphs(outputs):
    # the compiled network is not bitwise deterministic (eager is): repeats of it called directly differed by up to
    # 4.8e-4 on velocities and one bf16 step on gamma (H100, 2026-12-06, `test/bench/compile_repeat.py`); so the
    # graphs are held to the bf16 rounding, not to equality: the capturing call and every later replay
    _largest_differences_within_eager_bf16_rounding(outputs, "graphed16", "direct16")
    for k, replay in enumerate(outputs["replayed16"]):
        _largest_differences_within_eager_bf16_rounding(outputs, f"replay {k}", "direct16", replay)
