//===- AttnLowerToCpu.cpp - attn-lower-to-cpu ---------------------------------------------===//
// Placeholder: being written.
#include "passes/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERTOCPU
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct AttnLowerToCpuPass : mlir::attn::impl::AttnLowerToCpuBase<AttnLowerToCpuPass> {
  using AttnLowerToCpuBase::AttnLowerToCpuBase;
  void runOnOperation() override {
    getOperation()->emitError("attn-lower-to-cpu is not implemented yet");
    signalPassFailure();
  }
};
} // namespace
