"""The emulator's threads and lanes (attncc.gpu_emulator.lanes): thread and
block ids over a grid, gpu.shuffle xor within each warp of 32 lanes,
gpu.barrier outside divergent control flow, and ops it does not know."""
import numpy as np
import pytest

from attncc import gpu_emulator as emu
from emu_kernels import module, program, run

IN64 = "memref<64xf32>"


def shuffle_kernel(offset: str = "%off") -> str:
    return f"""
      %tid = gpu.thread_id x
      %x = memref.load %a[%tid] : {IN64}
      %off = arith.constant {{OFF}} : i32
      %w = arith.constant 32 : i32
      %tid32 = arith.index_cast %tid : index to i32
      %r, %valid = gpu.shuffle xor %x, {offset}, %w : f32
      memref.store %r, %out[%tid] : {IN64}"""


@pytest.mark.parametrize("k", [1, 2, 5, 16, 31])
def test_shuffle_xor_exchanges_within_each_warp(k):
    text = module(shuffle_kernel().replace("{OFF}", str(k)), [("a", IN64), ("out", IN64)],
                  threads=64)
    a = np.arange(64, dtype=np.float32) * 1.5 + 3
    out = np.zeros(64, np.float32)
    run(text, a, out, elts=["f32", "f32"])
    # Lane l of warp w reads lane l ^ k of the same warp (never the other warp).
    want = np.array([a[(t // 32) * 32 + ((t % 32) ^ k)] for t in range(64)], np.float32)
    np.testing.assert_array_equal(out, want)


def test_shuffle_butterfly_sum_gives_each_warp_its_total():
    # The reduction pattern of the softmax row max / sum: xor 16, 8, 4, 2, 1.
    steps = []
    prev = "%x"
    for i, k in enumerate((16, 8, 4, 2, 1)):
        steps.append(f"%o{i} = arith.constant {k} : i32")
        steps.append(f"%s{i}, %ok{i} = gpu.shuffle xor {prev}, %o{i}, %w : f32")
        steps.append(f"%sum{i} = arith.addf {prev}, %s{i} : f32")
        prev = f"%sum{i}"
    body = "\n      ".join([
        "%tid = gpu.thread_id x",
        f"%x = memref.load %a[%tid] : {IN64}",
        "%w = arith.constant 32 : i32",
        *steps,
        f"memref.store {prev}, %out[%tid] : {IN64}"])
    a = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    run(module(body, [("a", IN64), ("out", IN64)], threads=64), a, out, elts=["f32", "f32"])
    np.testing.assert_array_equal(out[:32], np.full(32, a[:32].sum()))
    np.testing.assert_array_equal(out[32:], np.full(32, a[32:].sum()))


def test_shuffle_offset_must_be_uniform():
    text = module(shuffle_kernel("%tid32").replace("{OFF}", "1"), [("a", IN64), ("out", IN64)],
                  threads=64)
    with pytest.raises(emu.SimError, match="shuffle offset: value differs across threads"):
        run(text, np.zeros(64, np.float32), np.zeros(64, np.float32), elts=["f32", "f32"])


def test_shuffle_modes_other_than_xor_are_refused():
    body = shuffle_kernel().replace("{OFF}", "1").replace("gpu.shuffle xor", "gpu.shuffle down")
    with pytest.raises(emu.SimError, match="shuffle mode"):
        program(module(body, [("a", IN64), ("out", IN64)], threads=64))


def test_thread_and_block_ids_over_a_grid():
    OUT = "memref<2x3x4xi32>"
    body = f"""
      %tid = gpu.thread_id x
      %bx = gpu.block_id x
      %by = gpu.block_id y
      %c100 = arith.constant 100 : index
      %c10 = arith.constant 10 : index
      %x100 = arith.muli %bx, %c100 : index
      %y10 = arith.muli %by, %c10 : index
      %s = arith.addi %x100, %y10 : index
      %v = arith.addi %s, %tid : index
      %vi = arith.index_cast %v : index to i32
      memref.store %vi, %out[%by, %bx, %tid] : {OUT}"""
    out = np.full((2, 3, 4), -1, np.int32)
    stats = run(module(body, [("out", OUT)], threads=4, blocks=(3, 2, 1)), out, elts=["int"])
    by, bx, t = np.meshgrid(range(2), range(3), range(4), indexing="ij")
    np.testing.assert_array_equal(out, bx * 100 + by * 10 + t)
    assert stats["launch"] == dict(grid=[3, 2, 1], block=[4, 1, 1], smem=0)


def test_barrier_in_divergent_control_flow_is_an_error():
    body = f"""
      %tid = gpu.thread_id x
      %c16 = arith.constant 16 : index
      %lo = arith.cmpi ult, %tid, %c16 : index
      scf.if %lo {{
        gpu.barrier
      }}
      %x = memref.load %a[%tid] : {IN64}
      memref.store %x, %out[%tid] : {IN64}"""
    with pytest.raises(emu.SimError, match="gpu.barrier in divergent control flow"):
        run(module(body, [("a", IN64), ("out", IN64)]), np.zeros(64, np.float32),
            np.zeros(64, np.float32), elts=["f32", "f32"])


def test_uniform_branch_counts_its_barrier_and_divergent_if_merges_per_thread():
    body = f"""
      %tid = gpu.thread_id x
      %c16 = arith.constant 16 : index
      %true = arith.constant true
      scf.if %true {{
        gpu.barrier
      }}
      %lo = arith.cmpi ult, %tid, %c16 : index
      %x = memref.load %a[%tid] : {IN64}
      %y = scf.if %lo -> (f32) {{
        %n = arith.negf %x : f32
        scf.yield %n : f32
      }} else {{
        %d = arith.addf %x, %x : f32
        scf.yield %d : f32
      }}
      memref.store %y, %out[%tid] : {IN64}"""
    a = np.arange(64, dtype=np.float32) + 1
    out = np.zeros(64, np.float32)
    stats = run(module(body, [("a", IN64), ("out", IN64)]), a, out, elts=["f32", "f32"])
    np.testing.assert_array_equal(out[:16], -a[:16])
    np.testing.assert_array_equal(out[16:32], 2 * a[16:32])
    np.testing.assert_array_equal(out[32:], 0)   # only 32 threads ran
    assert stats["barriers"] == 1


def test_unknown_op_is_refused_by_name():
    body = f"""
      %tid = gpu.thread_id x
      %x = memref.load %a[%tid] : {IN64}
      %y = math.sqrt %x : f32
      memref.store %y, %out[%tid] : {IN64}"""
    with pytest.raises(emu.SimError, match="the emulator does not know math.sqrt"):
        program(module(body, [("a", IN64), ("out", IN64)]))
