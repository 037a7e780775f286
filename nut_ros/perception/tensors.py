"""Moving the perception stage's data between the host and the device that holds the Gaussians.

The stage runs its per-Gaussian work in torch on the tensors it is given (CUDA when the pipeline left its cloud on the
GPU, CPU otherwise). Small host arrays (poses, the frame's numbers, the input depth) go up through kept page-locked
buffers without waiting for the device (:class:`Uploader`); a download waits for it, so the stage gathers what the host
needs into one tensor and downloads that once (:func:`download`, or :func:`download_queued`, which waits only for the
work queued before it). :func:`pick` selects rows by a mask without compacting on the device (a boolean selection waits
for the device to learn its size). On the CPU the stage runs on one thread (:func:`one_thread`).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from nut_ros.pipeline.transfer import Upload, to_host, to_host_async


class Uploader:
    """Small host arrays (numpy or numbers) up to the device of a tensor they go with, in a given dtype: on a GPU
    through a page-locked buffer kept per device and reused (:class:`~nut_ros.pipeline.transfer.Upload`: one host
    copy, the copy up queued without waiting), so a call site that uploads every frame allocates nothing; on the CPU
    the array itself (shared where it has that dtype and is contiguous and writable). One per call site: a buffer is
    written again only once its previous copy up is done."""

    def __init__(self):
        self._kept: dict[torch.device, Upload] = {}

    def __call__(self, array, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``array`` as a tensor on ``like``'s device, in ``dtype`` (default: ``like``'s)."""
        kept = self._kept.get(like.device)
        if kept is None:
            kept = self._kept[like.device] = Upload(like.device)
        return kept(np.asarray(array, dtype=torch.empty(0, dtype=dtype or like.dtype).numpy().dtype))


def download(t: torch.Tensor) -> np.ndarray:
    """``t`` on the host (on a GPU: one synchronisation)."""
    return to_host(t)


def download_queued(t: torch.Tensor) -> tuple[np.ndarray, torch.cuda.Event | None]:
    """``t`` on the host without waiting: on a GPU a copy into page-locked memory queued behind the work queued so
    far, readable once the returned event's ``synchronize()`` returns (work queued later need not be done); on the
    CPU a view and no event."""
    host = to_host_async(t)
    if not t.is_cuda:
        return host, None
    ready = torch.cuda.Event()
    ready.record(torch.cuda.current_stream(t.device))  # the copy's stream: that of t's device
    return host, ready


def pick(mask: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Indices of the elements of ``mask`` (1-D bool) whose rank among the true ones is ``ranks`` (0-based); a rank
    at or past the number of true elements gives ``len(mask)`` (index a table with one padding row at its end)."""
    return torch.searchsorted(torch.cumsum(mask, 0), ranks + 1)


@contextlib.contextmanager
def one_thread(device: torch.device):
    """Torch on one CPU thread inside the block when ``device`` is the CPU: the stage's tensors (tens of thousands
    of rows) gain little from splitting an operation over threads, and on a busy CPU each split waits for a thread
    to be scheduled (2-core VM at load 3, 20k Gaussians: 268 ms per frame on 2 threads, 10 ms on one)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
