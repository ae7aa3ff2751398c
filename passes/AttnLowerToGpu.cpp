//===- AttnLowerToGpu.cpp - attn-lower-to-gpu: the pass and its driver ----===//
//
// Maps the pipelined tile program (attn-tile, attn-pipeline, attn-unroll) onto
// one gpu.launch per function. Our part is the mapping; the mechanics below
// it are upstream's: nvgpu.ldmatrix / nvgpu.mma.sync / nvgpu.device_async_copy
// (and nvvm.mma.sync for bf16), gpu.shuffle, gpu.barrier, then
// gpu-kernel-outlining and gpu-lower-to-nvvm-pipeline.
//
//   grid point (batch, head, query block)  -> thread block (block ids)
//   warp w                                 -> query rows [16w, 16w + 16)
//   Q tile                                 -> shared memory, then A fragments in registers
//   K/V tile buffers (num_stages slots)    -> dynamic shared memory, swizzled
//   score tile, accumulator, row max/sum   -> per-thread fragments (private
//                                             buffers at constant indices:
//                                             LLVM promotes them to registers)
//   attn.copy_tile                         -> cp.async (16 B, zero-filled tails)
//   attn.gather_tile (paged KV)            -> cp.async per row, its page from
//                                             the block table
//   attn.tile_matmul                       -> ldmatrix + mma.sync m16n8k16
//   attn.tile_softcap / tile_alibi /
//     tile_mask / tile_bias                -> per-element fragment math
//   attn.tile_softmax / tile_store         -> fragment math + shuffle-xor quad reductions
//
// This file holds the pass and Lowering::run, which runs the phases in
// order; each phase has its own file (state shared in GpuLowering.h):
//   GpuPlan.cpp          analysis and validation of the tile program (Plan)
//   GpuLaunch.cpp        gpu.launch, kernel prelude, shared-memory tiles, outlining
//   GpuAsyncCopies.cpp   cp.async copies, groups, waits and barriers
//   GpuTma.cpp           sm_90a: TMA boxes on mbarriers instead of cp.async
//   GpuMmaFragments.cpp  ldmatrix / mma.sync fragments: Q.K^T and P.V
//   GpuTf32.cpp          f32 inputs: mma.sync m16n8k8 .tf32 (and 3xTF32)
//   GpuWgmma.cpp         sm_90a: Q.K^T and P.V as warpgroup MMAs
//   GpuSplitKv.cpp       split-KV: the folded split grid, the combine kernel
//   GpuSoftmax.cpp       register-fragment math: mask, bias, softmax, store, fill
//   GpuScores.cpp        register-fragment score variants: soft-capping, ALiBi
// and the tile-op dispatch below (lowerTileOps). Layout arithmetic:
// passes/GpuLayout.h (tested against the PTX ISA tables); op building:
// passes/IRBuild.h.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::gpu_lowering {

/// attn-tile puts element masks under an scf.if (only blocks on the diagonal
/// or the end of the keys need them). On the GPU a branch in the KV loop
/// splits the loop body: the score fragments flow through phis and ptxas
/// cannot schedule across it (the 3-stage, 128 x 64, head-dim-128 causal
/// kernel went from 184 to 255 registers and spilled). So an scf.if holding
/// just a tile_mask becomes a predicated mask: the condition (uniform across
/// the block) is folded into the selects, and the branch disappears.
static scf::IfOp maskOnlyIf(TileMaskOp op) {
  auto ifOp = dyn_cast<scf::IfOp>(op->getParentOp());
  if (!ifOp || ifOp.getNumResults() != 0 || !ifOp.getElseRegion().empty())
    return {};
  Block *then = ifOp.thenBlock();
  if (&then->front() != op.getOperation() || op->getNextNode() != then->getTerminator())
    return {};
  return ifOp;
}

LogicalResult Lowering::lowerTileOps() {
  SmallVector<Operation *> ops;
  launch.getBody().walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (isTileOp(op) || isa<linalg::FillOp, memref::DeallocOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    b.setInsertionPoint(op);
    loc = op->getLoc();
    if (auto mm = dyn_cast<TileMatmulOp>(op)) {
      if (mm.getAccumulate())
        p.tf32 ? lowerPVTf32(mm) : p.wgmma ? lowerPVWgmma(mm) : lowerPV(mm);
      else
        p.tf32 ? lowerQKTf32(mm) : p.wgmma ? lowerQKWgmma(mm) : lowerQK(mm);
    } else if (auto mk = dyn_cast<TileMaskOp>(op)) {
      if (scf::IfOp ifOp = maskOnlyIf(mk)) {
        b.setInsertionPoint(ifOp);
        lowerMask(mk, ifOp.getCondition());
        ifOp->erase(); // erases mk too
        continue;
      }
      lowerMask(mk);
    } else if (auto bi = dyn_cast<TileBiasOp>(op)) {
      lowerBias(bi);
    } else if (auto sc = dyn_cast<TileSoftcapOp>(op)) {
      lowerSoftcap(sc);
    } else if (auto al = dyn_cast<TileAlibiOp>(op)) {
      lowerAlibi(al);
    } else if (auto sm = dyn_cast<TileSoftmaxOp>(op)) {
      lowerSoftmax(sm);
    } else if (auto st = dyn_cast<TileStoreOp>(op)) {
      lowerStore(st);
    } else if (auto ls = dyn_cast<TileLseOp>(op)) {
      lowerLse(ls);
    } else if (auto fill = dyn_cast<linalg::FillOp>(op)) {
      if (failed(lowerFill(fill)))
        return failure();
    } else if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
      Value r = rootOf(dealloc.getMemref());
      if (!llvm::is_contained(SmallVector<Value>{p.q, p.s, p.acc, p.mx, p.sum}, r))
        return dealloc.emitError("attn-lower-to-gpu: dealloc of an unknown buffer in the kernel");
    }
    op->erase();
  }
  for (Value r : {p.q, p.s, p.acc, p.mx, p.sum}) {
    Operation *alloc = r.getDefiningOp();
    if (!alloc->use_empty())
      return alloc->emitError("attn-lower-to-gpu: a tile buffer has uses the GPU lowering does "
                              "not know: ")
             << *(*alloc->getUsers().begin());
    alloc->erase();
  }
  bool bad = false;
  launch.getBody().walk([&](Operation *op) {
    op->removeAttr("attn.prelude");
    if (isa_and_nonnull<AttnDialect>(op->getDialect()) || isa<memref::AllocOp>(op)) {
      op->emitError("attn-lower-to-gpu: cannot lower this op inside the kernel");
      bad = true;
    }
  });
  return failure(bad);
}

