//===- AttnTileSplit.h - attn-tile's lse and split-KV forms ----*- C++ -*-===//
//
// The pieces attn-tile adds for its `lse` and `split-kv` options (flash
// decoding): the extra kernel arguments, the KV sub-range of one split and
// the combine grid. Kept apart from AttnTile.cpp so that the main tiling
// reads as before.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_ATTNTILESPLIT_H
#define ATTNCC_PASSES_ATTNTILESPLIT_H

#include "passes/Passes.h"

namespace mlir::attn::tile_split {

/// The trailing arguments of the lse / split-kv forms (null when absent).
struct FormArgs {
  Value lse;     // [B, H, L] f32: each row's log-sum-exp
  Value part;    // [P * B, H, L, Dv] f32: the splits' normalized partial outputs
  Value partLse; // [P * B, H, L] f32: the splits' log-sum-exps
};

/// Appends the form's arguments after `out` (whose type gives B, H, L, Dv).
FormArgs addFormArguments(Block &body, MemRefType outType, bool lse, bool splitKv,
                          Location loc);

/// The split count P = dim(part, 0) / max(B, 1), read at run time.
Value splitCount(OpBuilder &b, Location loc, Value part, Value batch);

/// Split `split` of P's share of the KV range [lo, hi): ceil(blocks / P)
/// blocks of `blockN` keys from lo (lo stays block-aligned), clamped to hi;
/// splits past the end get an empty range (lo_s == hi_s).
std::pair<Value, Value> splitRange(OpBuilder &b, Location loc, Value lo, Value hi, Value split,
                                   Value numSplits, int64_t blockN);

/// After the main grid: a grid (B, H, query blocks of blockM rows), tagged
/// `attn.combine`, of one attn.tile_combine per row block.
void emitCombine(OpBuilder &b, Location loc, const FormArgs &args, Value out, Value sinks,
                 Value batch, Value heads, Value lq, Value numSplits, int64_t blockM);

} // namespace mlir::attn::tile_split

#endif
