//===- AttnParallelToOmp.cpp - attn-parallel-to-omp -----------------------===//
//
// A CPU kernel's grids (top-level scf.parallel) as loops over the grid points
// taken round-robin by the thread that runs the kernel, for kernels the
// runtime calls from every thread of an OpenMP team (GOMP_parallel of the
// OpenMP runtime torch loaded): two index arguments (thread number, team
// size) are appended to the function, and a grid that follows another first
// waits for the team (GOMP_barrier).
//
// Why not upstream async-parallel-for (used before): its tasks run on the
// async runtime's own pool, whose idle workers sleep; measured on the AVX2
// host, starting a 2-task grid cost ~150 us (worker and caller wake-ups, plus
// torch's OpenMP workers spinning on the same cores), while a GOMP_parallel
// region on torch's warm team starts in ~2 us. Why not upstream
// convert-scf-to-openmp: its OpenMP dialect lowers to LLVM's libomp entry
// points (__kmpc_fork_call), which torch's libgomp does not provide; a
// second OpenMP runtime would be a second pool again.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Interfaces/LoopLikeInterface.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNPARALLELTOOMP
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

constexpr StringLiteral kBarrier = "GOMP_barrier";

/// `private func.func @GOMP_barrier()` in the module, declared once.
func::FuncOp barrierDecl(ModuleOp module) {
  if (auto f = module.lookupSymbol<func::FuncOp>(kBarrier))
    return f;
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  auto f = func::FuncOp::create(b, module.getLoc(), kBarrier,
                                FunctionType::get(module.getContext(), {}, {}));
  f.setPrivate();
  return f;
}

/// The grid `par` as `scf.for %p = tid to points step nt` over its
/// linearized points (last dimension fastest), the body's induction
/// variables rebuilt from %p.
void rewriteGrid(scf::ParallelOp par, Value tid, Value nt) {
  OpBuilder b(par);
  Location loc = par.getLoc();
  SmallVector<Value> counts;
  Value points;
  for (auto [lb, ub, step] :
       llvm::zip(par.getLowerBound(), par.getUpperBound(), par.getStep())) {
    Value span = arith::SubIOp::create(b, loc, ub, lb);
    Value n = arith::CeilDivUIOp::create(b, loc, span, step);
    // An empty range (ub <= lb) is no points, never a huge unsigned count.
    Value empty = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, ub, lb);
    n = arith::SelectOp::create(b, loc, empty, arith::ConstantIndexOp::create(b, loc, 0), n);
    counts.push_back(n);
    points = points ? arith::MulIOp::create(b, loc, points, n).getResult() : n;
  }
  auto loop = scf::ForOp::create(b, loc, tid, points, nt);
  b.setInsertionPointToStart(loop.getBody());
  SmallVector<Value> ivs(counts.size());
  Value rest = loop.getInductionVar();
  for (int64_t d = static_cast<int64_t>(counts.size()) - 1; d >= 0; --d) {
    Value idx = d == 0 ? rest : arith::RemUIOp::create(b, loc, rest, counts[d]).getResult();
    if (d > 0)
      rest = arith::DivUIOp::create(b, loc, rest, counts[d]);
    Value scaled = arith::MulIOp::create(b, loc, idx, par.getStep()[d]);
    ivs[d] = arith::AddIOp::create(b, loc, par.getLowerBound()[d], scaled);
  }
  // Move the body (without its scf.reduce) into the loop.
  Block &body = par.getRegion().front();
  for (auto [arg, iv] : llvm::zip(body.getArguments(), ivs))
    arg.replaceAllUsesWith(iv);
  body.getTerminator()->erase();
  Block &dst = *loop.getBody();
  dst.getOperations().splice(dst.getTerminator()->getIterator(), body.getOperations());
  for (NamedAttribute attr : par->getDiscardableAttrs())
    loop->setAttr(attr.getName(), attr.getValue());
  par.erase();
}

struct AttnParallelToOmpPass : mlir::attn::impl::AttnParallelToOmpBase<AttnParallelToOmpPass> {
  using AttnParallelToOmpBase::AttnParallelToOmpBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>()))
      if (failed(runOnFunction(module, func)))
        return signalPassFailure();
  }

  LogicalResult runOnFunction(ModuleOp module, func::FuncOp func) {
    if (func.isExternal())
      return success();
    SmallVector<scf::ParallelOp> grids;
    bool bad = false;
    func.walk<WalkOrder::PreOrder>([&](scf::ParallelOp par) {
      if (par.getNumResults() != 0) {
        par.emitOpError("attn-parallel-to-omp: a grid with reductions cannot be split "
                        "across threads by points");
        bad = true;
      }
      // A grid run repeatedly would need a barrier between its runs, which
      // the pass only puts between grids in program order: refuse it.
      if (par->getParentOfType<LoopLikeOpInterface>()) {
        par.emitOpError("attn-parallel-to-omp: a grid inside a loop is not supported (its "
                        "runs would not wait for each other)");
        bad = true;
      }
      grids.push_back(par);
      return WalkResult::skip(); // nested parallel loops stay loops of their grid point
    });
    if (bad)
      return failure();
    if (grids.empty())
      return success();

    Block &entry = func.getBody().front();
    IndexType index = IndexType::get(func.getContext());
    Value tid = entry.addArgument(index, func.getLoc());
    Value nt = entry.addArgument(index, func.getLoc());
    func.setFunctionType(FunctionType::get(func.getContext(), entry.getArgumentTypes(),
                                           func.getFunctionType().getResults()));
    if (auto types = func->getAttrOfType<ArrayAttr>("attn.arg_types")) {
      SmallVector<Attribute> extended(types.begin(), types.end());
      extended.append(2, TypeAttr::get(index));
      func->setAttr("attn.arg_types", ArrayAttr::get(func.getContext(), extended));
    }
    func::FuncOp barrier;
    for (auto [i, par] : llvm::enumerate(grids)) {
      if (i > 0) {
        if (!barrier)
          barrier = barrierDecl(module);
        OpBuilder b(par);
        func::CallOp::create(b, par.getLoc(), barrier, ValueRange{});
      }
      rewriteGrid(par, tid, nt);
    }
    return success();
  }
};
} // namespace
