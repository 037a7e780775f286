"""Host copies, the CUDA-graph wrapper's contract and the rasterizer's pair budget on a machine without a GPU (the
GPU behaviour is in ``test_cuda_graphs_gpu.py`` and ``test_cuda_rasterizer.py``)."""
import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.pipeline.cuda_graphs import GraphedCall, clone_outputs
from nut_ros.pipeline.transfer import to_host, to_host_async, wait_for_copies
from nut_ros.render import PairBudget


def test_to_host_of_a_cpu_tensor_is_a_view_that_keeps_it_alive():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    host = to_host(t)
    t[0, 0] = 42.0
    assert isinstance(host, np.ndarray) and host[0, 0] == 42.0 and host.base is not None


def test_graphed_call_refuses_cpu_tensors():
    with pytest.raises(TypeError, match="CUDA tensors"):
        GraphedCall(lambda x: x * 2)(torch.ones(3))


def test_clone_outputs_copies_every_tensor_of_gaussians_and_named_tuples():
    g = Gaussians(*(torch.zeros(1, 4, c) for c in (3, 3, 3, 1, 2, 2)), torch.zeros(1, 4))
    copy = clone_outputs(g)
    assert all(getattr(copy, f).data_ptr() != getattr(g, f).data_ptr() for f in ("xyz", "velocity", "t0"))
    pair = clone_outputs((torch.ones(2), [torch.zeros(1)]))
    assert torch.equal(pair[0], torch.ones(2)) and torch.equal(pair[1][0], torch.zeros(1))


def test_to_host_async_of_a_cpu_tensor_needs_no_wait():
    t = torch.arange(4, dtype=torch.float32)
    host = to_host_async(t)
    wait_for_copies()  # nothing queued on a GPU: returns at once
    assert np.array_equal(host, np.arange(4, dtype=np.float32))


def test_pair_budget_sizes_renders_per_gaussian_and_reports_overflow():
    budget = PairBudget(headroom=1.5)
    assert budget.capacity(1000) == 0 and not budget.overflowed()  # nothing seen: sized from the count
    budget.record(torch.tensor([2000]), 0, 1000)  # sized exactly from its count: cannot overflow
    assert not budget.overflowed() and budget.pairs_per_gaussian == 2.0
    assert budget.capacity(1000) == 3000 and budget.capacity(2000) == 6000  # a pair has twice the Gaussians
    budget.record(torch.tensor([5000]), 6000, 2000)
    budget.record(torch.tensor([100]), 6000, 2000)
    assert not budget.overflowed() and budget.capacity(2000) == 7500  # the most per Gaussian, never less
    budget.record(torch.tensor([9000]), 7500, 2000)  # one render dropped pairs
    budget.record(torch.tensor([10]), 7500, 2000)
    assert budget.overflowed() and budget.capacity(2000) == 13500
    assert not budget.overflowed()  # the check starts afresh
    with pytest.raises(ValueError, match="headroom"):
        PairBudget(headroom=0.5)
