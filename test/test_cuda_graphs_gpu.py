"""CUDA graphs of the network (``TorchBackend(cuda_graphs=True)``) against eager, on the GPU.

A graph replays the kernels eager launched at capture, so the decoded Gaussians must match eager's to float
rounding (cuBLAS may pick another algorithm inside a capture) in fp32 and in bf16, with the learned motion head on and
off, and across frames (inputs are copied into the graph, outputs copied out: a later replay must not change an
earlier frame's results); a graphed call that updates tensors in place updates them once per call, and captures
with Python's garbage collector off.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nut_ros.core.checkpoint import load_checkpoint
from nut_ros.pipeline.backends import TorchBackend
from nut_ros.pipeline.stream import StreamingPipeline, resize_rgb
from nut_ros.pipeline.types import Frame, PipelineConfig

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")]

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("xyz", "velocity", "rgb", "opacity", "scale", "gamma")


def _frames(model, count: int = 3) -> list[torch.Tensor]:
    h, w = model.config.image_size
    return [resize_rgb(cv2.imread(str(ROOT / "nut_ros" / "data" / "cups" / f"{2 * i:03d}.jpg"))[..., ::-1].copy(),
                       h, w).cuda() for i in range(count)]


def _decode_all(backend: TorchBackend, frames, disp) -> list[dict[str, torch.Tensor]]:
    handles = [backend.encode(f, disp) for f in frames]
    pairs = [backend.decode(a, b) for a, b in zip(handles, handles[1:])]
    return [{f: getattr(g, f).clone() for f in FIELDS} for g in pairs]


@pytest.fixture(scope="module")
def model():
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return load_checkpoint(ROOT / "nut_ros" / "weights" / "small.safetensors")


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("learned", [True, False])
def test_graphed_network_equals_eager(model, bf16, learned):
    frames = _frames(model)
    disp = torch.zeros(1, model.config.depth_channels, *model.config.image_size, device="cuda")
    eager = TorchBackend(model, "cuda", bf16=bf16)
    eager.use_learned_motion(learned)
    ref = _decode_all(eager, frames, disp)
    graphed = TorchBackend(model, "cuda", bf16=bf16, cuda_graphs=True)
    graphed.use_learned_motion(learned)
    got = _decode_all(graphed, frames, disp)
    assert graphed._encode.captured == 1 and graphed._decode.captured == 1
    for r, g in zip(ref, got):  # both pairs: the second replay left the first pair's outputs alone
        for f in FIELDS:
            scale = r[f].abs().max().item() + 1e-6
            tol = (2e-2 if bf16 else 1e-4) * scale
            err = (g[f] - r[f]).abs().max().item()
            print(f"bf16={bf16} learned={learned} {f:9s} max |graph - eager| {err:.2e} (tol {tol:.1e})")
            assert err <= tol, f


def test_pipeline_with_graphs_publishes_what_eager_publishes(model):
    frames = _frames(model, 4)
    results = {}
    for graphs in (False, True):
        pipe = StreamingPipeline(TorchBackend(model, "cuda", cuda_graphs=graphs), PipelineConfig(render_times=(1.0,)))
        rgb8 = [(f[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8") for f in frames]
        steps = [pipe.push(Frame(rgb, (i + 1) * 66_666_667)) for i, rgb in enumerate(rgb8)]
        results[graphs] = steps[-1]
    eager, graphed = results[False], results[True]
    diff = abs(eager.views[0].rgb.astype(int) - graphed.views[0].rgb.astype(int))
    assert diff.mean() < 0.05 and diff.max() <= 8, (diff.mean(), diff.max())
    assert eager.gaussians.positions.shape == graphed.gaussians.positions.shape


def test_queued_optical_cloud_on_the_gpu_equals_the_cpu_one():
    from nut_ros.core.gaussians import Gaussians
    from nut_ros.core.geometry import DepthNormalization, Intrinsics
    from nut_ros.pipeline.optical import queue_optical_cloud
    from nut_ros.pipeline.transfer import wait_for_copies

    gen = torch.Generator().manual_seed(0)
    n = 50_000
    g = Gaussians(torch.rand(1, n, 3, generator=gen) * 1.2 - 0.1, torch.randn(1, n, 3, generator=gen) * 0.1,
                  torch.rand(1, n, 3, generator=gen), torch.rand(1, n, 1, generator=gen),
                  torch.rand(1, n, 2, generator=gen) * 0.01, torch.rand(1, n, 2, generator=gen),
                  (torch.rand(1, n, generator=gen) > 0.5).float())
    k, norm = Intrinsics.from_fov(256, 144, 60.0), DepthNormalization(0.2, 2.0, metric=True)
    want = queue_optical_cloud(g, 0.7, k, norm, 0.05, min_opacity=0.3).result()
    queued = queue_optical_cloud(g.map(lambda x: x.cuda()), 0.7, k, norm, 0.05, min_opacity=0.3)
    wait_for_copies()
    got = queued.result()
    assert 0 < got.count == want.count < n  # some culled (ŷ outside [0, 1]) and some too faint
    for f in ("positions", "scales", "rotations", "opacities", "colors", "velocities"):
        np.testing.assert_allclose(getattr(got, f), getattr(want, f), rtol=1e-5, atol=1e-6, err_msg=f)


def test_a_graphed_call_keeps_only_its_most_recent_signatures():
    from nut_ros.pipeline.cuda_graphs import GraphedCall

    call = GraphedCall(lambda x: x * 2 + 1, max_graphs=2)
    for n in (3, 4, 3, 5, 4):  # 5 evicts 4 (3 was used more recently), then 4 evicts 3
        x = torch.arange(n, dtype=torch.float32, device="cuda")
        assert torch.equal(call(x), x * 2 + 1)
    assert call.captured == 2 and call.dropped == 2


def test_a_graphed_call_updates_its_state_once_per_call():
    """A function that updates a tensor in place (``state``): the capture's warm-up calls leave it as it was, so
    each call, the capturing one included, updates it once, as the function called directly would; ``prepare``
    captures without running."""
    from nut_ros.pipeline.cuda_graphs import GraphedCall

    total = torch.zeros(3, device="cuda")
    call = GraphedCall(lambda x: total.add_(x).sum(), state=lambda: [total])
    call.prepare(torch.zeros(3, device="cuda"))  # captured ahead, not run
    assert call.captured == 1 and not total.any()
    for k in range(1, 4):
        out = call(torch.full((3,), float(k), device="cuda"))
        assert torch.equal(total, torch.full((3,), k * (k + 1) / 2, device="cuda")) and out == 3 * k * (k + 1) / 2
    assert call.captured == 1


def test_the_garbage_collector_is_off_while_a_graph_is_captured():
    """A ``GraphedCall`` of a closure over its owner sits in a reference cycle, so a dropped owner's graph is freed by
    a collection, which must not run inside another capture (destroying a graph there is not permitted): the
    collector is off during the capture (not during the warm-up calls or a replay) and on again after it, also when
    the capture fails."""
    import gc

    from nut_ros.pipeline.cuda_graphs import WARMUP_CALLS, GraphedCall

    seen = []

    def watched(t):
        seen.append(gc.isenabled())
        return t * 2

    x = torch.arange(4, dtype=torch.float32, device="cuda")
    call = GraphedCall(watched)
    assert torch.equal(call(x), 2 * x) and torch.equal(call(x), 2 * x)
    assert seen == [True] * WARMUP_CALLS + [False] and gc.isenabled()  # (a replay runs no Python)

    def failing(t):
        if not gc.isenabled():
            raise RuntimeError("fails in the capture")
        return t

    with pytest.raises(RuntimeError, match="fails in the capture"):
        GraphedCall(failing)(x)
    assert gc.isenabled()
