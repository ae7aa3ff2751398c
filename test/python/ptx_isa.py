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


# --------------------------------------------------------------------------- wgmma
# Warpgroup-level MMA (PTX ISA 8.x, section "Asynchronous Warpgroup Level
# Matrix Multiply-Accumulate Instructions", wgmma.mma_async), encoded from the
# document:
#
# "Register Fragments" (Matrix Fragments for wgmma.mma_async.m64nNk16), the
# warpgroup is 4 consecutive warps; warp w = %warpid % 4 of the warpgroup holds
# rows [16w, 16w + 16) of A (when A is in registers) and of D:
#
#   A (64x16, .f16/.bf16, four .f16x2 registers a0..a7, low half first):
#     row = 16 w + groupID        for ai where 0 <= i < 2 || 4 <= i < 6
#           16 w + groupID + 8    otherwise
#     col = threadID_in_group * 2 + (i & 1)      for i < 4
#           threadID_in_group * 2 + (i & 1) + 8  for i >= 4
#     (per warp: the mma.m16n8k16 A fragment)
#
#   D (64xN, .f32, N/2 registers d0..d(N/2-1)):
#     row = 16 w + groupID + 8 * ((i >> 1) & 1)
#     col = 8 * (i >> 2) + threadID_in_group * 2 + (i & 1)
#     (per warp and 8-column block i >> 2: the mma.m16n8 C/D fragment)
#
# "Matrix Descriptor Format" (64-bit, in a register):
#     bits 13-0   matrix-descriptor-encode(start address)
#     bits 29-16  matrix-descriptor-encode(leading dimension byte offset, LBO)
#     bits 45-32  matrix-descriptor-encode(stride dimension byte offset, SBO)
#     bits 51-49  matrix base offset (0 when the swizzle pattern starts at its
#                 repeat boundary: 1024 B for 128-byte swizzle)
#     bits 63-62  swizzle mode: 0 none, 1 128-byte, 2 64-byte, 3 32-byte
#   with matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4.
#
# "Canonical Layouts" (CuTe notation, units of elements, T = 128 / element
# bits = 8 for f16/bf16; ((shape)):((stride)) maps (MN index, K index) to an
# element offset from the start address):
#     K-major,  128B swizzle: Swizzle<3,4,3> o ((8,m),(T,2k)):((8T,SBO),(1,T))
#     K-major,  64B  swizzle: Swizzle<2,4,3> o ((8,m),(T,2k)):((4T,SBO),(1,T))
#     K-major,  32B  swizzle: Swizzle<1,4,3> o ((8,m),(T,2k)):((2T,SBO),(1,T))
#     K-major,  no swizzle:                    ((8,m),(T,2k)):((1T,SBO),(1,LBO))
#     MN-major, 128B swizzle: Swizzle<3,4,3> o ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO))
#     MN-major, 64B  swizzle: Swizzle<2,4,3> o ((T,4,m),(8,k)):((1,T,LBO),(4T,SBO))
#     MN-major, 32B  swizzle: Swizzle<1,4,3> o ((T,2,m),(8,k)):((1,T,LBO),(2T,SBO))
#     MN-major, no swizzle:                    ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
#   (LBO and SBO in bytes in the descriptor; the layouts above take them in
#   elements.) So for 128-byte swizzle: K-major rows are 128 bytes apart inside
#   an 8-row atom, 8-row groups SBO apart, LBO unused; MN-major rows (one per
#   k) hold 64 contiguous MN elements, 8-k groups are SBO apart and 64-element
#   MN panels LBO apart. Swizzle<B,4,3> acts on the byte address: bits [4, 4+B)
#   are XORed with bits [7, 7+B) (for 128 bytes: the 16-byte chunk within a
#   128-byte row with the row's index within a 1024-byte block).
#
# Which operand is K-major: "Matrices A and B are stored in row-major and
# column-major format respectively" (imm-trans-a/b = 0: K-major); imm-trans-a/b
# = 1 selects M-major A / N-major B. In MLIR's nvvm.wgmma.mma_async, layoutA
# row / layoutB col are the K-major (non-transposed) forms.
#

