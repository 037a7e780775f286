"""Device time of the camera-motion fit's Triton kernel (nut_ros/perception/fit_kernel.py) per block size and warp
count, beside the torch fit it replaces, on the stage's sample size; each result checked against the torch fit.

    python test/bench/fit_kernel_bench.py [--n 4096] [--configs 128x4,256x8,...]

Times are CUDA-event means over replays of a CUDA graph holding ``--repeat`` fits (as the per-Gaussian graph holds
one), so launch overhead is left out. ``n=128`` beside the full sample separates the rounds' fixed cost (the
reductions across the program's warps and the closed-form solves) from the passes over the sample.
"""
import argparse
import sys
from pathlib import Path
from unittest import mock

import torch

from nut_ros.perception import fit_kernel
from nut_ros.perception.ego_motion import HUBER_ROUNDS, RIDGE, TUKEY_C, solve_static_field
from nut_ros.perception.params import ObstacleParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_perception_fit_kernel import sample as kernel_test_sample  # noqa: E402 (test/, the kernel's test)
from timing import graph_capture  # noqa: E402 (test/bench)

ITERATIONS = ObstacleParams().ego_iterations  # (the stage's default)


def sample(n: int, seed: int = 0) -> list[torch.Tensor]:
    """The kernel test's sample (a moving camera's rigid field with noise), a fifth of the points moving on their own,
    on the GPU: points, velocities, weights, thresholds."""
    return [t.cuda() for t in kernel_test_sample(n, seed, movers=n // 5)[:4]]


def graphed_ms(fn, repeat: int) -> float:
    """Mean device ms of ``fn`` over replays of a CUDA graph holding ``repeat`` calls."""
    graph, _ = graph_capture(lambda: [fn() for _ in range(repeat)], warm=fn)
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
    ap.add_argument("--n", type=int, nargs="+", default=[ObstacleParams().ego_samples, 128])
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
