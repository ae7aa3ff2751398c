//===- GpuLayout.h - lane / fragment / shared-memory layout arithmetic ----===//
//
// Every piece of index arithmetic of attn-lower-to-gpu that depends on the
// lane or thread id, written once as templates over an "Ops" policy (idx,
// addi, muli, divui, remui, xori):
//   * IRBuild (IRBuild.h) emits arith ops on index values,
//   * IntOps (below) evaluates on integers; the test pass
//     attn-test-gpu-layout prints the tables it gives, and
//     test/python/test_gpu_layout.py checks them against the fragment tables
//     of the PTX ISA (mma.m16n8k16, ldmatrix), encoded there independently.
//
// Conventions (PTX ISA, "Matrix fragments for mma.m16n8k16"):
//   groupID = lane / 4, threadID_in_group = lane % 4.
//   A (16x16, row): a_i at row groupID + 8 * ((i / 2) % 2),
//                   col 2 * threadID_in_group + (i % 2) + 8 * (i / 4).
//   B (16x8, col):  b_i at k 2 * threadID_in_group + (i % 2) + 8 * (i / 2),
//                   n groupID.
//   C (16x8):       c_i at row groupID + 8 * (i / 2), col 2 * threadID_in_group + (i % 2).
// nvgpu holds A as vector<4x2xf16> (register r = a_{2r}, a_{2r+1}), B as
// vector<2x2xf16>, C as vector<2x2xf32> (row r = c_{2r}, c_{2r+1}).
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_GPULAYOUT_H
#define ATTNCC_PASSES_GPULAYOUT_H

#include <cstdint>
#include <utility>

namespace mlir::attn::gpu_layout {

/// Evaluates the layout functions on integers (for the layout test pass).
struct IntOps {
  using V = int64_t;
  V idx(int64_t v) { return v; }
  V addi(V x, V y) { return x + y; }
  V muli(V x, int64_t k) { return x * k; }
  V divui(V x, int64_t k) { return x / k; }
  V remui(V x, int64_t k) { return x % k; }
  V xori(V x, V y) { return x ^ y; }
};

/// Lane -> (row, col) of the shared-memory row address lane supplies to an
/// `ldmatrix .x4` that loads a 16x16 tile whose four 8x8 matrices are, in
/// result-register order, (rows 0-7, cols 0-7), (rows 8-15, cols 0-7),
/// (rows 0-7, cols 8-15), (rows 8-15, cols 8-15). Lanes 8j..8j+7 address the
/// rows of matrix j.
///  * Without .trans on a row-major [M, K] tile: the A operand of
///    m16n8k16 (a0a1, a2a3, a4a5, a6a7).
///  * With .trans on a row-major [K, N] tile (V as [keys, d]): registers 0,1
///    are b0b1, b2b3 of the n-block at col 0 and registers 2,3 those of the
///    n-block at col 8.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> ldmatrixRowMajorX4(Ops &o, typename Ops::V lane) {
  auto row = o.addi(o.remui(lane, 8), o.muli(o.remui(o.divui(lane, 8), 2), 8));
  auto col = o.muli(o.divui(lane, 16), 8);
  return {row, col};
}

/// Lane -> (row, col) for an `ldmatrix .x4` (no .trans) on a row-major
/// [N, K] tile (K as [keys, d]) giving the B operands of two n-blocks:
/// registers 0,1 = b0b1, b2b3 of keys 0-7; registers 2,3 = those of keys 8-15.
/// Matrices: (rows 0-7, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 0-7),
/// (rows 8-15, cols 8-15).
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> ldmatrixNMajorX4(Ops &o, typename Ops::V lane) {
  auto row = o.addi(o.remui(lane, 8), o.muli(o.divui(lane, 16), 8));
  auto col = o.muli(o.remui(o.divui(lane, 8), 2), 8);
  return {row, col};
}

/// (lane, i) -> (row, col) of accumulator element c_i (i in [0, 4)) inside
/// the 16x8 tile of one mma.m16n8k16.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> accumulatorElement(Ops &o, typename Ops::V lane,
                                                               int64_t i) {
  auto row = o.addi(o.divui(lane, 4), o.idx(8 * (i / 2)));
  auto col = o.addi(o.muli(o.remui(lane, 4), 2), o.idx(i % 2));
  return {row, col};
}

/// The lane-independent part of accumulatorElement: element c_i of a lane
/// sits at accumulatorElement(lane, 0) + accumulatorOffset(i). Masks compare
/// one per-lane value against these constants instead of materializing a
/// column index per element (which LLVM would hoist out of the KV loop into
/// dozens of live registers).
inline std::pair<int64_t, int64_t> accumulatorOffset(int64_t i) { return {8 * (i / 2), i % 2}; }

