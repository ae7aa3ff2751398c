"""The lane / fragment / shared-memory layout arithmetic of attn-lower-to-gpu
(passes/GpuLayout.h, printed by `attncc-opt -attn-test-gpu-layout`) against
the PTX ISA tables of attncc.gpu_emulator.ptx_isa (encoded from the PTX ISA
document, not from our C++)."""
import json
import subprocess

import pytest

from attncc.gpu_emulator import ptx_isa as isa
from attncc.tools import tool_path


@pytest.fixture(scope="module")
def layout():
    proc = subprocess.run([str(tool_path("attncc-opt")), "-attn-test-gpu-layout", "-o", "/dev/null", "-"],
                          input="module {}\n", capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def _tile_element_via_ldmatrix(addr, lane, reg, e, trans):
    """(row, col) of the tile element that `lane` receives in register `reg`,
    element `e`, when lane L supplies the address addr[L] = (row, col) of row
    L % 8 of matrix L // 8 (PTX ISA ldmatrix semantics)."""
    r, c = isa.ldmatrix_element(lane, e, trans)
    row, col = addr[isa.ldmatrix_address_lane(reg, r)]
    return row, col + c


def test_ldmatrix_q_gives_mma_a_fragments(layout):
    # Q (row-major [M, K] tile), no .trans: register j = {a_2j, a_2j+1}.
    addr = layout["ldmatrix_row_major_x4"]
    for lane in range(32):
        for j in range(4):
            for e in range(2):
                got = _tile_element_via_ldmatrix(addr, lane, j, e, trans=False)
                assert got == isa.mma_a(lane, 2 * j + e), (lane, j, e)


def test_ldmatrix_v_trans_gives_mma_b_fragments(layout):
    # V ([keys, d] row-major), .trans: registers 2h, 2h+1 = {b0,b1}, {b2,b3}
    # of the n-block (d columns) 8h..8h+7.
    addr = layout["ldmatrix_row_major_x4"]
    for lane in range(32):
        for j in range(4):
            h = j // 2
            for e in range(2):
                k, n = isa.mma_b(lane, 2 * (j % 2) + e)
                got = _tile_element_via_ldmatrix(addr, lane, j, e, trans=True)
                assert got == (k, 8 * h + n), (lane, j, e)


def test_ldmatrix_k_gives_mma_b_fragments_of_two_n_blocks(layout):
    # K ([keys, d] row-major = B^T), no .trans: registers 2h, 2h+1 = {b0,b1},
    # {b2,b3} of the n-block (keys) 8h..8h+7; tile element (n, k).
    addr = layout["ldmatrix_n_major_x4"]
    for lane in range(32):
        for j in range(4):
            h = j // 2
            for e in range(2):
                k, n = isa.mma_b(lane, 2 * (j % 2) + e)
                got = _tile_element_via_ldmatrix(addr, lane, j, e, trans=False)
                assert got == (8 * h + n, k), (lane, j, e)


def test_ldmatrix_row_addresses_are_16_byte_aligned_rows(layout):
    for name in ("ldmatrix_row_major_x4", "ldmatrix_n_major_x4"):
        rows = sorted(tuple(a) for a in layout[name])
        # 32 distinct row starts, each at a multiple of 8 elements (16 bytes).
        assert len(set(rows)) == 32
        assert all(c % 8 == 0 for _, c in rows)


def test_accumulator_ownership_is_the_mma_c_table(layout):
    for lane in range(32):
        for i in range(4):
            assert tuple(layout["accumulator"][lane][i]) == isa.mma_c(lane, i)


def test_accumulator_offsets_are_lane_independent(layout):
    # Masks use element c_i = element c_0 + accumulator_offset[i].
    for lane in range(32):
        r0, c0 = isa.mma_c(lane, 0)
        for i in range(4):
            dr, dc = layout["accumulator_offset"][i]
            assert (r0 + dr, c0 + dc) == isa.mma_c(lane, i)


def test_probabilities_reuse_score_accumulators_as_a_fragments(layout):
    # A register r of k-step kk holds a_{2r}, a_{2r+1}; it is built from C row
    # `crow` (c_{2 crow}, c_{2 crow + 1}) of score n-block 2 kk + nb.
    for lane in range(32):
        for r in range(4):
            nb, crow = layout["probability_fragment_source"][r]
            for e in range(2):
                row, col = isa.mma_c(lane, 2 * crow + e)
                assert (row, 8 * nb + col) == isa.mma_a(lane, 2 * r + e), (lane, r, e)


def test_tf32_fragments_are_the_m16n8k8_tables(layout):
    for lane in range(32):
        for i in range(4):
            assert tuple(layout["tf32_a"][lane][i]) == isa.mma_tf32_a(lane, i)
        for i in range(2):
            assert tuple(layout["tf32_b"][lane][i]) == isa.mma_tf32_b(lane, i)


def test_tf32_probabilities_with_permuted_keys_give_p_times_v(layout):
    # P.V on tf32 reads A register i from score accumulator element
    # tf32_probability_source[i] and V row tf32_key_of_column[k] for B's k:
    # with random P (16 rows x 8 keys) and V (8 keys x 8 cols), the m16n8k8
    # product of those fragments must be P @ V.
    import numpy as np

    perm = layout["tf32_key_of_column"]
    assert sorted(perm) == list(range(8))
    rng = np.random.default_rng(0)
    P, V = rng.standard_normal((16, 8)), rng.standard_normal((8, 8))
    A, B = np.zeros((16, 8)), np.zeros((8, 8))
    for lane in range(32):
        for i in range(4):
            src = layout["tf32_probability_source"][i]
            r, c = isa.mma_tf32_a(lane, i)          # where the MMA puts this register
            pr, pc = isa.mma_c(lane, src)           # the score element it is taken from
            assert pr == r
            A[r, c] = P[pr, pc]
            assert perm[c] == pc                    # A column c stands for key pc
        for i in range(2):
            k, n = isa.mma_tf32_b(lane, i)
            B[k, n] = V[perm[k], n]
    assert np.allclose(A @ B, P @ V)


def test_swizzle_is_a_permutation_of_each_row(layout):
    sw = layout["swizzle"]
    for row in range(16):
        for group in range(2):  # 8 chunks per 128 bytes
            chunks = range(8 * group, 8 * group + 8)
            assert sorted(sw[row][c] for c in chunks) == list(chunks)


@pytest.mark.parametrize("row_bytes", [128, 256])  # head dim 64, 128 (f16/bf16)
def test_swizzled_ldmatrix_phases_are_bank_conflict_free(layout, row_bytes):
    # One ldmatrix phase reads 8 rows r0..r0+7 (r0 % 8 == 0) at one logical
    # chunk; 32 banks x 4 bytes = 128 bytes: 8 distinct 16-byte bank groups
    # means no conflict.
    sw = layout["swizzle"]
    for r0 in (0, 8):
        for chunk in range(row_bytes // 16):
            groups = {((r0 + i) * row_bytes + sw[(r0 + i) % 16][chunk] * 16) // 16 % 8
                      for i in range(8)}
            assert len(groups) == 8, (r0, chunk)


def test_copy_rounds_cover_each_chunk_once_and_phases_are_conflict_free(layout):
    sw = layout["swizzle"]
    for key, entries in layout["copy_chunks"].items():
        threads, rows, cpr = map(int, key.split("x"))
        seen = [(r, c) for _, _, r, c in entries]
        assert sorted(seen) == [(r, c) for r in range(rows) for c in range(cpr)], key
        by_round = {}
        for tid, j, r, c in entries:
            by_round.setdefault((j, tid // 8), []).append((r, c))
        for (j, phase), rc in by_round.items():
            groups = {(r * cpr * 16 + sw[r % 16][c] * 16) // 16 % 8 for r, c in rc}
            assert len(groups) == len(rc), (key, j, phase)


def _swizzle_128b(byte_address: int) -> int:
    """PTX ISA, "Shared memory matrix layout" (wgmma / TMA swizzle modes):
    the 128-byte swizzle XORs address bits [4:6] with bits [7:9]."""
    return byte_address ^ (((byte_address >> 7) & 7) << 4)


@pytest.mark.parametrize("shape", ["16x64", "16x128", "64x64", "64x128", "128x64", "128x128"])
def test_panel_swizzle_is_the_128_byte_swizzle_of_the_wgmma_canonical_layout(layout, shape):
    # The canonical K-major layout of a [rows, cols] f16 tile for wgmma with
    # 128-byte swizzle (and what TMA's SWIZZLE_128B writes for a [rows, 64]
    # box): 64-column panels one after another, each [rows][64] with 128-byte
    # rows; the hardware swizzles the address. attncc's cp.async copies must
    # write each logical 16-byte chunk exactly where that puts it.
    rows, cols = map(int, shape.split("x"))
    entries = layout["panel_swizzle"][shape]
    assert len(entries) == rows * cols // 8
    for row, chunk, prow, pcol in entries:
        panel, c = divmod(8 * chunk, 64)
        canonical = panel * rows * 128 + row * 128 + c * 2
        assert prow * 128 + pcol * 2 == _swizzle_128b(canonical), (row, chunk)
