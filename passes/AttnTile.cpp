//===- AttnTile.cpp - attn-tile ---------------------------------------------===//
// Placeholder: being written.
#include "passes/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTILE
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct AttnTilePass : mlir::attn::impl::AttnTileBase<AttnTilePass> {
  using AttnTileBase::AttnTileBase;
  void runOnOperation() override {
    getOperation()->emitError("attn-tile is not implemented yet");
    signalPassFailure();
  }
};
} // namespace
