//===- AttnTileRagged.h - attn-tile for attn.ragged_attention --*- C++ -*-===//
#ifndef ATTNCC_PASSES_ATTNTILERAGGED_H
#define ATTNCC_PASSES_ATTNTILERAGGED_H

#include "passes/Passes.h"

namespace mlir::attn {
/// The function's one attn.ragged_attention, or null when it has none.
RaggedAttentionOp findRaggedAttention(func::FuncOp func);
/// Tiles a function "args -> attn.ragged_attention -> return" (AttnTileRagged.cpp).
LogicalResult tileRaggedFunction(func::FuncOp func, RaggedAttentionOp att, int64_t blockM,
                                 int64_t blockN);
} // namespace mlir::attn

#endif