SWIZZLE_BYTES = {0: 0, 1: 128, 2: 64, 3: 32}   # descriptor mode -> swizzle width


def wgmma_a(warp: int, lane: int, i: int) -> tuple[int, int]:
    """(row, col) of a_i (i in 0..7) of the 64x16 A held by `lane` of warp
    `warp` (0..3) of the warpgroup."""
    r, c = mma_a(lane, i)
    return 16 * warp + r, c


def wgmma_d(warp: int, lane: int, i: int) -> tuple[int, int]:
    """(row, col) of d_i (i in 0..N/2-1) of the 64xN f32 accumulator."""
    g, t = group_id(lane), thread_in_group(lane)
    return 16 * warp + g + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2 * t + (i & 1)


def desc_encode(x: int) -> int:
    """matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4."""
    return (x & 0x3FFFF) >> 4


def make_descriptor(start: int, lbo: int, sbo: int, swizzle: int = 1, base_offset: int = 0) -> int:
    """A 64-bit wgmma matrix descriptor from byte quantities."""
    return (desc_encode(start) | desc_encode(lbo) << 16 | desc_encode(sbo) << 32
            | (base_offset & 7) << 49 | (swizzle & 3) << 62)



def decode_descriptor(desc: int) -> dict:
    """Fields of a wgmma matrix descriptor; addresses and offsets in bytes."""
    desc &= (1 << 64) - 1
    return dict(start=(desc & 0x3FFF) << 4,
                lbo=((desc >> 16) & 0x3FFF) << 4,
                sbo=((desc >> 32) & 0x3FFF) << 4,
                base_offset=(desc >> 49) & 7,
                swizzle=(desc >> 62) & 3)


def swizzle_address(addr, swizzle: int):
    """The byte address after the descriptor's swizzle mode (Swizzle<B,4,3>
    on byte addresses: bits [4, 4+B) ^= bits [7, 7+B)); works on numpy arrays."""
    bits = {0: 0, 1: 3, 2: 2, 3: 1}[swizzle]
    if bits == 0:
        return addr
    mask = (1 << bits) - 1
    return addr ^ (((addr >> 7) & mask) << 4)


def wgmma_smem_offset(mn, k, d: dict, k_major: bool, elem_bytes: int = 2):
    """Byte offset from the start address (before swizzling) of element
    (mn, k) of a shared-memory operand (A: mn = row m; B: mn = column n)
    in the canonical layout of descriptor fields `d`; numpy-friendly."""
    T = 16 // elem_bytes
    swz = SWIZZLE_BYTES[d["swizzle"]]
    if k_major:
        if swz:
            # ((8,m),(T,2k)):((W T,SBO),(1,T)), W T elements = swz bytes per row
            return (mn % 8) * swz + (mn // 8) * d["sbo"] + k * elem_bytes
        # ((8,m),(T,2k)):((1T,SBO),(1,LBO)): 8x16-byte core matrices
        return (mn % 8) * 16 + (mn // 8) * d["sbo"] + (k % T) * elem_bytes + (k // T) * d["lbo"]
    if swz:
        W = swz // 16
        # ((T,W,m),(8,k)):((1,T,LBO),(W T,SBO))
        return ((mn % (W * T)) * elem_bytes + (mn // (W * T)) * d["lbo"]
                + (k % 8) * swz + (k // 8) * d["sbo"])
    # ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
    return (mn % T) * elem_bytes + (mn // T) * d["sbo"] + (k % 8) * 16 + (k // 8) * d["lbo"]


def wgmma_smem_address(mn, k, desc: int, k_major: bool, elem_bytes: int = 2):
    """Shared-memory byte address of element (mn, k) of the operand that
    descriptor `desc` describes: start + canonical offset, then the swizzle of
    the absolute address (base offset 0: the pattern repeats at its boundary)."""
    d = decode_descriptor(desc)
    if d["base_offset"]:
        raise ValueError("non-zero matrix base offset is not modeled")
    return swizzle_address(d["start"] + wgmma_smem_offset(mn, k, d, k_major, elem_bytes), d["swizzle"])
