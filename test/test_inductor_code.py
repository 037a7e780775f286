"""The racy-kernel scan of Inductor's generated code (``test/inductor_code.py``) on two real kernels of the compiled
``small`` encode (H100, 2026-12-07): the one that wrote wrong replays and a looped reduction that only re-reads its
inputs."""
from pathlib import Path

from inductor_code import kernels, racy_reductions, reads_back_stores, stored_pointers

CODE = (Path(__file__).parent / "fixtures" / "inductor_reduction_kernels.txt").read_text()
RACY = "triton_red_fused__fused_rms_norm__to_copy_add_clone_transpose_view_10"
SAFE = "triton_red_fused__fused_rms_norm__to_copy_add_roll_view_6"


def test_the_kernel_that_stores_in_its_first_loop_and_reloads_in_its_second_is_found():
    found = kernels(CODE)
    assert set(found) == {RACY, SAFE}
    assert reads_back_stores(found[RACY]) and not reads_back_stores(found[SAFE])
    assert stored_pointers(found[RACY]) == {"out_ptr0", "out_ptr2"} and stored_pointers(found[SAFE]) == {"out_ptr1"}
    assert racy_reductions([CODE]) == [RACY]


def test_a_load_before_the_store_of_an_in_place_buffer_is_not_a_read_back():
    src = "    tmp0 = tl.load(in_out_ptr0 + (x0), xmask)\n    tl.store(in_out_ptr0 + (x0), tmp0, xmask)\n"
    assert not reads_back_stores(src)
    assert reads_back_stores(src + "    tmp1 = tl.load(in_out_ptr0 + (x0), xmask)\n")
    assert not reads_back_stores(src + "    tl.debug_barrier()\n    tmp1 = tl.load(in_out_ptr0 + (x0), xmask)\n")
