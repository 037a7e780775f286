"""``rasterize(impl="auto")`` falls back to torch, warning once, when the CUDA extension cannot be imported or built.

On a machine without a CUDA device the extension's import fails for real (``nut_ros.render._cuda`` raises
``ImportError``); the decision is taken once per process, so the warning test runs in a fresh interpreter.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench.scenes import pixel_aligned_scene
from nut_ros.render import rasterize
from nut_ros.render.projection import LOWPASS

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where the CUDA import fails")
REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, warnings
    import torch
    from bench.scenes import pixel_aligned_scene
    from nut_ros.render import rasterize
    from nut_ros.render._torch_impl import rasterize_torch
    from nut_ros.render.projection import LOWPASS

    class OnGpu(torch.Tensor):  # a CPU tensor that reports is_cuda, so rasterize takes its GPU branch
        @property
        def is_cuda(self):
            return True

    inputs = pixel_aligned_scene(8, 6, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rasterize(inputs, 24, 32, lowpass=LOWPASS)  # CPU tensors: the CUDA loader is not even imported
    assert "nut_ros.render._cuda" not in sys.modules
    gpu_like = inputs._replace(means=inputs.means.as_subclass(OnGpu))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [rasterize(gpu_like, 24, 32, lowpass=LOWPASS) for _ in range(2)]
    want = rasterize_torch(*inputs, 24, 32, torch.full((3,), 0.5), LOWPASS)
    assert all(torch.equal(g.as_subclass(torch.Tensor), w) for out in outs for g, w in zip(out, want))
    print("WARNINGS", len(caught), caught[0].category.__name__, caught[0].message)
""")


def test_auto_falls_back_to_torch_with_one_warning_naming_the_cause():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "test"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("WARNINGS 1 RuntimeWarning CUDA rasterizer unavailable, rendering with the torch "
                           "implementation (ImportError: nut_ros.render._cuda needs a CUDA device"), line


def test_cuda_impl_raises_with_the_cause():
    with pytest.raises(RuntimeError, match=r"impl='cuda' needs CUDA tensors.*ImportError: .*CUDA device"):
        rasterize(pixel_aligned_scene(4, 4), 16, 16, impl="cuda", lowpass=LOWPASS)
