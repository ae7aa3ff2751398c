"""Fragment layouts of the PTX ISA, encoded from the document (PTX ISA 8.x,
section "Warp-level Matrix Multiply-Accumulate Instructions"), independently
of attncc's C++ (passes/GpuLayout.h). Used by the layout unit tests and by the
SIMT emulator (this package) as the meaning of ldmatrix and mma.sync (and,
further down, of wgmma's descriptors / fragments and of TMA tensor maps, box
loads, out-of-bound fill and shared-memory swizzle).

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

mma.m16n8k8 with .tf32 multiplicands ("Matrix Fragments for mma.m16n8k8",
.tf32), one element per .b32 register; C/D as for m16n8k16:

  A (16x8, .row), registers a0..a3:
    row = groupID        for a0 and a2
          groupID + 8    for a1 and a3
    col = threadID_in_group        for a0 and a1
          threadID_in_group + 4    for a2 and a3

  B (8x8, .col), registers b0, b1:
    row = threadID_in_group        for b0
          threadID_in_group + 4    for b1
    col = groupID

TF32 ("Alternate floating data formats"): 1 sign, 8 exponent and 10 mantissa
bits, held in the upper 19 bits of a .b32 register; cvt.rna.tf32.f32 rounds
an f32 to it to nearest, ties away from zero (the low 13 bits become 0).

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

import numpy as np


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


def mma_tf32_a(lane: int, i: int) -> tuple[int, int]:
    """(row, col) of a_i (i in 0..3) of mma.m16n8k8 .tf32 held by `lane`."""
    g, t = group_id(lane), thread_in_group(lane)
    return (g if i in (0, 2) else g + 8), (t if i in (0, 1) else t + 4)


def mma_tf32_b(lane: int, i: int) -> tuple[int, int]:
    """(row = k, col = n) of b_i (i in 0, 1) of mma.m16n8k8 .tf32 held by `lane`."""
    g, t = group_id(lane), thread_in_group(lane)
    return (t if i == 0 else t + 4), g


def cvt_rna_tf32(bits: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32 on f32 bit patterns (uint32): round to nearest, ties
    away from zero, to 10 mantissa bits; NaN stays NaN (canonical), Inf Inf,
    and finite values past the largest TF32 round to Inf as in IEEE."""
    b = np.asarray(bits, np.uint64) & np.uint64(0xFFFFFFFF)
    nan = (b & np.uint64(0x7F800000)) == np.uint64(0x7F800000)
    nan &= (b & np.uint64(0x007FFFFF)) != 0
    # On the magnitude (sign-magnitude format): + half an ulp, then truncate.
    r = (b + np.uint64(0x1000)) & np.uint64(0xFFFFE000)
    return np.where(nan, np.uint64(0x7FFFFFFF), r).astype(np.uint32)


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


# --------------------------------------------------------------------------- TMA
# Tensor Memory Access: tiled tensor maps (CUDA driver API, cuTensorMapEncodeTiled)
# and the tile-mode bulk tensor copy that uses them (PTX ISA 8.x,
# "cp.async.bulk.tensor", "Tensor Access Modes: Tiled Mode", "Tensor-map:
# Bounding Box", "Out of Bound Access", "Shared memory swizzling modes"),
# encoded from the documents:
#
# cuTensorMapEncodeTiled(map, dataType, rank, globalAddress, globalDim[rank],
#     globalStrides[rank - 1], boxDim[rank], elementStrides[rank], interleave,
#     swizzle, l2Promotion, oobFill): all arrays innermost dimension first.
#   * rank 1..5 (3..5 with interleave); globalAddress 16-byte aligned;
#   * 0 < globalDim[i] <= 2^32; globalStrides[i] (bytes, dimension i + 1) a
#     multiple of 16 and < 2^40; dimension 0 is contiguous (stride =
#     element size, implied);
#   * 0 < boxDim[i] <= 256; with interleave NONE, boxDim[0] * elementSize a
#     multiple of 16 bytes, and with a swizzle at most the swizzle span
#     (32, 64 or 128 bytes);
#   * elementStrides[i] in 1..8 (only 1, the traversal stride of a dense
#     box, is modeled here);
#   * oobFill NONE: elements outside the tensor are filled with zeros
#     (NAN_REQUEST_ZERO_FMA: with a NaN).
# cp.async.bulk.tensor.Nd.shared::cluster.global.tile.mbarrier::complete_tx::bytes
#     [dstMem], [tensorMap, {c0, ..., c(N-1)}], [mbar]:
#   * tensorCoords (signed 32-bit, innermost first) are the coordinates of
#     the box's first element; box element (i0, ..., iN-1) is tensor element
#     (c0 + i0, ..., cN-1 + iN-1); any coordinate outside [0, globalDim) is
#     out of bounds and its element is filled per oobFill (coordinates may be
#     negative);
#   * the box lands in shared memory densely, dimension 0 fastest
#     (boxDim[0] * elementSize bytes per "row"), starting at dstMem; with a
#     swizzle mode the 16-byte chunks of the shared address are permuted:
#     128-byte swizzle, chunk bits [4:6] ^= bits [7:9] of the shared address
#     (a pattern that repeats every 1024 bytes, so the destination must be
#     1024-byte aligned; 64-byte: [4:5] ^= [7:8], 512 bytes; 32-byte:
#     [4] ^= [7], 256 bytes); without swizzle 128-byte alignment;
#   * on completion the copy performs complete-tx(box bytes, including
#     filled out-of-bound elements) on the mbarrier.
# The tensor maps attncc makes come from nvgpu.tma.create.descriptor on a
# memref (MLIR's mgpuTensorMapEncodeTiledMemref, attncc's runtime/cuda.py):
# globalDim = the memref's sizes reversed, globalStrides = its strides
# (dimensions 1..) reversed in bytes, boxDim = the op's box reversed.

