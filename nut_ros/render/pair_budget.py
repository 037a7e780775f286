"""How many tile-Gaussian pairs the CUDA rasterizer's sort buffer holds, so that a render need not wait for the GPU.

How many (tile, Gaussian) pairs a render has is known only on the device, after the projection. Sizing the sort
buffer from that count makes the host wait for every queued kernel (the network's included) before it can launch
the rest of the render, so nothing the host does after it overlaps the GPU's work. A :class:`PairBudget` sizes the
buffer from the largest count seen instead (times ``headroom``) and keeps, on the device, the largest count of the
renders since it was last asked and whether any of them exceeded its buffer. After the renders' outputs have been
copied to the host (the queue has drained, so reading costs nothing), :meth:`PairBudget.overflowed` says whether a
render dropped pairs and grows the budget; the caller then renders again, so the outputs are always exact.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

HEADROOM = 1.5  # the budget is this many times the largest count seen: a frame rarely grows by half


class PairBudget:
    """The sort-buffer size for the next CUDA renders (0 until the first render: sized from its count)."""

    def __init__(self, headroom: float = HEADROOM):
        if headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {headroom}")
        self.headroom = headroom
        self.capacity = 0
        self._largest: Tensor | None = None  # [1] int64 on the device: largest count since the last check
        self._over: Tensor | None = None  # [1] bool: a render since the last check dropped pairs

    def record(self, count: Tensor, capacity: int) -> None:
        """Note a render's device-side pair ``count`` that ran with a buffer of ``capacity`` (0: exact) pairs."""
        over = count > capacity if capacity > 0 else torch.zeros_like(count, dtype=torch.bool)
        if self._largest is None:
            self._largest, self._over = count, over
        else:
            self._largest, self._over = torch.maximum(self._largest, count), self._over | over

    def overflowed(self) -> bool:
        """Whether a render since the last call dropped pairs (its outputs are incomplete); grows the budget to
        ``headroom`` times the largest count. Reads two numbers from the device: call it once the outputs are on
        the host."""
        if self._largest is None:
            return False
        largest, over = torch.cat([self._largest, self._over.long()]).tolist()
        self._largest = self._over = None
        self.capacity = max(self.capacity, math.ceil(largest * self.headroom), 1)
        return bool(over)
