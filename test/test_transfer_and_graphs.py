"""Host-device copies, the CUDA-graph wrapper's contract and the rasterizer's pair budget on a machine without a GPU
(the GPU behaviour is in ``test_cuda_graphs_gpu.py``, ``test_cuda_rasterizer.py`` and the ``gpu``-marked tests
here)."""
import numpy as np
import pytest
import torch

from nut_ros.core.gaussians import Gaussians
from nut_ros.pipeline.cuda_graphs import GraphedCall, clone_outputs
from nut_ros.pipeline.stream import resize_rgb
from nut_ros.pipeline.transfer import Upload, to_host, to_host_async, wait_for_copies
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


def test_upload_to_the_cpu_is_the_array_itself():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Upload("cpu")(a)
    assert t.dtype == torch.float32 and t.device.type == "cpu" and t.data_ptr() == a.ctypes.data  # no copy
    frozen = a.copy()
    frozen.flags.writeable = False  # torch.from_numpy needs a writable array: copied first
    assert torch.equal(Upload("cpu")(frozen), t)


def test_resize_rgb_through_a_kept_upload_matches_a_fresh_one():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 36, 3), np.uint8)
    upload = Upload("cpu")
    for _ in range(2):
        assert torch.equal(resize_rgb(rgb, 10, 18, "cpu", upload), resize_rgb(rgb, 10, 18))
    assert torch.equal(resize_rgb(rgb[:, ::-1], 20, 36), torch.from_numpy(rgb[:, ::-1].copy()).permute(2, 0, 1)[None]
                       .float() / 255.0)  # a view that is not contiguous: copied, not resized


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_upload_to_cuda_reuses_its_pinned_buffer_without_overwriting_a_queued_copy():
    upload = Upload("cuda")
    frames = [np.full((540, 960, 3), i, np.uint8) for i in range(4)]
    ups = []
    for f in frames:
        torch.cuda._sleep(10_000_000)  # the copy waits behind this on the stream: the next write must wait for it
        ups.append(upload(f))
    buffer = upload._buffer.data_ptr()
    assert all(torch.equal(u.cpu(), torch.from_numpy(f)) for u, f in zip(ups, frames))
    assert upload(frames[0]).device.type == "cuda" and upload._buffer.data_ptr() == buffer  # reused
    depth = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert torch.equal(upload(depth).cpu(), torch.from_numpy(depth))  # another shape and dtype: a new buffer
    assert upload._buffer.is_pinned()


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


def test_resize_rgb_refuses_other_dtypes_and_leaves_the_input_alone():
    rgb = np.full((8, 12, 3), 100, np.uint8)
    out = resize_rgb(rgb, 4, 6)
    assert out.dtype == torch.float32 and np.all(rgb == 100)
    with pytest.raises(ValueError, match="uint8"):
        resize_rgb(rgb.astype(np.float32), 4, 6)
