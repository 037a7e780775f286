"""The camera-motion fit's Triton kernel against the torch fit it replaces on a GPU (nut_ros/perception/fit_kernel.py).

On the CPU the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, in a child process: the setting is read
when the kernel is defined), where Triton is installed; on a GPU it runs compiled, also inside a CUDA graph.
"""
import importlib.util
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch

from nut_ros.perception import fit_kernel
from nut_ros.perception.ego_motion import HUBER_ROUNDS, RIDGE, TUKEY_C, field_of, solve_static_field

ITERATIONS = 6


def sample(n: int, seed: int, movers: int = 0, z_weight: float = 1.0, weightless: int = 0):
    """Points of a scene whose camera moves (a known rigid field plus noise), ``movers`` of them moving on their own,
    the last ``weightless`` without weight (and NaN points, as the stage's unselected rows)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=g) * torch.tensor([6.0, 4.0, 5.0]) + torch.tensor([-3.0, -2.0, 0.5])
    omega, c = torch.randn(3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.5
    velocities = c + torch.cross(omega.expand(n, 3), points, dim=1) + 0.02 * torch.randn(n, 3, generator=g)
    velocities[:movers] += torch.randn(movers, 3, generator=g) + 1.0
    weights = torch.rand(n, generator=g) * 0.9 + 0.1
    if weightless:
        weights[-weightless:] = 0.0
        points[-weightless // 2:] = float("nan")
    threshold = 0.05 + 0.02 * points[:, 2].nan_to_num(0.0)
    return points, velocities, weights, threshold, z_weight, torch.cat([c, omega])


B = fit_kernel.BLOCK
CASES = {  # name: sample arguments
    "clean": dict(n=B + B // 2, seed=1),
    "movers and unselected rows": dict(n=2 * B + 44, seed=2, movers=B // 2, weightless=40),
    "a partial last block, depth rate weighted": dict(n=B + 2, seed=3, movers=B // 6, z_weight=0.4),
    "fewer than a block": dict(n=20, seed=4, movers=3),
}


def kernel_and_torch(device: str):
    """Per case: the kernel's result and the torch fit's, both on ``device``."""
    out = {}
    for name, kwargs in CASES.items():
        points, velocities, weights, threshold, z_weight, _ = (t.to(device) if isinstance(t, torch.Tensor) else t
                                                               for t in sample(**kwargs))
        got = fit_kernel.solve(points, velocities, weights, threshold, ITERATIONS, z_weight, RIDGE, HUBER_ROUNDS,
                               TUKEY_C)
        with mock.patch.object(fit_kernel, "available", lambda: False):
            ref = solve_static_field(points, velocities, weights, threshold, ITERATIONS, z_weight)
        out[name] = (got, ref)
    return out


def check(device: str) -> None:
    for name, (got, ref) in kernel_and_torch(device).items():
        assert got is not None, fit_kernel.error
        assert got.dtype == torch.float64 and got.shape == (9,)
        assert torch.allclose(got[:7], ref[:7], rtol=1e-9, atol=1e-10), (name, got, ref)
        assert got[7] == ref[7] and got[8] == ref[8] == 0, name
    # no weight at all: the solve fails, as the torch fit's does, and no field comes of it
    points, velocities, weights, threshold, _, _ = sample(50, 5)
    got = fit_kernel.solve(points.to(device), velocities.to(device), torch.zeros(50, device=device),
                           threshold.to(device), ITERATIONS, 1.0, RIDGE, HUBER_ROUNDS, TUKEY_C)
    assert got[7] == 0 and got[8] == 1
    assert field_of(got.cpu().numpy()) is None


def test_the_fit_finds_the_camera_motion():
    """The cases are fits that work: the torch fit recovers the camera's field from them (so the kernel, equal to it,
    is compared on results that mean something)."""
    for name, kwargs in CASES.items():
        points, velocities, weights, threshold, z_weight, truth = sample(**kwargs)
        result = solve_static_field(points, velocities, weights, threshold, ITERATIONS, z_weight)
        assert torch.allclose(result[:6].float(), truth, atol=0.03), name


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_kernel_equals_the_torch_fit_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fit_kernel.available(), reason="needs CUDA and Triton")
def test_kernel_equals_the_torch_fit_on_the_gpu():
    check("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fit_kernel.available(), reason="needs CUDA and Triton")
def test_kernel_in_a_cuda_graph():
    """Captured once, the graph's replays fit each new sample copied into its inputs."""
    from nut_ros.pipeline.cuda_graphs import GraphedCall

    def fit(points, velocities, weights, threshold):
        return solve_static_field(points, velocities, weights, threshold, ITERATIONS, 1.0)

    graphed = GraphedCall(fit)
    for seed in (6, 7, 8):
        args = [t.cuda() for t in sample(300, seed, movers=30)[:4]]
        got = graphed(*args)
        with mock.patch.object(fit_kernel, "available", lambda: False):
            ref = fit(*args)
        assert torch.allclose(got[:7], ref[:7], rtol=1e-9, atol=1e-10), (seed, got, ref)
    assert graphed.captured == 1


if __name__ == "__main__":  # (the interpreter test's child process)
    check("cpu")
