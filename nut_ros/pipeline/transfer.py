"""Device-to-host copies of what the pipeline publishes.

A copy from the GPU into ordinary (pageable) host memory is staged by the driver through a pinned buffer, at a
fraction of the link's speed; copying straight into page-locked memory avoids that (PyTorch's caching host
allocator reuses the pinned blocks of earlier frames, so the allocation is not paid per frame). The returned array
shares the pinned tensor's memory and keeps it alive. :func:`to_host_async` only queues the copy, so the host can go
on queueing work, and :func:`copy_on_side_stream` queues it on a second stream so that it runs while the GPU works on
what is queued after it; their arrays are valid after :func:`wait_for_copies`.
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
