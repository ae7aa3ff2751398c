//===- AttnPipeline.cpp - attn-pipeline ---------------------------------------------===//
// Placeholder: being written.
#include "passes/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNPIPELINE
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;

namespace {
struct AttnPipelinePass : mlir::attn::impl::AttnPipelineBase<AttnPipelinePass> {
  using AttnPipelineBase::AttnPipelineBase;
  void runOnOperation() override {
    getOperation()->emitError("attn-pipeline is not implemented yet");
    signalPassFailure();
  }
};
} // namespace
