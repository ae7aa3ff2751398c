//===- AttnTileRagged.h - attn-tile for attn.ragged_attention --*- C++ -*-===//
#ifndef ATTNCC_PASSES_ATTNTILERAGGED_H
#define ATTNCC_PASSES_ATTNTILERAGGED_H

#include "passes/Passes.h"

namespace mlir::attn {
/// The function's one attn.ragged_attention, or null when it has none.
RaggedAttentionOp findRaggedAttention(func::FuncOp func);
/// attn-tile's options as tileRaggedFunction takes them.
struct RaggedTileOptions {
  int64_t blockM = 64, blockN = 64;
  /// Q.K^T as dot products over K rows (transposed tile_matmul), on views of
  /// packed K/V or pages, or on K rows gathered untransposed from a paged cache.
  bool kvInPlace = false;
  /// A trailing `lse` argument (q's [Bq, H, Lq] without head_dim, any
  /// strides) gets each query row's log-sum-exp.
  bool withLse = false;
  /// attn-tile's bf16-pairs form where it applies (K/V copies and gathers `pairs`).
  bool bf16Pairs = false;
  bool skipMaskedRows = false;
  /// With kvInPlace and bf16 views of K/V, both matmuls `pairs` on the rows
  /// as stored (attn-tile kv-in-place-pairs).
  bool kvInPlacePairs = false;
  /// With kvInPlace: one grid point per work item, its heads in a loop inside
  /// the KV loop (attn-tile heads-inner; K/V whose heads interleave by row).
  bool headsInner = false;
};
/// Tiles a function "args -> attn.ragged_attention -> return" (AttnTileRagged.cpp).
LogicalResult tileRaggedFunction(func::FuncOp func, RaggedAttentionOp att,
                                 const RaggedTileOptions &options);
/// Whether attn-tile's kv-in-place-pairs form applies to q/k/v: bf16, the
/// head dims multiples of 32 (Q K^T's vdpbf16ps steps) and 16 (P V's columns).
bool useInPlacePairs(Value q, Value k, Value v);
/// Whether attn-tile's bf16-pairs form applies to q/k/v (the attention's
/// operands): bf16, not kv-in-place, and shapes that fill whole AMX tiles
/// (16 rows; 32 bf16 of contraction per tile row; 16 f32 columns of c).
bool usePairs(Value q, Value k, Value v, int64_t blockM, int64_t blockN, bool kvInPlace);
/// The memref type of a tensor function argument at the kernel boundary:
/// dense (identity layout), or strided: any strides but a unit innermost one,
/// offset 0 (views: packed [T, H, D] tensors, NHD caches, MLA's V = K[..., :Dv];
/// AttnTile.cpp).
MemRefType denseMemRef(Type tensorType);
MemRefType stridedMemRef(Type tensorType);
/// The rows [n0, n0 + rows) of head `h` of batch `b` of a [B, H, L, D] memref
/// as a 2-D [?, D] view (the kv-in-place form; AttnTile.cpp).
Value kvRowsView(OpBuilder &b, Location loc, Value src, Value bIdx, Value h, Value n0,
                 Value rows);

/// skip-masked-rows: the row tiles one KV block's score, softmax and P.V
/// ops work on. `firstRow` is the block's first query row's position on the
/// diagonal (m0 after alignment, or a ragged item's `pos`) and `right` the
/// mask's right side: row r sees no key of a block starting at key n0 when
/// firstRow + r + right < n0, so the ops run on views from r0 = that bound,
/// rounded down to a multiple of kSkipRowGranule (whole CPU softmax row
/// groups) and at most BM - kSkipRowGranule. `row` is the first kept row's
/// index as tile_mask takes it (rowBase + r0). Null tiles stay null.
constexpr int64_t kSkipRowGranule = 16;
struct RowTiles {
  Value q, s, acc, mx, sm, p;
  Value row;
};
RowTiles skipMaskedRowTiles(OpBuilder &b, Location loc, const RowTiles &whole, Value n0,
                            Value firstRow, int64_t right, Value rowBase);
/// Whether a tile program skips masked rows: the option is on, the mask has a
/// right side, no per-row score term (ALiBi, a bias operand) takes the
/// block's first row, not the AMX / bf16-pairs tiles (their matmuls need
/// static shapes), not kv-in-place (decode-sized blocks), and blocks of more
/// than one granule. One rule for attn.attention and attn.ragged_attention.
bool canSkipMaskedRows(bool enabled, int64_t right, bool perRowTerm, bool pairs,
                       bool kvInPlace, int64_t BM);
} // namespace mlir::attn

#endif
