//===- AttnPipeline.cpp - attn-pipeline: multi-buffer + pipeline KV loop --===//
//
// Our part is the schedule; the mechanics are upstream's:
//   1. memref::multiBuffer gives every K/V tile buffer `num-stages` slots,
//      indexed by ((iv - lb) / step) % num-stages;
//   2. scf::pipelineForLoop splits the KV loop into prologue, steady state and
//      epilogue with the copies (and the index math feeding them) in stage 0
//      and everything else in stage num-stages - 1, so the copies of
//      iteration i + num-stages - 1 overlap the compute of iteration i.
// Loops whose trip count is dynamic (causal bounds) or smaller than the stage
// count are pipelined with predicated copies instead of a peeled epilogue
// when the upstream pipeliner cannot peel them.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNPIPELINE
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

/// The K/V copies of a KV loop body: copy_tile, and gather_tile (a paged
/// cache's rows through the block table), which writes its whole tile too.
SmallVector<Operation *> tileCopies(scf::ForOp loop) {
  SmallVector<Operation *> copies;
  for (Operation &op : loop.getBody()->without_terminator())
    if (isa<CopyTileOp, GatherTileOp>(op))
      copies.push_back(&op);
  return copies;
}

bool hasGathers(scf::ForOp loop) {
  return !loop.getBody()->getOps<GatherTileOp>().empty();
}

/// Gives each buffer written by a copy_tile / gather_tile in `loop` `stages`
/// slots.
LogicalResult multiBufferCopies(RewriterBase &rewriter, scf::ForOp loop, unsigned stages) {
  llvm::SetVector<memref::AllocOp> allocs;
  for (Operation *copy : tileCopies(loop))
    if (auto alloc = kvCopyDest(copy).getDefiningOp<memref::AllocOp>())
      if (!loop->isAncestor(alloc))
        allocs.insert(alloc);
  for (memref::AllocOp alloc : allocs) {
    // Deallocs sit in the enclosing grid loop, which upstream would take for
    // the loop to multi-buffer: take them out and put them back afterwards.
    SmallVector<Operation *> deallocAfter;
    for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
      if (isa<memref::DeallocOp>(user)) {
        deallocAfter.push_back(user->getPrevNode());
        rewriter.eraseOp(user);
      }
    for (Operation *user : alloc->getUsers())
      if (!loop->isAncestor(user))
        return alloc.emitError("attn-pipeline: a K/V tile buffer is used outside the KV loop");
    // The copies write every element (rows past the end are zero-filled), so
    // there is no loop-carried dependence through the buffer.
    FailureOr<memref::AllocOp> mb =
        memref::multiBuffer(rewriter, alloc, stages, /*skipOverrideAnalysis=*/true);
    if (failed(mb))
      return alloc.emitError("attn-pipeline: cannot multi-buffer this tile buffer");
    for (Operation *prev : deallocAfter) {
      OpBuilder::InsertionGuard g(rewriter);
      rewriter.setInsertionPointAfter(prev);
      memref::DeallocOp::create(rewriter, mb->getLoc(), mb->getResult());
    }
  }
  return success();
}

/// Copies and their operands computed in the loop go to stage 0, the rest to
/// the last stage, each group in program order.
void scheduleCopiesFirst(scf::ForOp loop, unsigned lastStage,
                         std::vector<std::pair<Operation *, unsigned>> &schedule) {
  llvm::SetVector<Operation *> early;
  for (Operation *copy : tileCopies(loop)) {
    BackwardSliceOptions opts;
    opts.filter = [&](Operation *op) { return op->getBlock() == loop.getBody(); };
    opts.inclusive = true;
    (void)getBackwardSlice(copy, &early, opts);
  }
  for (Operation &op : loop.getBody()->without_terminator())
    if (early.contains(&op))
      schedule.emplace_back(&op, 0);
  for (Operation &op : loop.getBody()->without_terminator())
    if (!early.contains(&op))
      schedule.emplace_back(&op, lastStage);
}

/// Predicates an op for the iterations outside the loop's range: copies and
/// tile compute (no results) go under an scf.if; index math and subviews are
/// safe to compute speculatively.
Operation *predicate(RewriterBase &rewriter, Operation *op, Value pred) {
  if (isMemoryEffectFree(op))
    return op;
  if (op->getNumResults() != 0)
    return nullptr;
  OpBuilder::InsertionGuard g(rewriter);
  rewriter.setInsertionPoint(op);
  auto ifOp = scf::IfOp::create(rewriter, op->getLoc(), pred, /*withElseRegion=*/false);
  rewriter.moveOpBefore(op, ifOp.thenBlock()->getTerminator());
  return ifOp;
}

void annotate(Operation *op, scf::PipeliningOption::PipelinerPart part, unsigned iteration) {
  StringRef name = part == scf::PipeliningOption::PipelinerPart::Prologue ? "prologue"
                   : part == scf::PipeliningOption::PipelinerPart::Kernel ? "kernel"
                                                                          : "epilogue";
  op->walk([&](Operation *nested) {
    if (!isa_and_nonnull<AttnDialect>(nested->getDialect()))
      return;
    Builder b(nested->getContext());
    nested->setAttr("attn.part", b.getStringAttr(name));
    nested->setAttr("attn.iteration", b.getI64IntegerAttr(iteration));
  });
}

struct AttnPipelinePass : mlir::attn::impl::AttnPipelineBase<AttnPipelinePass> {
  using AttnPipelineBase::AttnPipelineBase;

  void runOnOperation() override {
    if (numStages < 1 || numStages > 8) {
      getOperation().emitError("attn-pipeline: num-stages must be in [1, 8], got ") << static_cast<int64_t>(numStages);
      return signalPassFailure();
    }
    if (numStages == 1)
      return;
    SmallVector<scf::ForOp> loops = collectKvLoops(getOperation());
    IRRewriter rewriter(&getContext());
    for (scf::ForOp loop : loops) {
      if (tileCopies(loop).empty() || (hasGathers(loop) && !gathers))
        continue;
      if (failed(multiBufferCopies(rewriter, loop, numStages)))
        return signalPassFailure();
      if (failed(pipeline(rewriter, loop)))
        return signalPassFailure();
    }
  }

  LogicalResult pipeline(IRRewriter &rewriter, scf::ForOp loop) {
    unsigned lastStage = numStages - 1;
    scf::PipeliningOption options;
    options.getScheduleFn = [&](scf::ForOp f,
                                std::vector<std::pair<Operation *, unsigned>> &s) {
      scheduleCopiesFirst(f, lastStage, s);
    };
    options.annotateFn = annotate;
    options.supportDynamicLoops = true;
    options.predicateFn = predicate;
    Attribute kvTag = loop->getAttr(kKvLoopAttr);
    // Peel the epilogue where upstream can (static trip count >= stages);
    // otherwise predicate the early stages inside the steady state.
    for (bool peel : {true, false}) {
      options.peelEpilogue = peel;
      bool modified = false;
      rewriter.setInsertionPoint(loop);
      FailureOr<scf::ForOp> newLoop = scf::pipelineForLoop(rewriter, loop, options, &modified);
      if (succeeded(newLoop)) {
        (*newLoop)->setAttr(kKvLoopAttr, kvTag);
        (*newLoop)->setAttr("attn.num_stages", rewriter.getI64IntegerAttr(numStages));
        return success();
      }
      if (modified)
        return loop.emitError("attn-pipeline: the upstream pipeliner failed midway");
    }
    return loop.emitError("attn-pipeline: the KV loop cannot be pipelined");
  }
};
} // namespace
