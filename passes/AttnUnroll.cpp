//===- AttnUnroll.cpp - attn-unroll ---------------------------------------------===//
// Placeholder: being written.
#include "passes/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNUNROLL
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct AttnUnrollPass : mlir::attn::impl::AttnUnrollBase<AttnUnrollPass> {
  using AttnUnrollBase::AttnUnrollBase;
  void runOnOperation() override {
    getOperation()->emitError("attn-unroll is not implemented yet");
    signalPassFailure();
  }
};
} // namespace
