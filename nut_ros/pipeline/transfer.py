"""Host-device copies: the frames the pipeline takes in, and what it publishes.

Up to the device, :class:`Upload` copies each frame's arrays into a page-locked buffer of its own, reused frame
after frame, and only queues the copy from there (``non_blocking``), so the host goes on to its next work as the
bytes move; a copy from pageable memory returns only once the driver has staged it through a pinned buffer of its
own.

Back to the host, a copy from the GPU into ordinary (pageable) host memory is staged by the driver through a pinned
buffer, at a fraction of the link's speed; copying straight into page-locked memory avoids that (PyTorch's caching
host allocator reuses the pinned blocks of earlier frames, so the allocation is not paid per frame). The returned
array shares the pinned tensor's memory and keeps it alive. :func:`to_host_async` only queues the copy, so the host
can go on queueing work, and :func:`copy_on_side_stream` queues it on a second stream so that it runs while the GPU
works on what is queued after it; their arrays are valid after :func:`wait_for_copies`.
"""
from __future__ import annotations

import functools

import numpy as np
import torch


def to_host(t: torch.Tensor) -> np.ndarray:
    """``t`` as a numpy array: a view for a CPU tensor, one copy into pinned memory for a CUDA tensor."""
    if not t.is_cuda:
        return t.detach().numpy()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t.detach())  # blocking: the data is on the host when this returns
    return host.numpy()


def to_host_async(t: torch.Tensor) -> np.ndarray:
    """Like :func:`to_host`, but a CUDA tensor's copy is only queued: read the array after :func:`wait_for_copies`
    (or any later blocking copy from the same stream)."""
    if not t.is_cuda:
        return t.detach().numpy()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t.detach(), non_blocking=True)
    return host.numpy()


def copy_on_side_stream(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Queue copies of CUDA ``tensors`` (made by the work queued so far) into pinned host memory on a side stream of
    their device: the copy engine moves them while the current stream's later kernels run. Read the arrays after
    :func:`wait_for_copies`."""
    device = tensors[0].device
    main, side = torch.cuda.current_stream(device), _side_stream(device)
    side.wait_stream(main)  # the tensors are complete before their copy starts
    hosts = []
    with torch.cuda.stream(side):
        for t in tensors:
            hosts.append(to_host_async(t))
            t.record_stream(side)  # their memory is not reused by the main stream before the copy has read it
    return hosts


@functools.lru_cache(maxsize=None)
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def wait_for_copies() -> None:
    """Block until the GPU's queued work (the copies of :func:`to_host_async` included) is done; nothing to wait for
    when CUDA was never used."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Upload:
    """Host arrays to ``device`` as tensors of the same shape and dtype. On a CUDA device each array is copied (one
    host memcpy) into a page-locked buffer kept for its shape and dtype and reused by the next array, and the copy up
    is queued (``non_blocking``); before the buffer is written again the previous copy out of it is waited for (a
    CUDA event, normally done long before). Elsewhere the array itself goes, as ``torch.from_numpy(a).to(device)``."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._buffer: torch.Tensor | None = None
        self._read: torch.cuda.Event | None = None  # recorded after the last copy out of the buffer

    def __call__(self, a: np.ndarray) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(np.require(a, requirements=["C", "W"])).to(self.device)
        host = None if self._buffer is None else self._buffer.numpy()
        if host is None or host.shape != a.shape or host.dtype != a.dtype:
            self._buffer = torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype)).dtype, pin_memory=True)
            self._read, host = torch.cuda.Event(), self._buffer.numpy()
        elif not self._read.query():  # (done long before, as a rule: then nothing is waited for)
            self._read.synchronize()
        np.copyto(host, a)
        out = self._buffer.to(self.device, non_blocking=True)
        self._read.record(torch.cuda.current_stream(self.device))
        return out