TMA_SWIZZLE_SPAN = {"none": 0, "swizzle_32b": 32, "swizzle_64b": 64, "swizzle_128b": 128}
_SPAN_MODE = {0: 0, 128: 1, 64: 2, 32: 3}   # span -> wgmma descriptor mode (swizzle_address)


def encode_tensor_map(sizes, strides, elem_bytes: int, box, swizzle: str = "swizzle_128b",
                      interleave: str = "none", base_addr: int = 0) -> dict:
    """A tiled tensor map for a strided tensor (sizes / element strides /
    box outermost first, as in MLIR). Returns the cuTensorMapEncodeTiled
    arrays (innermost first, strides in bytes) and raises ValueError where
    cuTensorMapEncodeTiled rejects them."""
    rank = len(sizes)
    if not 1 <= rank <= 5 or len(strides) != rank or len(box) != rank:
        raise ValueError(f"tensor map rank {rank}: sizes, strides and box must have 1..5 dims")
    if interleave != "none":
        raise ValueError("interleaved tensor maps are not modeled")
    if swizzle not in TMA_SWIZZLE_SPAN:
        raise ValueError(f"unknown swizzle {swizzle}")
    if base_addr % 16:
        raise ValueError("globalAddress must be 16-byte aligned")
    dims = [int(s) for s in reversed(sizes)]
    estr = [int(s) for s in reversed(strides)]
    boxd = [int(b) for b in reversed(box)]
    if estr[0] != 1:
        raise ValueError("the innermost dimension must be contiguous (stride 1)")
    if any(not 0 < d <= 1 << 32 for d in dims):
        raise ValueError(f"globalDim {dims} out of range (0, 2^32]")
    gstr = [s * elem_bytes for s in estr[1:]]
    if any(s % 16 or not 0 < s < 1 << 40 for s in gstr):
        raise ValueError(f"globalStrides {gstr} must be multiples of 16 bytes below 2^40")
    if any(not 0 < b <= 256 for b in boxd):
        raise ValueError(f"boxDim {boxd} out of range (0, 256]")
    inner = boxd[0] * elem_bytes
    if inner % 16:
        raise ValueError(f"box inner dimension {inner} bytes is not a multiple of 16")
    span = TMA_SWIZZLE_SPAN[swizzle]
    if span and inner > span:
        raise ValueError(f"box inner dimension {inner} bytes exceeds the {span}-byte swizzle span")
    return dict(global_dim=dims, global_strides=gstr, elem_strides=estr, box_dim=boxd,
                elem_bytes=elem_bytes, swizzle=swizzle)


def _box_index(box_dim):
    """Box element coordinates (i0, ..., iN-1) as arrays shaped like the box
    outermost first ([bN-1, ..., b0])."""
    grids = np.meshgrid(*[np.arange(b) for b in reversed(box_dim)], indexing="ij")
    return list(reversed(grids))   # innermost first


def tma_tile_source(tmap: dict, coords):
    """For a tile-mode load at tensorCoords `coords` (innermost first):
    the element offset (in elements from the tensor's start) of every box
    element and whether it is in bounds, shaped like the box outermost
    first. Out-of-bound elements (offset 0 here) are filled, not read."""
    if len(coords) != len(tmap["box_dim"]):
        raise ValueError("one coordinate per tensor dimension")
    idx = _box_index(tmap["box_dim"])
    off = np.zeros(idx[0].shape, np.int64)
    ok = np.ones(idx[0].shape, bool)
    for d, (i, c) in enumerate(zip(idx, coords)):
        g = np.int64(c) + i
        ok &= (g >= 0) & (g < tmap["global_dim"][d])
        off += g * tmap["elem_strides"][d]
    return np.where(ok, off, 0), ok


def tma_smem_address(tmap: dict, dst_addr: int):
    """Shared byte address of every box element (shaped like the box,
    outermost first) for a load to `dst_addr`: dense, dimension 0 fastest,
    then the swizzle of the absolute address. Raises ValueError for a
    destination the swizzle mode does not allow."""
    span = TMA_SWIZZLE_SPAN[tmap["swizzle"]]
    align = 8 * span if span else 128
    if dst_addr % align:
        raise ValueError(f"shared destination 0x{dst_addr:x} is not {align}-byte aligned "
                         f"({tmap['swizzle']})")
    idx = _box_index(tmap["box_dim"])
    lin = np.zeros(idx[0].shape, np.int64)
    pitch = 1
    for i, b in zip(idx, tmap["box_dim"]):
        lin += i * pitch
        pitch *= b
    return swizzle_address(dst_addr + lin * tmap["elem_bytes"], _SPAN_MODE[span])


def tma_box_bytes(tmap: dict) -> int:
    """Bytes one tile-mode load transfers (its complete-tx count)."""
    return int(np.prod(tmap["box_dim"])) * tmap["elem_bytes"]
