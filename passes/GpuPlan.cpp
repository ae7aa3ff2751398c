//===- GpuPlan.cpp - attn-lower-to-gpu: analysis and validation -----------===//
//
// The first phase of attn-lower-to-gpu: finds the tile program of one
// function (the grid, the roles of the tile buffers, the kernel arguments),
// checks every restriction of the GPU kernel (element types, head dims,
// block shapes, shared-memory budget, wgmma/TMA applicability) and records
// the result as a Plan, before anything is rewritten, so that a rejected
// function gets one diagnostic and is left untouched. Also the small queries
// on the pipelined structure that the copy phases share (rootOf, anchorOf,
// endOfCopyGroup).
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::gpu_lowering {

Value rootOf(Value v) {
  while (true) {
    if (auto sv = v.getDefiningOp<memref::SubViewOp>()) {
      v = sv.getSource();
      continue;
    }
    if (auto c = v.getDefiningOp<memref::CastOp>()) {
      v = c.getSource();
      continue;
    }
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (auto f = dyn_cast_or_null<scf::ForOp>(arg.getOwner()->getParentOp()))
        if (OpOperand *init = f.getTiedLoopInit(arg)) {
          v = init->get();
          continue;
        }
      return v;
    }
    if (auto f = v.getDefiningOp<scf::ForOp>()) {
      v = f.getInitArgs()[cast<OpResult>(v).getResultNumber()];
      continue;
    }
    return v;
  }
}

bool isTileOp(Operation *op) {
  return isa<CopyTileOp, GatherTileOp, TileMatmulOp, TileMaskOp, TileBiasOp, TileSoftcapOp, TileAlibiOp,
             TileSoftmaxOp, TileStoreOp, TileLseOp>(op);
}

static int64_t smemLimit(StringRef chip) {
  // Largest dynamic shared memory one block may opt into.
  return chip == "sm_90a" ? 227 * 1024 : 163 * 1024;
}

