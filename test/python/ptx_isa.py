"""Fragment layouts of the PTX ISA, encoded from the document (PTX ISA 8.x,
section "Warp-level Matrix Multiply-Accumulate Instructions"), independently
of attncc's C++ (passes/GpuLayout.h). Used by the layout unit tests and by the
SIMT emulator (gpu_sim.py) as the meaning of ldmatrix and mma.sync.

mma.m16n8k16 with .f16/.bf16 multiplicands and .f32 accumulators
("Matrix Fragments for mma.m16n8k16 with floating point type"):

  groupID           = %laneid >> 2
  threadID_in_group = %laneid % 4

  A (16x16, .row), registers a0..a7 (four .f16x2 registers {a0,a1}, {a2,a3}, ...):
    row = groupID        for ai where 0 <= i < 2 || 4 <= i < 6
          groupID + 8    otherwise
    col = (threadID_in_group * 2) + (i & 0x1)        for ai where i < 4
          (threadID_in_group * 2) + (i & 0x1) + 8    for ai where i >= 4

  B (16x8, .col), registers b0..b3 (two .f16x2 registers {b0,b1}, {b2,b3}):
    row = (threadID_in_group * 2) + (i & 0x1)        for bi where i < 2
          (threadID_in_group * 2) + (i & 0x1) + 8    for bi where i >= 2
    col = groupID

  C/D (16x8, .f32), registers c0..c3:
    row = groupID        for ci where i < 2
          groupID + 8    for ci where i >= 2
    col = (threadID_in_group * 2) + (i & 0x1)

ldmatrix.sync.aligned.m8n8.x{1,2,4}{,.trans}.shared.b16
("Warp-level matrix load instruction: ldmatrix"):
  threads 0-7 supply the row addresses of the first 8x8 matrix, 8-15 of the
  second, 16-23 of the third, 24-31 of the fourth; destination register j
  holds the fragment of matrix j. Without .trans, thread l receives row l / 4,
  elements (l % 4) * 2 and (l % 4) * 2 + 1 of each matrix ("each thread holds
  a fragment of a row"). With .trans the matrix is read column-major: thread l
  receives rows (l % 4) * 2 and (l % 4) * 2 + 1 of column l / 4.
"""
from __future__ import annotations


def group_id(lane: int) -> int:
    return lane >> 2


def thread_in_group(lane: int) -> int:
    return lane % 4


def mma_a(lane: int, i: int) -> tuple[int, int]:
    """(row, col) of a_i (i in 0..7) held by `lane`."""
    g, t = group_id(lane), thread_in_group(lane)
    row = g if (0 <= i < 2 or 4 <= i < 6) else g + 8
    col = t * 2 + (i & 1) if i < 4 else t * 2 + (i & 1) + 8
    return row, col


def mma_b(lane: int, i: int) -> tuple[int, int]:
    """(row = k, col = n) of b_i (i in 0..3) held by `lane`."""
    g, t = group_id(lane), thread_in_group(lane)
    row = t * 2 + (i & 1) if i < 2 else t * 2 + (i & 1) + 8
    return row, g


def mma_c(lane: int, i: int) -> tuple[int, int]:
    """(row, col) of c_i / d_i (i in 0..3) held by `lane`."""
    g, t = group_id(lane), thread_in_group(lane)
    row = g if i < 2 else g + 8
    return row, t * 2 + (i & 1)


def ldmatrix_element(lane: int, e: int, trans: bool) -> tuple[int, int]:
    """(row, col) inside an 8x8 matrix of element e (0 or 1) of the register
    that `lane` receives for it."""
    if not trans:
        return lane // 4, (lane % 4) * 2 + e
    return (lane % 4) * 2 + e, lane // 4


def ldmatrix_address_lane(matrix: int, row: int) -> int:
    """The lane whose address is row `row` of matrix `matrix`."""
    return 8 * matrix + row
