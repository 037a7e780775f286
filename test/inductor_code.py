"""Reading Inductor's generated code (``torch._inductor.utils.run_and_get_code``) for the racy kernel pattern.

A looped reduction kernel (``triton_red_*``) that stores to a buffer and loads from it again later in the kernel
reads back what other warps may not have written yet: the store and the load may spread the elements over the warps
differently, and no barrier separates the loops (upstream PR pytorch/pytorch#190519 adds one). Compiled channel-
major patch tokens made one such kernel in ``encode`` and wrong CUDA-graph replays with it
(``nut_ros/pipeline/compile.py``).
"""
from __future__ import annotations

import re

_KERNEL = re.compile(r"(?P<name>triton_\w+) = async_compile\.triton\('(?P=name)', '''(?P<src>.*?)'''", re.S)
_STORE = re.compile(r"tl\.store\((\w+) \+")
_LOAD = re.compile(r"tl\.load\((\w+) \+")


def kernels(code: str) -> dict[str, str]:
    """Every Triton kernel's source in one module of generated code, by name."""
    return {m["name"]: m["src"] for m in _KERNEL.finditer(code)}


def stored_pointers(source: str) -> set[str]:
    """The pointers a kernel stores to (``tl.store(out_ptr0 + ...)``)."""
    return set(_STORE.findall(source))


def reads_back_stores(source: str) -> bool:
    """Whether a kernel loads, on a later line and with no ``tl.debug_barrier()`` between, from a pointer it has
    stored to."""
    stored: set[str] = set()
    for line in source.splitlines():
        if "tl.debug_barrier()" in line:
            stored.clear()
        if stored.intersection(_LOAD.findall(line)):
            return True
        stored.update(_STORE.findall(line))
    return False


def racy_reductions(codes: list[str]) -> list[str]:
    """Names of the looped reduction kernels in ``codes`` that read back what they stored."""
    return sorted({name for code in codes for name, src in kernels(code).items()
                   if name.startswith("triton_red_") and reads_back_stores(src)})