std::optional<Plan> analyze(func::FuncOp func, int64_t numWarps, StringRef chip, StringRef mma,
                            bool useTma, bool &failed) {
  auto fail = [&](Operation *op, const Twine &msg) -> std::optional<Plan> {
    op->emitError("attn-lower-to-gpu: ") << msg;
    failed = true;
    return std::nullopt;
  };
  SmallVector<Operation *> tileOps;
  func.walk([&](Operation *op) {
    if (isTileOp(op))
      tileOps.push_back(op);
  });
  Operation *graphLevel = nullptr;
  func.walk([&](Operation *op) {
    if (!graphLevel && isa_and_nonnull<AttnDialect>(op->getDialect()) && !isTileOp(op))
      graphLevel = op;
  });
  if (graphLevel)
    return fail(graphLevel, "function '" + func.getSymName() +
                                "' still has graph-level attn ops (run attn-fuse and attn-tile first)");
  if (tileOps.empty())
    return std::nullopt;

  // Function-level problems are reported on the first tile op, so that the
  // diagnostic's "see current operation" note is one op, not the function.
  Operation *where = tileOps.front();
  Plan p;
  p.func = func;
  for (Operation *op : tileOps) {
    auto par = op->getParentOfType<scf::ParallelOp>();
    if (par && par->getParentOfType<scf::ParallelOp>())
      return fail(par, "nested scf.parallel grids are not supported");
    if (par && par->getParentOp() != func)
      return fail(par, "the grid scf.parallel must be at the top level of the function");
    if (p.grid && par != p.grid)
      return fail(op, "all tile ops must belong to one grid");
    if (!p.grid && par)
      p.grid = par;
  }
  if (p.grid) {
    for (Operation *op : tileOps)
      if (!p.grid->isAncestor(op))
        return fail(op, "all tile ops must belong to one grid");
    if (p.grid.getNumLoops() > 3)
      return fail(p.grid, "a grid has at most 3 dimensions on the GPU");
    for (auto [lb, st] : llvm::zip(p.grid.getLowerBound(), p.grid.getStep())) {
      auto l = getConstantIntValue(lb), s = getConstantIntValue(st);
      if (!l || *l != 0 || !s || *s != 1)
        return fail(p.grid, "the grid must start at 0 with step 1");
    }
  }

  // Roles, from the online-softmax and matmul operands.
  func.walk([&](TileSoftmaxOp sm) {
    if (!p.s) {
      p.s = rootOf(sm.getScores());
      p.mx = rootOf(sm.getMax());
      p.sum = rootOf(sm.getSum());
      p.acc = rootOf(sm.getAcc());
    }
  });
  if (!p.s)
    return fail(where, "no attn.tile_softmax: not an attention tile program");
  for (Operation *op : tileOps) {
    if (auto sm = dyn_cast<TileSoftmaxOp>(op)) {
      if (rootOf(sm.getScores()) != p.s || rootOf(sm.getMax()) != p.mx ||
          rootOf(sm.getSum()) != p.sum || rootOf(sm.getAcc()) != p.acc)
        return fail(op, "all tile_softmax ops must update the same buffers");
    } else if (auto mm = dyn_cast<TileMatmulOp>(op)) {
      if (mm.getTransposed())
        return fail(op, "a transposed tile_matmul (attn-tile's kv-in-place form) is a CPU "
                        "form; tile without kv-in-place for the GPU");
      Value a = rootOf(mm.getA()), b = rootOf(mm.getB()), c = rootOf(mm.getC());
      if (!mm.getAccumulate()) {
        if (c != p.s)
          return fail(op, "Q.K^T must write the score tile of tile_softmax");
        if ((p.q && a != p.q) || (p.k && b != p.k))
          return fail(op, "all Q.K^T matmuls must read the same Q and K buffers");
        p.q = a;
        p.k = b;
      } else {
        if (a != p.s || c != p.acc)
          return fail(op, "P.V must read the score tile and accumulate into the "
                          "accumulator of tile_softmax");
        if (p.v && b != p.v)
          return fail(op, "all P.V matmuls must read the same V buffer");
        p.v = b;
      }
    }
  }
  if (!p.q || !p.v)
    return fail(where, "the tile program needs a Q.K^T and a P.V tile_matmul");
  for (Value r : {p.q, p.s, p.acc, p.mx, p.sum, p.k, p.v})
    if (!r.getDefiningOp<memref::AllocOp>())
      return fail(where, "tile buffers must be memref.alloc results inside the kernel");

  // Element types and shapes.
  Value qSrc, kSrc, vSrc;
  for (Operation *op : tileOps) {
    if (auto cp = dyn_cast<CopyTileOp>(op)) {
      Value r = rootOf(cp.getDest());
      if (r != p.q && r != p.k && r != p.v)
        return fail(op, "copy_tile into a buffer that is neither Q, K nor V");
      Value &slot = r == p.q ? qSrc : r == p.k ? kSrc : vSrc;
      if (r == p.q && cp.getTransposed())
        return fail(op, "a transposed Q copy is not supported");
      if (slot && slot != cp.getSource())
        return fail(op, "all copies into one tile buffer must read the same tensor");
      slot = cp.getSource();
      if (!isa<BlockArgument>(cp.getSource()))
        return fail(op, "copy_tile sources must be kernel arguments");
    } else if (auto g = dyn_cast<GatherTileOp>(op)) {
      // A paged cache's rows, through the block table (cp.async per row).
      Value r = rootOf(g.getDest());
      if (r != p.k && r != p.v)
        return fail(op, "gather_tile into a buffer that is neither K nor V");
      Value &slot = r == p.k ? kSrc : vSrc;
      if (slot && slot != g.getSource())
        return fail(op, "all copies into one tile buffer must read the same tensor");
      slot = g.getSource();
      if (!isa<BlockArgument>(g.getSource()) || !isa<BlockArgument>(g.getBlockTable()))
        return fail(op, "gather_tile's cache and block table must be kernel arguments");
    } else if (auto st = dyn_cast<TileStoreOp>(op)) {
      if (rootOf(st.getAcc()) != p.acc || rootOf(st.getSum()) != p.sum)
        return fail(op, "tile_store must store the accumulator and sum of tile_softmax");
      Type ot = st.getDest().getType().getElementType();
      if (!ot.isF16() && !ot.isBF16() && !ot.isF32())
        return fail(op, "the output must be f16, bf16 or f32");
    } else if (auto ls = dyn_cast<TileLseOp>(op)) {
      if (rootOf(ls.getMax()) != p.mx || rootOf(ls.getSum()) != p.sum)
        return fail(op, "tile_lse must read the running max and sum of tile_softmax");
      if (!isa<BlockArgument>(ls.getDest()))
        return fail(op, "tile_lse must write a function argument");
    } else if (auto mk = dyn_cast<TileMaskOp>(op)) {
      if (rootOf(mk.getScores()) != p.s)
        return fail(op, "tile_mask must mask the score tile");
    } else if (auto bi = dyn_cast<TileBiasOp>(op)) {
      if (rootOf(bi.getScores()) != p.s)
        return fail(op, "tile_bias must add to the score tile");
    } else if (checkScoreVariant(op, p.s).failed()) { // GpuScores.cpp
      failed = true;
      return std::nullopt;
    }
  }
  if (!qSrc || !kSrc || !vSrc)
    return fail(where, "Q, K and V tiles must each be filled by copy_tile");
  auto argNo = [](Value v) -> int64_t {
    auto a = dyn_cast<BlockArgument>(v);
    return a ? a.getArgNumber() : -1;
  };
  p.qArg = argNo(qSrc);
  p.kArg = argNo(kSrc);
  p.vArg = argNo(vSrc);
  // The first store and lse are the output's (the split-KV form's others,
  // under the "more than one split" branch, write the workspaces).
  for (Operation *op : tileOps) {
    if (auto st = dyn_cast<TileStoreOp>(op); st && p.outArg < 0)
      p.outArg = argNo(st.getDest());
    if (auto bi = dyn_cast<TileBiasOp>(op))
      p.biasArg = argNo(bi.getBias());
    if (auto ls = dyn_cast<TileLseOp>(op); ls && p.lseArg < 0)
      p.lseArg = argNo(ls.getDest());
  }
  if (p.outArg < 0)
    return fail(where, "the tile program must store its output into a function argument");
  auto srcType = [](Value v) { return cast<MemRefType>(v.getType()); };
  p.elt = srcType(qSrc).getElementType();
  if (!p.elt.isF16() && !p.elt.isBF16() && !p.elt.isF32()) {
    where->emitError("attn-lower-to-gpu: element type ")
        << p.elt << " is not supported on the GPU: tensor cores take f16, bf16 or f32 (as TF32) "
        << "inputs";
    failed = true;
    return std::nullopt;
  }
  // f32: TF32 tensor cores (GpuTf32.cpp); the precision comes from the pass.
  p.tf32 = p.elt.isF32();
  p.eltBytes = p.tf32 ? 4 : 2;
  Type kvElt = srcType(kSrc).getElementType();
  if (kvElt.getIntOrFloatBitWidth() == 8) {
    // Quantized KV caches run on the CPU only (docs/quantized-kv.md): the
    // fragments below are ldmatrix/TMA tiles of Q's 16- or 32-bit type.
    where->emitError("attn-lower-to-gpu: 8-bit K/V (")
        << kvElt << ") are not supported on the GPU; fp8 KV caches run on the CPU";
    failed = true;
    return std::nullopt;
  }
  if (kvElt != p.elt || srcType(vSrc).getElementType() != p.elt)
    return fail(where, "Q, K and V must have the same element type");

  auto qType = cast<MemRefType>(p.q.getType());
  auto sType = cast<MemRefType>(p.s.getType());
  auto accType = cast<MemRefType>(p.acc.getType());
  auto kType = cast<MemRefType>(p.k.getType());
  auto vType = cast<MemRefType>(p.v.getType());
  if (!qType.hasStaticShape() || !sType.hasStaticShape() || !accType.hasStaticShape() ||
      !kType.hasStaticShape() || !vType.hasStaticShape())
    return fail(where, "tile buffers must have static shapes");
  p.BM = qType.getDimSize(0);
  p.D = qType.getDimSize(1);
  p.BN = sType.getDimSize(1);
  p.Dv = accType.getDimSize(1);
  auto slots = [](MemRefType t) { return t.getRank() == 3 ? t.getDimSize(0) : int64_t(1); };
  p.S = slots(kType);
  if (slots(vType) != p.S)
    return fail(where, "K and V tile buffers must have the same number of pipeline slots");
  auto tileShape = [](MemRefType t) {
    return std::pair<int64_t, int64_t>{t.getDimSize(t.getRank() - 2), t.getDimSize(t.getRank() - 1)};
  };
  auto [k0, k1] = tileShape(kType);
  auto [v0, v1] = tileShape(vType);
  if (!((k0 == p.D && k1 == p.BN) || (k0 == p.BN && k1 == p.D)) || v0 != p.BN || v1 != p.Dv)
    return fail(where, "K/V tile buffers do not match the score and accumulator tiles");
  for (int64_t d : {p.D, p.Dv})
    if (d != 64 && d != 128)
      return fail(where, "head dim " + Twine(d) +
                            " is not supported on the GPU (supported: 64, 128)");
  if (numWarps < 1 || numWarps > 16)
    return fail(where, "num-warps must be in [1, 16], got " + Twine(numWarps));
  if (p.BM != kRowsPerWarp * numWarps)
    return fail(where, "block-m (" + Twine(p.BM) + ") must be 16 * num-warps (" +
                          Twine(kRowsPerWarp * numWarps) + "): each warp owns 16 query rows");
  if (p.BN % 16 != 0 || p.BN < 16 || p.BN > 256)
    return fail(where, "block-n must be a multiple of 16 in [16, 256], got " + Twine(p.BN));

  // wgmma: whole warpgroups (4 warps, 64 query rows each).
  bool wgmmaFits = chip == "sm_90a" && numWarps % 4 == 0;
  if (mma == "wgmma" && !wgmmaFits)
    return fail(where, "mma=wgmma needs chip=sm_90a and num-warps a multiple of 4 (got " + chip +
                          ", " + Twine(numWarps) + " warps)");
  // wgmma .tf32 takes B K-major only; V ([keys, d]) is MN-major for P.V.
  if (mma == "wgmma" && p.tf32)
    return fail(where, "mma=wgmma does not take f32 inputs (wgmma .tf32 needs a K-major V); "
                       "use mma=auto or mma-sync");
  p.wgmma = wgmmaFits && mma != "mma-sync" && !p.tf32;
  // TMA writes the 128-byte-swizzled panels that only the wgmma kernel reads.
  // Not for ragged / paged programs: their Q and packed K/V are strided
  // views whose boxes start at rows from the work table, and a paged block's
  // rows come from several pages (cp.async per row, docs/ragged-paged.md).
  p.tma = p.wgmma && useTma && !func->hasAttr("attn.ragged");

  int64_t eltBytes = p.eltBytes;
  int64_t barrierBytes = p.tma ? 8 * (p.S + 1) : 0; // static shared memory
  p.qBytes = p.BM * p.D * eltBytes;
  p.kBytes = p.S * p.BN * p.D * eltBytes;
  p.vBytes = p.S * p.BN * p.Dv * eltBytes;
  p.smemBytes = p.qBytes + p.kBytes + p.vBytes + (p.wgmma ? kSmemAlign : 0);
  if (p.smemBytes + barrierBytes > smemLimit(chip))
    return fail(where, "the tiles need " + Twine(p.smemBytes) + " bytes of shared memory, more than " +
                          chip + " allows per block (" + Twine(smemLimit(chip)) +
                          "); use fewer stages or smaller blocks");
  return p;
}

Operation *anchorOf(Operation *op) {
  while (isa<scf::IfOp>(op->getParentOp()))
    op = op->getParentOp();
  return op;
}

size_t endOfCopyGroup(ArrayRef<Operation *> copies, size_t i) {
  auto key = [](Operation *op) {
    return std::make_tuple(anchorOf(op)->getBlock(), op->getAttr("attn.part"),
                           op->getAttr("attn.iteration"), op->getAttr("attn.unrolled_copy"));
  };
  size_t j = i + 1;
  while (j < copies.size() && key(copies[j]) == key(copies[i]))
    ++j;
  return j;
}

} // namespace mlir::attn::gpu_lowering
