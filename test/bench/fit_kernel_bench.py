"""Device time of the camera-motion fit's Triton kernel (nut_ros/perception/fit_kernel.py) per block size and warp
count, beside the torch fit it replaces, on the stage's sample size; each result checked against the torch fit.

    python test/bench/fit_kernel_bench.py [--n 4096] [--configs 128x4,256x8,...]

Times are CUDA-event means over replays of a CUDA graph holding ``--repeat`` fits (as the per-Gaussian graph holds
one), so launch overhead is left out. ``n=128`` beside the full sample separates the rounds' fixed cost (the
reductions across the program's warps and the closed-form solves) from the passes over the sample.
"""
import argparse
from unittest import mock

import torch

from nut_ros.perception import fit_kernel
from nut_ros.perception.ego_motion import HUBER_ROUNDS, RIDGE, TUKEY_C, solve_static_field

ITERATIONS = 6  # (the default ego_iterations)


def sample(n: int, seed: int = 0):
    """A moving camera's rigid field with noise, a fifth of the points moving on their own (as the cases of
    test/test_perception_fit_kernel.py)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=g) * torch.tensor([6.0, 4.0, 5.0]) + torch.tensor([-3.0, -2.0, 0.5])
    omega, c = torch.randn(3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.5
    velocities = c + torch.cross(omega.expand(n, 3), points, dim=1) + 0.02 * torch.randn(n, 3, generator=g)
    velocities[: n // 5] += torch.randn(n // 5, 3, generator=g) + 1.0
    weights = torch.rand(n, generator=g) * 0.9 + 0.1
    threshold = 0.05 + 0.02 * points[:, 2]
    return [t.cuda() for t in (points, velocities, weights, threshold)]


def graphed_ms(fn, repeat: int) -> float:
    """Mean device ms of ``fn`` over replays of a CUDA graph holding ``repeat`` calls."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeat):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / (10 * repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 128])
    ap.add_argument("--configs", default="128x4,256x4,256x8,512x8,512x16,1024x16,1024x32")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, {ITERATIONS} reweighting rounds")
    for n in args.n:
        inputs = sample(n)
        call = (*inputs, ITERATIONS, 1.0)
        with mock.patch.object(fit_kernel, "available", lambda: False):
            ref = solve_static_field(*call)
            torch_ms = graphed_ms(lambda: solve_static_field(*call), args.repeat)
        print(f"n={n} torch fit {torch_ms * 1000:.1f} us")
        for config in args.configs.split(","):
            fit_kernel.BLOCK, fit_kernel.WARPS = (int(v) for v in config.split("x"))
            got = fit_kernel.solve(*call, RIDGE, HUBER_ROUNDS, TUKEY_C)
            if got is None:
                print(f"n={n} kernel {config} failed: {fit_kernel.error}")
                fit_kernel.error = None
                continue
            diff = (got[:8] - ref[:8]).abs().max().item() if got[8] == ref[8] else float("inf")  # (a failed solve)
            ms = graphed_ms(lambda: fit_kernel.solve(*call, RIDGE, HUBER_ROUNDS, TUKEY_C), args.repeat)
            print(f"n={n} kernel {config} {ms * 1000:.1f} us, max |kernel - torch| {diff:.1e}")


if __name__ == "__main__":
    main()
