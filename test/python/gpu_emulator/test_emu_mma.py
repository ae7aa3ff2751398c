"""The emulator's ldmatrix and mma.sync m16n8k16 (attncc.gpu_emulator.mma)
against numpy: one warp loads A [16 x 16] (ldmatrix.x4) and B [16 x 8]
(ldmatrix.x2.trans) from shared memory and multiplies them. The register
layouts the assertions use are written out here from the PTX ISA text
("Matrix Fragments for mma.m16n8k16", "ldmatrix"), not taken from ptx_isa.py."""
import numpy as np
import pytest

from attncc import gpu_emulator as emu
from emu_kernels import DSM, WG, module, run

SRC = "memref<512xf16>"
VIEW = f"memref<512xf16, {WG}>"
OUT_A = "memref<32x8xf32>"
OUT_B = "memref<32x4xf32>"
OUT_D = "memref<32x4xf32>"


def kernel(c_init: float = 0.0, a_row_shift: int = 0, diverge: bool = False) -> str:
    """smem[0:256) = A row-major, smem[256:384) = B row-major ([k][n]).
    Lane l gives the row address of ldmatrix.x4 (A: row l % 16, column
    8 (l / 16)) and of ldmatrix.x2.trans (B: row l % 16)."""
    lines = [
        "%tid = gpu.thread_id x",
        *(f"%c{c} = arith.constant {c} : index" for c in (0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 256)),
        f"%dsm = gpu.dynamic_shared_memory : {DSM}",
        f"%view = memref.view %dsm[%c0][] : {DSM} to {VIEW}",
    ]
    # 64 chunks of 8 elements: thread t copies chunks t and t + 32.
    lines += [
        "%c32 = arith.constant 32 : index",
        "%q1 = arith.addi %tid, %c32 : index",
        "%e0 = arith.muli %tid, %c8 : index",
        "%e1 = arith.muli %q1, %c8 : index",
        *(f"%t{j} = nvgpu.device_async_copy %src[%e{j}], %view[%e{j}], 8 : {SRC} to {VIEW}"
          for j in range(2)),
    ]
    lines += [
        "%g = nvgpu.device_async_create_group %t0, %t1",
        "nvgpu.device_async_wait %g {numGroups = 0 : i32}",
        "gpu.barrier",
        "%l16 = arith.remui %tid, %c16 : index",
        "%hi = arith.divui %tid, %c16 : index",
        "%acol = arith.muli %hi, %c8 : index",
        "%arow = arith.muli %l16, %c16 : index",
        "%aaddr0 = arith.addi %arow, %acol : index",
        f"%aaddr = arith.addi %aaddr0, %c{a_row_shift} : index",
        "%brow = arith.muli %l16, %c8 : index",
        "%baddr = arith.addi %brow, %c256 : index",
    ]
    lda = f"%a = nvgpu.ldmatrix %view[%aaddr] {{numTiles = 4 : i32, transpose = false}} : {VIEW} -> vector<4x2xf16>"
    if diverge:
        lines += ["%lo = arith.cmpi ult, %tid, %c16 : index",
                  "%a = scf.if %lo -> (vector<4x2xf16>) {",
                  "  " + lda.replace("%a =", "%a_in ="), "  scf.yield %a_in : vector<4x2xf16>",
                  "} else {", "  %z = arith.constant dense<0.0> : vector<4x2xf16>",
                  "  scf.yield %z : vector<4x2xf16>", "}"]
    else:
        lines.append(lda)
    lines += [
        f"%b = nvgpu.ldmatrix %view[%baddr] {{numTiles = 2 : i32, transpose = true}} : {VIEW} -> vector<2x2xf16>",
        f"%c = arith.constant dense<{c_init}> : vector<2x2xf32>",
        "%d = nvgpu.mma.sync (%a, %b, %c) {mmaShape = [16, 8, 16]} : "
        "(vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>",
    ]
    for r in range(4):
        for e in range(2):
            lines += [f"%a{r}{e} = vector.extract %a[{r}, {e}] : f16 from vector<4x2xf16>",
                      f"%af{r}{e} = arith.extf %a{r}{e} : f16 to f32",
                      f"memref.store %af{r}{e}, %oa[%tid, %c{2 * r + e}] : {OUT_A}"]
    for r in range(2):
        for e in range(2):
            lines += [f"%b{r}{e} = vector.extract %b[{r}, {e}] : f16 from vector<2x2xf16>",
                      f"%bf{r}{e} = arith.extf %b{r}{e} : f16 to f32",
                      f"memref.store %bf{r}{e}, %ob[%tid, %c{2 * r + e}] : {OUT_B}",
                      f"%d{r}{e} = vector.extract %d[{r}, {e}] : f32 from vector<2x2xf32>",
                      f"memref.store %d{r}{e}, %od[%tid, %c{2 * r + e}] : {OUT_D}"]
    return "\n      ".join(lines)


def go(body: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.integers(-4, 5, (16, 16)).astype(np.float16) / np.float16(4)
    B = rng.standard_normal((16, 8)).astype(np.float16)
    src = np.zeros(512, np.float16)
    src[:256], src[256:384] = A.reshape(-1), B.reshape(-1)
    oa, ob, od = (np.full((32, n), np.nan, np.float32) for n in (8, 4, 4))
    stats = run(module(body, [("src", SRC), ("oa", OUT_A), ("ob", OUT_B), ("od", OUT_D)],
                       smem=1024), src, oa, ob, od, elts=["f16", "f32", "f32", "f32"])
    return A.astype(np.float32), B.astype(np.float32), oa, ob, od, stats


def lane_layouts():
    """Per lane: (row, col) of A's a0..a7, B's b0..b3, C/D's c0..c3."""
    a, b, c = {}, {}, {}
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        a[lane] = [(g + 8 * ((i // 2) % 2), 2 * t + (i & 1) + 8 * (i // 4)) for i in range(8)]
        b[lane] = [(2 * t + (i & 1) + 8 * (i // 2), g) for i in range(4)]
        c[lane] = [(g + 8 * (i // 2), 2 * t + (i & 1)) for i in range(4)]
    return a, b, c


def test_ldmatrix_gives_the_mma_fragments():
    A, B, oa, ob, _, stats = go(kernel())
    la, lb, _ = lane_layouts()
    for lane in range(32):
        np.testing.assert_array_equal(oa[lane], [A[r, c] for r, c in la[lane]], err_msg=f"{lane}")
        np.testing.assert_array_equal(ob[lane], [B[r, c] for r, c in lb[lane]], err_msg=f"{lane}")
    assert stats["ldmatrix"] == 2


@pytest.mark.parametrize("c_init", [0.0, 1.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_mma_sync_is_a_times_b_plus_c(c_init, seed):
    A, B, _, _, od, stats = go(kernel(c_init), seed)
    want = (A.astype(np.float64) @ B.astype(np.float64) + c_init).astype(np.float32)
    _, _, lc = lane_layouts()
    got = np.full((16, 8), np.nan, np.float32)
    for lane in range(32):
        for i, (r, c) in enumerate(lc[lane]):
            got[r, c] = od[lane, i]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert stats["mma"] == 1


def test_ldmatrix_row_addresses_must_be_16_byte_aligned():
    with pytest.raises(emu.SimError, match="not 16-byte aligned"):
        go(kernel(a_row_shift=4))


def test_ldmatrix_in_divergent_control_flow_is_an_error():
    with pytest.raises(emu.SimError, match="ldmatrix in divergent control flow"):
        go(kernel(diverge=True))
