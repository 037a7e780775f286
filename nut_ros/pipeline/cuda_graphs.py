"""CUDA graphs of the eager network: each call replays one captured graph instead of launching every kernel.

The network's per-frame work is hundreds of small kernels (the learned flow head alone runs six refinement steps of
small convolutions), so on a fast GPU the eager ``encode``/``decode`` are bound by kernel launches, not by the
arithmetic. :class:`GraphedCall` captures a function once per input signature (shapes, dtypes and a caller's key,
e.g. whether the learned motion is on) and then copies the inputs into the graph's static buffers, replays it and
returns clones of its outputs (the next replay overwrites the static ones). It keeps the ``max_graphs`` signatures
used last (a graph holds its buffers: a stream whose shapes or settings keep changing must not grow memory without
bound). Nothing else changes the computation: the graph runs the kernels of the function it captured (eager or
compiled), so its outputs equal that function's (``test/test_cuda_graphs_gpu.py``, ``test/test_compile_gpu.py``).
A function may also update tensors it keeps across calls in place (``state``, e.g. the local map's table): those
are copied before the calls that warm a capture up and restored after it, so each call updates them once.

Python's garbage collector is off while a graph is captured: a ``GraphedCall`` of a bound method or a closure over
its owner sits in a reference cycle, so a dropped owner's graphs are freed by a collection, and one that ran inside
another capture would destroy a graph there, which CUDA does not permit while a stream captures.

Requirements the network meets: fixed shapes per stream, no host synchronisation and no host-to-device copies
inside ``encode``/``decode``, and bf16 autocast without its weight-cast cache (``cache_enabled=False``: cached casts
would be freed when the autocast region ends while the graph still reads them).
"""
from __future__ import annotations

import gc
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from nut_ros.core.gaussians import Gaussians

#: eager calls on a side stream before capture (lets lazy initialisation, e.g. cuBLAS workspaces, happen outside it)
WARMUP_CALLS = 2
#: signatures a GraphedCall keeps by default: a stream uses one to a few (shape, learned motion on/off, the
#: perception stage's plans), so more means its settings keep changing
MAX_GRAPHS = 8


def clone_outputs(out: Any) -> Any:
    """Fresh copies of a call's tensors (a :class:`Gaussians`, a NamedTuple or any pytree of tensors)."""
    if isinstance(out, Gaussians):
        return out.map(torch.clone)
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)


class GraphedCall:
    """``fn(*args)`` through a CUDA graph per input signature; ``key()`` adds state the graph depends on;
    ``state()``: the tensors ``fn`` updates in place (restored after the warm-up calls of a capture)."""

    def __init__(self, fn: Callable, key: Callable[[], tuple] = tuple, max_graphs: int = MAX_GRAPHS,
                 state: Callable[[], list[torch.Tensor]] = list):
        self._fn, self._key, self._state, self.max_graphs = fn, key, state, max_graphs
        self._graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]] = OrderedDict()
        self.dropped = 0  # graphs dropped to keep max_graphs
        self._pool = None  # one memory pool shared by this call's graphs

    @property
    def captured(self) -> int:
        """How many graphs are held (one per input signature seen, at most ``max_graphs``)."""
        return len(self._graphs)

    def __call__(self, *args):
        flat, spec = tree_flatten(args)
        graph, inputs, out = self._entry(flat, spec)
        for dst, src in zip(inputs, flat):
            dst.copy_(src)
        graph.replay()
        return clone_outputs(out)

    def prepare(self, *args) -> None:
        """Capture the graph of ``args``' signature (and the current key) now if it is not held, without running
        it: a capture synchronises the device, so a caller that knows the signatures it will use can take that wait
        before its latency matters."""
        self._entry(*tree_flatten(args))

    def _entry(self, flat: list[torch.Tensor], spec) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]:
        """The graph of this signature, captured if it is not held."""
        if not all(isinstance(t, torch.Tensor) and t.is_cuda for t in flat):
            raise TypeError("a graphed call takes CUDA tensors only (in tuples / NamedTuples)")
        signature = (str(spec), *((tuple(t.shape), t.dtype, t.device) for t in flat), *self._key())
        entry = self._graphs.get(signature)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:  # the least recently used goes (its memory with it)
                self._graphs.popitem(last=False)
                self.dropped += 1
            entry = self._graphs[signature] = self._capture(flat, spec)
        self._graphs.move_to_end(signature)
        return entry

    def _capture(self, flat: list[torch.Tensor], spec) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]:
        inputs = [t.clone() for t in flat]
        args = tree_unflatten(inputs, spec)
        saved = [t.clone() for t in self._state()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self._fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        for t, kept in zip(self._state(), saved):  # (capturing runs nothing: the caller's replay is the call)
            t.copy_(kept)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        collecting = gc.isenabled()
        gc.disable()  # (see the module docstring)
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._fn(*args)
        finally:
            if collecting:
                gc.enable()
        return graph, inputs, out
