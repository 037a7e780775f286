"""Does compiling one thing change how a later compile in the same process comes out? (GPU diagnostic)

    python test/bench/compile_order.py FIRST_TESTS... -- LATER_TESTS...

Runs the pytest selection FIRST_TESTS (``-m gpu``), prints every Inductor and Dynamo setting and torch backend flag
that it left changed, then runs LATER_TESTS in the same process (e.g. ``test/test_compile_gpu.py``, whose
compiled-vs-eager prints show with ``-s``).
"""
from __future__ import annotations

import sys

import pytest
import torch


def settings() -> dict[str, object]:
    """Inductor's and Dynamo's settings and the backends' precision flags, by name."""
    out = {f"inductor.{k}": v for k, v in torch._inductor.config.get_config_copy().items()}
    out.update({f"dynamo.{k}": v for k, v in torch._dynamo.config.get_config_copy().items()})
    m = torch.backends.cuda.matmul
    out.update({"float32_matmul_precision": torch.get_float32_matmul_precision(), "matmul.allow_tf32": m.allow_tf32,
                "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul.bf16_reduced": m.allow_bf16_reduced_precision_reduction,
                "matmul.fp16_reduced": m.allow_fp16_reduced_precision_reduction,
                "deterministic": torch.are_deterministic_algorithms_enabled()})
    return out


def main() -> None:
    split = sys.argv.index("--")
    first, later = sys.argv[1:split], sys.argv[split + 1:]
    before = settings()
    pytest.main(["-q", "-s", "-m", "gpu", "-p", "no:cacheprovider", *first])
    after = settings()
    changed = [k for k in before if repr(before[k]) != repr(after.get(k))]
    print("settings the first tests left changed:", {k: (before[k], after[k]) for k in changed} or "none")
    pytest.main(["-q", "-s", "-m", "gpu", "-p", "no:cacheprovider", *later])


if __name__ == "__main__":
    main()
