"""The emulator's cp.async (attncc.gpu_emulator.cp_async and the shared-memory
race checks of memref.py): data lands only when a wait_group retires its
group (oldest first), the source-size operand zero-fills, and reads of
another thread's landed data need a barrier. Hand-written kernels of 32
threads, each copying 16 bytes per group into dynamic shared memory."""
import numpy as np
import pytest

from attncc import gpu_emulator as emu
from emu_kernels import DSM, WG, module, run

SRC = "memref<512xf16>"
OUT = "memref<32x2xf32>"
VIEW = f"memref<512xf16, {WG}>"


def kernel(wait: int = 0, barrier: bool = True, read: str = "%other", src_elems: str = "") -> str:
    """Group 1: src[8 t .. 8 t + 8) -> smem[8 t ..]; group 2: src[256 + 8 t ..]
    -> smem[256 + 8 t ..]. After wait_group(`wait`) (and a barrier), thread t
    reads element `read` (%own = 8 t, %other = 8 ((t + 1) % 32) + 3) of each
    half into out[t, 0] (group 1) and out[t, 1] (group 2)."""
    return f"""
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c3 = arith.constant 3 : index
      %c8 = arith.constant 8 : index
      %c32 = arith.constant 32 : index
      %c256 = arith.constant 256 : index
      %dsm = gpu.dynamic_shared_memory : {DSM}
      %view = memref.view %dsm[%c0][] : {DSM} to {VIEW}
      %i1 = arith.muli %tid, %c8 : index
      %i2 = arith.addi %i1, %c256 : index
      %t1 = nvgpu.device_async_copy %src[%i1], %view[%i1], 8{src_elems} : {SRC} to {VIEW}
      %g1 = nvgpu.device_async_create_group %t1
      %t2 = nvgpu.device_async_copy %src[%i2], %view[%i2], 8{src_elems} : {SRC} to {VIEW}
      %g2 = nvgpu.device_async_create_group %t2
      nvgpu.device_async_wait %g2 {{numGroups = {wait} : i32}}
      {"gpu.barrier" if barrier else ""}
      %own = arith.addi %i1, %c0 : index
      %n1 = arith.addi %tid, %c1 : index
      %n = arith.remui %n1, %c32 : index
      %n8 = arith.muli %n, %c8 : index
      %other = arith.addi %n8, %c3 : index
      %x1 = memref.load %view[{read}] : {VIEW}
      %y1 = arith.extf %x1 : f16 to f32
      memref.store %y1, %out[%tid, %c0] : {OUT}
      %r2 = arith.addi {read}, %c256 : index
      %x2 = memref.load %view[%r2] : {VIEW}
      %y2 = arith.extf %x2 : f16 to f32
      memref.store %y2, %out[%tid, %c1] : {OUT}"""


def go(body: str):
    src = (np.arange(512) % 997 + 1).astype(np.float16)
    out = np.full((32, 2), -1.0, np.float32)
    stats = run(module(body, [("src", SRC), ("out", OUT)], smem=1024), src, out,
                elts=["f16", "f32"])
    return src.astype(np.float32), out, stats


def test_wait_all_then_barrier_reads_every_thread_data():
    src, out, stats = go(kernel())
    other = 8 * ((np.arange(32) + 1) % 32) + 3
    np.testing.assert_array_equal(out[:, 0], src[other])
    np.testing.assert_array_equal(out[:, 1], src[256 + other])
    # Counted per executed op (all threads of the block together).
    assert stats["cp.async"] == 2 and stats["barriers"] == 1


def test_wait_group_1_retires_only_the_oldest_group():
    # out[:, 0] would be readable; group 2 is still in flight.
    with pytest.raises(emu.SimError, match="memref.load reads shared memory a cp.async has "
                                           "not finished writing"):
        go(kernel(wait=1))


def test_reading_before_any_wait_is_in_flight():
    body = kernel().replace("nvgpu.device_async_wait %g2 {numGroups = 0 : i32}", "")
    with pytest.raises(emu.SimError, match="not finished writing"):
        go(body)


def test_own_data_needs_no_barrier_but_another_threads_does():
    src, out, _ = go(kernel(barrier=False, read="%own"))
    own = 8 * np.arange(32)
    np.testing.assert_array_equal(out[:, 0], src[own])
    np.testing.assert_array_equal(out[:, 1], src[256 + own])
    with pytest.raises(emu.SimError, match="another thread wrote since the last barrier"):
        go(kernel(barrier=False, read="%other"))


def test_source_elements_operand_zero_fills_the_rest():
    # 3 source elements of 8: elements 0..2 of each chunk are copied, 3..7 are 0.
    src, out, _ = go(kernel(src_elems=", %c3", read="%own"))
    own = 8 * np.arange(32)
    np.testing.assert_array_equal(out[:, 0], src[own])
    np.testing.assert_array_equal(out[:, 1], src[256 + own])
    src, out, _ = go(kernel(src_elems=", %c3", read="%other"))
    np.testing.assert_array_equal(out, 0)
    src, out, _ = go(kernel(src_elems=", %c8", read="%other"))
    np.testing.assert_array_equal(out[:, 0], src[8 * ((np.arange(32) + 1) % 32) + 3])


def test_copy_over_data_another_thread_read_needs_a_barrier():
    # After the reads, thread t copies again into its chunk, which thread
    # t - 1 read: a write-after-read race without a barrier in between.
    extra = f"""
      %t3 = nvgpu.device_async_copy %src[%i1], %view[%i1], 8 : {SRC} to {VIEW}"""
    with pytest.raises(emu.SimError, match="another thread read since the last barrier"):
        go(kernel() + extra)
    src, out, _ = go(kernel() + "\n      gpu.barrier" + extra)
    np.testing.assert_array_equal(out[:, 0], src[8 * ((np.arange(32) + 1) % 32) + 3])
