"""Host copies and the CUDA-graph wrapper's contract on a machine without a GPU (the GPU behaviour is in
``test_cuda_graphs_gpu.py``)."""
import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.pipeline.cuda_graphs import GraphedCall, clone_outputs
from nut_ros.pipeline.transfer import to_host


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
