"""The emulator's float intrinsics and conversions (attncc.gpu_emulator.vector,
arith): ex2.approx / rcp.approx as the correctly rounded f32 results, with
the IEEE special values the kernels rely on (2^-inf = 0, 2^big = inf,
1 / inf = 0), sitofp, math.cttz (the paged gathers' page-size shift), and
intrinsics it does not model refused by name."""
import numpy as np
import pytest

from attncc import gpu_emulator as emu
from emu_kernels import module, program, run

IN32 = "memref<32xf32>"
I32 = "memref<32xi32>"


def intrinsic_kernel(name: str) -> str:
    return f"""
      %tid = gpu.thread_id x
      %x = memref.load %a[%tid] : {IN32}
      %y = llvm.call_intrinsic "{name}"(%x) : (f32) -> f32
      memref.store %y, %out[%tid] : {IN32}"""


def _run(name, a):
    out = np.zeros(32, np.float32)
    run(module(intrinsic_kernel(name), [("a", IN32), ("out", IN32)]), a, out, elts=["f32", "f32"])
    return out


def test_ex2_and_rcp():
    a = np.linspace(-30, 30, 32, dtype=np.float32)
    a[0], a[1], a[2] = -np.inf, np.inf, 200.0
    e = _run("llvm.nvvm.ex2.approx.ftz.f", a)
    with np.errstate(over="ignore"):
        want = np.exp2(a.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(e, want)
    assert e[0] == 0 and e[1] == np.inf and e[2] == np.inf
    b = np.linspace(0.5, 40, 32, dtype=np.float32)
    b[0], b[1] = np.inf, 1.0
    r = _run("llvm.nvvm.rcp.approx.ftz.f", b)
    np.testing.assert_array_equal(r, (1.0 / b.astype(np.float64)).astype(np.float32))
    assert r[0] == 0 and r[1] == 1


def test_sitofp():
    body = f"""
      %tid = gpu.thread_id x
      %i = arith.index_cast %tid : index to i32
      %c = arith.constant 20 : i32
      %d = arith.subi %i, %c : i32
      %f = arith.sitofp %d : i32 to f32
      memref.store %f, %out[%tid] : {IN32}"""
    out = np.zeros(32, np.float32)
    run(module(body, [("out", IN32)]), out, elts=["f32"])
    np.testing.assert_array_equal(out, np.arange(32, dtype=np.float32) - 20)


@pytest.mark.parametrize("bits", [32, 64])
def test_cttz(bits):
    """Trailing zeros of every thread's value, cttz(0) = the bit width, as LLVM."""
    vals = np.array([0, 1, 2, 3, 4, 6, 8, 16, 96, 128, 255, 256, 1 << 20, 3 << 29, 7, 12]
                    + [1 << (i % 31) for i in range(16)], np.int32)
    if bits == 64:
        vals = vals.astype(np.int64) << np.int64(2)   # up to 2^32: past 32 bits
    body = f"""
      %tid = gpu.thread_id x
      %x = memref.load %a[%tid] : memref<32xi{bits}>
      %n = math.cttz %x : i{bits}
      %m = arith.index_castui %n : i{bits} to index
      %r = arith.index_cast %m : index to i32
      memref.store %r, %out[%tid] : {I32}"""
    out = np.zeros(32, np.int32)
    run(module(body, [("a", f"memref<32xi{bits}>"), ("out", I32)]), vals, out,
        elts=[f"i{bits}", "i32"])
    want = [bits if v == 0 else (int(v) & -int(v)).bit_length() - 1 for v in vals]
    np.testing.assert_array_equal(out, want)


def test_other_intrinsics_are_refused_by_name():
    with pytest.raises(emu.SimError, match="intrinsic llvm.nvvm.tanh.approx.f32"):
        program(module(intrinsic_kernel("llvm.nvvm.tanh.approx.f32"), [("a", IN32), ("out", IN32)]))