LogicalResult Lowering::run() {
  // The runtime reads which argument is which (output shape, checks).
  SmallVector<NamedAttribute> roles;
  for (auto [name, v] : {std::pair<StringRef, int64_t>{"q", p.qArg}, {"k", p.kArg}, {"v", p.vArg},
                         {"bias", p.biasArg}, {"out", p.outArg},
                          {"lse", p.lseArg}})
    if (v >= 0)
      roles.push_back(b.getNamedAttr(name, b.getI64IntegerAttr(v)));
  p.func->setAttr("attn.gpu_args", b.getDictionaryAttr(roles));
  if (failed(buildLaunch()))
    return failure();
  buildPrelude();
  if (failed(internalizeValues()))
    return failure();
  if (failed(retypeSharedTiles(p.k, kSmem)) || failed(retypeSharedTiles(p.v, vSmem)))
    return failure();
  if (failed(p.tma ? placeTmaLoads() : placeAsyncGroups()))
    return failure();
  if (failed(lowerTileOps()))
    return failure();
  return outline();
}

} // namespace mlir::attn::gpu_lowering

namespace {
using namespace mlir::attn::gpu_lowering;

struct AttnLowerToGpuPass : mlir::attn::impl::AttnLowerToGpuBase<AttnLowerToGpuPass> {
  using AttnLowerToGpuBase::AttnLowerToGpuBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (chip != "sm_80" && chip != "sm_90a") {
      module.emitError("attn-lower-to-gpu: unknown chip '") << chip
                                                             << "' (expected sm_80 or sm_90a)";
      return signalPassFailure();
    }
    if (inputPrecision != "tf32" && inputPrecision != "tf32x3") {
      module.emitError("attn-lower-to-gpu: unknown input-precision '")
          << inputPrecision << "' (expected tf32 or tf32x3)";
      return signalPassFailure();
    }
    if (mma != "auto" && mma != "mma-sync" && mma != "wgmma") {
      module.emitError("attn-lower-to-gpu: unknown mma '") << mma
                                                           << "' (expected auto, mma-sync or wgmma)";
      return signalPassFailure();
    }
    bool any = false;
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (func.isExternal())
        continue;
      // attn-tile's bf16-pairs form is the CPU's AMX layout; the GPU's
      // tensor cores take bf16 tiles as they are (mma.sync fragments).
      Operation *pairs = nullptr;
      func.walk([&](Operation *op) {
        auto copy = dyn_cast<CopyTileOp>(op);
        auto gather = dyn_cast<GatherTileOp>(op);
        auto mm = dyn_cast<TileMatmulOp>(op);
        if (!pairs && (isa<TileConvertOp>(op) || (copy && copy.getPairs()) ||
                       (gather && gather.getPairs()) ||
                       (mm && mm.getPairs())))
          pairs = op;
      });
      if (pairs) {
        pairs->emitError("attn-lower-to-gpu: the CPU's bf16 pairs form (attn-tile bf16-pairs) "
                         "is not supported by attn-lower-to-gpu");
        return signalPassFailure();
      }
      // Split-KV (GpuSplitKv.cpp): the combine becomes its own launch before
      // the analysis, which then sees the attention grid alone.
      gpu::LaunchOp combine;
      TileCombineOp combineOp;
      func.walk([&](TileCombineOp op) { combineOp = op; });
      if (combineOp) {
        FailureOr<gpu::LaunchOp> built = buildCombineLaunch(combineOp);
        if (failed(built) || failed(foldSplitGrid(func)))
          return signalPassFailure();
        combine = *built;
      }
      bool failedAnalysis = false;
      std::optional<Plan> plan = analyze(func, numWarps, chip, mma, tma, failedAnalysis);
      if (failedAnalysis)
        return signalPassFailure();
      if (!plan)
        continue;
      plan->tf32x3 = plan->tf32 && inputPrecision == "tf32x3";
      OpBuilder builder(&getContext());
      Lowering lowering(*plan, numWarps, builder);
      if (failed(lowering.run()))
        return signalPassFailure();
      if (combine && failed(outlineCombine(combine, func)))
        return signalPassFailure();
      any = true;
    }
    if (any)
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), UnitAttr::get(&getContext()));
  }
};
} // namespace
