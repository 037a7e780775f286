"""Where the rasterizer's CUDA sources live and the compile-time constants they share with Python.

``csrc/`` holds the kernels (``ortho_raster_kernels.cuh``), the host launch code of the PyTorch extension
(``ortho_raster.cu``, ``torch_bindings.cpp``; built by :mod:`nut_ros.render._cuda`) and their configuration header
``ortho_raster_config.h``. The header owns the tile size and the launch sizes: :data:`CONFIG` reads its integer
``#define ORTHO_*`` constants, so the torch rasterizer, the pycuda launcher and the TensorRT plugin of ``engine/``
(which compile the same sources) use the kernels' values instead of copies.
"""
from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"


def read_config(path: Path = CSRC / "ortho_raster_config.h") -> dict[str, int]:
    """The integer ``#define ORTHO_*`` constants of the kernels' configuration header."""
    values: dict[str, int] = {}
    for name, expr in re.findall(r"#define (ORTHO_\w+) ([^/\n]+)", path.read_text()):
        values[name] = int(eval(expr.strip(), {"__builtins__": {}}, dict(values)))  # integer arithmetic only
    return values


CONFIG = read_config()
TILE = CONFIG["ORTHO_TILE"]  #: tile edge in pixels (16x16 tiles, the reference's)
