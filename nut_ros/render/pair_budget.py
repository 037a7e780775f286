"""How many tile-Gaussian pairs the CUDA rasterizer's sort buffer holds, so that a render need not wait for the GPU.

How many (tile, Gaussian) pairs a render has is known only on the device, after the projection. Sizing the sort
buffer from that count makes the host wait for every queued kernel (the network's included) before it can launch
the rest of the render, so nothing the host does after it overlaps the GPU's work. A :class:`PairBudget` sizes the
buffer ahead instead: the most pairs per Gaussian seen so far, times the render's Gaussians, times ``headroom`` (per
Gaussian, so that a stream's first frame sizes the renders of the pairs that follow, which have twice as many). It
keeps, on the device, the most pairs per Gaussian of the renders since it was last asked and whether any of them
exceeded its buffer. After the renders' outputs have been
copied to the host (the queue has drained, so reading costs nothing), :meth:`PairBudget.overflowed` says whether a
render dropped pairs and grows the budget; the caller then renders again, so the outputs are always exact.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

HEADROOM = 1.5  # the buffer is this many times the pairs expected from the most per Gaussian seen


class PairBudget:
    """Sort-buffer sizes for the next CUDA renders (see the module docstring)."""

    def __init__(self, headroom: float = HEADROOM):
        if headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {headroom}")
        self.headroom = headroom
        self.pairs_per_gaussian = 0.0  # the most seen; 0 until the first check (renders sized from their count)
        self._most: Tensor | None = None  # [1] float64 on the device: most pairs per Gaussian since the last check
        self._over: Tensor | None = None  # [1] bool: a render since the last check dropped pairs

    def capacity(self, gaussians: int) -> int:
        """Buffer size for a render of ``gaussians`` (0: size it from the count, which waits for the GPU)."""
        if not self.pairs_per_gaussian:
            return 0
        return max(1, math.ceil(self.headroom * self.pairs_per_gaussian * gaussians))

    def record(self, count: Tensor, capacity: int, gaussians: int) -> None:
        """Note a render of ``gaussians`` with device-side pair ``count`` and a buffer of ``capacity`` (0: exact)."""
        over = count > capacity if capacity > 0 else torch.zeros_like(count, dtype=torch.bool)
        ratio = count.double() / max(gaussians, 1)
        if self._most is None:
            self._most, self._over = ratio, over
        else:
            self._most, self._over = torch.maximum(self._most, ratio), self._over | over

    def overflowed(self) -> bool:
        """Whether a render since the last call dropped pairs (its outputs are incomplete); raises the budget to
        the most pairs per Gaussian seen. Reads two numbers from the device: call it once the outputs are on the
        host."""
        if self._most is None:
            return False
        most, over = torch.cat([self._most, self._over.double()]).tolist()
        self._most = self._over = None
        self.pairs_per_gaussian = max(self.pairs_per_gaussian, most)
        return bool(over)
