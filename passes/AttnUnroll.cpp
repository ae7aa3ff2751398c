//===- AttnUnroll.cpp - attn-unroll: unroll tagged attn loops -------------===//
//
// Unrolls the loops attncc tags (`attn.kv_loop`) with upstream
// loopUnrollByFactor, which also emits the remainder loop for trip counts
// that are not a multiple of the factor (dynamic ones included). Upper bounds
// are clamped to the lower bound first (see below).
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/SCF/Utils/Utils.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNUNROLL
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {
struct AttnUnrollPass : mlir::attn::impl::AttnUnrollBase<AttnUnrollPass> {
  using AttnUnrollBase::AttnUnrollBase;

  void runOnOperation() override {
    if (factor < 1 || factor > 16) {
      getOperation().emitError("attn-unroll: factor must be in [1, 16], got ") << static_cast<int64_t>(factor);
      return signalPassFailure();
    }
    if (loop != "kv") {
      getOperation().emitError("attn-unroll: unknown loop '") << loop << "' (expected 'kv')";
      return signalPassFailure();
    }
    if (factor == 1)
      return;
    SmallVector<scf::ForOp> loops = collectKvLoops(getOperation());
    for (scf::ForOp f : loops) {
      // loopUnrollByFactor assumes a non-negative trip count, but attn-pipeline
      // produces steady-state loops whose upper bound (ub - stages * step) can
      // fall below the lower bound for short KV ranges: clamp it, which keeps
      // a zero-trip loop zero-trip.
      OpBuilder b(f);
      Value ub = b.createOrFold<arith::MaxSIOp>(f.getLoc(), f.getLowerBound(),
                                                f.getUpperBound());
      f.getUpperBoundMutable().assign(ub);
      auto annotate = [](unsigned copy, Operation *op, OpBuilder b) {
        if (isa_and_nonnull<AttnDialect>(op->getDialect()))
          op->setAttr("attn.unrolled_copy", b.getI64IntegerAttr(copy));
      };
      if (failed(loopUnrollByFactor(f, factor, annotate))) {
        f.emitError("attn-unroll: cannot unroll this loop by ") << static_cast<int64_t>(factor);
        return signalPassFailure();
      }
    }
  }
};
} // namespace