/// Reuse of the score accumulators as the A operand of P.V (no data
/// movement): A register r (pair a_{2r}, a_{2r+1}) of k-step kk is the C
/// row (r % 2) of the score n-block 2 * kk + r / 2. Returns
/// (n-block offset from 2 * kk, C row).
inline std::pair<int64_t, int64_t> probabilityFragmentSource(int64_t r) {
  return {r / 2, r % 2};
}

/// tf32 mma.m16n8k8 (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32):
///   A (16x8, row): a_i at row groupID + 8 * (i % 2), col threadID_in_group + 4 * (i / 2).
///   B (8x8, col):  b_i at k threadID_in_group + 4 * i, n groupID.
///   C: as for m16n8k16.
/// ldmatrix moves b16 elements, so these 32-bit fragments are plain shared
/// loads, one element each.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> tf32AElement(Ops &o, typename Ops::V lane, int64_t i) {
  auto row = o.addi(o.divui(lane, 4), o.idx(8 * (i % 2)));
  auto col = o.addi(o.remui(lane, 4), o.idx(4 * (i / 2)));
  return {row, col};
}

/// (lane, i) -> (k, n) of b_i of a tf32 m16n8k8 B fragment.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> tf32BElement(Ops &o, typename Ops::V lane, int64_t i) {
  return {o.addi(o.remui(lane, 4), o.idx(4 * i)), o.divui(lane, 4)};
}

/// P.V on tf32 tensor cores without moving P: the score accumulators of an
/// 8-key n-block hold keys (2t, 2t + 1) of the lane's two rows, the A
/// fragment wants k = (t, t + 4). The sum over keys does not care about
/// their order, so A column k stands for key tf32KeyOfColumn(k) = 2 (k % 4)
/// + k / 4, and the B rows (V) are read with the same permutation. Then A
/// register i is accumulator element tf32ProbabilitySource(i) of the n-block.
template <typename Ops>
typename Ops::V tf32KeyOfColumn(Ops &o, typename Ops::V k) {
  return o.addi(o.muli(o.remui(k, 4), 2), o.divui(k, 4));
}
inline int64_t tf32ProbabilitySource(int64_t i) { return 2 * (i % 2) + i / 2; }

/// Shared-memory swizzle of a row-major tile of f16/bf16 rows with 8-element
/// (16-byte) chunks: the chunk of a row is XORed with the row's index mod 8,
/// so the 8 rows an ldmatrix phase (or a cp.async phase) touches at the same
/// logical chunk hit 8 different 16-byte bank groups. Needs >= 8 chunks per
/// row (head dims 64 and 128). Only row % 8 matters: callers may pass any row
/// congruent to it (attn-lower-to-gpu passes the lane's row inside its
/// 16-row ldmatrix tile, which tile offsets of multiples of 8 do not change).
template <typename Ops>
typename Ops::V swizzleChunk(Ops &o, typename Ops::V row, typename Ops::V chunk) {
  return o.xori(chunk, o.remui(row, 8));
}

/// The 128-byte-swizzled layout wgmma (and TMA's SWIZZLE_128B) reads on
/// sm_90a, for a logical [rows, cols] f16/bf16 tile: the tile is cut into
/// 64-column panels, each stored as [rows][64] (128-byte rows, panels one
/// after another), and inside each 1024-byte atom of 8 rows the 16-byte chunk
/// of a row is XORed with row % 8 (PTX ISA: address bits [4:6] ^= [7:9], with
/// 1024-byte-aligned atoms). Returns (physical row, physical element column)
/// of logical (row, 8 * chunk) in the tile viewed as [rows * cols / 64, 64].
/// `rows` must be a multiple of 8.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> panelSwizzle(Ops &o, typename Ops::V row,
                                                         typename Ops::V chunk, int64_t rows) {
  auto prow = o.addi(o.muli(o.divui(chunk, 8), rows), row);
  auto pcol = o.muli(o.xori(o.remui(chunk, 8), o.remui(row, 8)), 8);
  return {prow, pcol};
}

/// Thread `tid` of `threads` copies 16-byte chunk `tid + j * threads` of a
/// tile with `chunksPerRow` chunks per row: returns (row, chunk). When
/// `chunksPerRow` divides `threads` (always, for 4+ warps and head dims 64 or
/// 128), round j is round 0 shifted down by `j * threads / chunksPerRow` rows:
/// written that way, the per-round addresses differ by constants.
template <typename Ops>
std::pair<typename Ops::V, typename Ops::V> copyChunk(Ops &o, typename Ops::V tid, int64_t j,
                                                      int64_t threads, int64_t chunksPerRow) {
  if (threads % chunksPerRow == 0)
    return {o.addi(o.divui(tid, chunksPerRow), o.idx(j * (threads / chunksPerRow))),
            o.remui(tid, chunksPerRow)};
  auto linear = o.addi(tid, o.idx(j * threads));
  return {o.divui(linear, chunksPerRow), o.remui(linear, chunksPerRow)};
}

} // namespace mlir::attn::gpu_layout

#endif
