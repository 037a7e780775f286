"""Training step time of both stages with fresh weights (median of the steps after the first, peak GPU memory).

    python test/bench/bench_train.py --model tiny --raster-impl cuda --batch1 32 --batch2 16 --steps 5
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from nut_ros.train.trainer import TrainConfig, Trainer


def time_steps(trainer: Trainer, steps: int) -> tuple[list[float], float]:
    """Seconds of ``steps`` training steps and the peak GPU memory in GiB (NaN off-GPU)."""
    trainer._train_mode()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return times, mem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch1", type=int, default=16)
    p.add_argument("--batch2", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--raster-impl", default="auto", help="torch | cuda | auto")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-amp", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(model=args.model, steps=10**6, val_clips=1, device=args.device, amp=not args.no_amp,
                      raster_impl=args.raster_impl)
        s1 = Trainer(TrainConfig(stage=1, out=f"{tmp}/s1", batch=args.batch1, **common))
        s1.save()
        s2 = Trainer(TrainConfig(stage=2, out=f"{tmp}/s2", init=f"{tmp}/s1", batch=args.batch2, **common))
        for name, trainer in (("stage1", s1), ("stage2", s2)):
            times, mem = time_steps(trainer, args.steps)
            steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
            print(f"{args.model} {name} batch {trainer.cfg.batch}: first {times[0]:.2f} s, "
                  f"median {steady * 1000:.0f} ms/step, peak {mem:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
