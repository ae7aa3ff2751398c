//===- MaskSides.h - a structured tile mask as window sides ------*- C++ -*-===//
//
// Both lowerings (CpuSoftmax.cpp, GpuSoftmax.cpp) test a key against the
// (aligned) diagonal with two sides; this is the one place that reads them
// off an attn.tile_mask.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_MASKSIDES_H
#define ATTNCC_PASSES_MASKSIDES_H

#include "passes/Passes.h"

#include <utility>

namespace mlir::attn {

/// (left, right) around the diagonal, -1 = unbounded: causal is (-1, 0), a
/// window W is (W - 1, 0), window sides are themselves, no mask is (-1, -1).
inline std::pair<int64_t, int64_t> maskSides(TileMaskOp op) {
  MaskKind kind = op.getKind();
  if (kind == MaskKind::causal)
    return {-1, 0};
  if (kind == MaskKind::sliding_window && op.getWindow())
    return {*op.getWindow() - 1, 0};
  if (kind == MaskKind::sliding_window && op.getWindowSides())
    return {(*op.getWindowSides())[0], (*op.getWindowSides())[1]};
  return {-1, -1};
}

} // namespace mlir::attn

#endif
