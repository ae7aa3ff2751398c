//===- AttnLowerToGpu.cpp - attn-lower-to-gpu: tile program -> GPU kernel -===//
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
//   attn.tile_matmul                       -> ldmatrix + mma.sync m16n8k16
//   attn.tile_softmax / tile_store         -> fragment math + shuffle-xor quad reductions
//
// Asynchronous-copy groups follow the pipelined structure (see placeAsyncGroups).
// Layout arithmetic: passes/GpuLayout.h (tested against the PTX ISA tables).
// On sm_90a with whole warpgroups the matmuls become wgmma and the copies TMA
// boxes on mbarriers: AttnLowerToGpuSm90.cpp (state shared in GpuLowering.h).
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

#include "mlir/Dialect/GPU/Utils/GPUUtils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/DenseSet.h"

#include <cmath>
#include <limits>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

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
  return isa<CopyTileOp, TileMatmulOp, TileMaskOp, TileBiasOp, TileSoftmaxOp, TileStoreOp>(op);
}


int64_t smemLimit(StringRef chip) {
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
    } else if (auto st = dyn_cast<TileStoreOp>(op)) {
      if (rootOf(st.getAcc()) != p.acc || rootOf(st.getSum()) != p.sum)
        return fail(op, "tile_store must store the accumulator and sum of tile_softmax");
      Type ot = st.getDest().getType().getElementType();
      if (!ot.isF16() && !ot.isBF16() && !ot.isF32())
        return fail(op, "the output must be f16, bf16 or f32");
    } else if (auto mk = dyn_cast<TileMaskOp>(op)) {
      if (rootOf(mk.getScores()) != p.s)
        return fail(op, "tile_mask must mask the score tile");
    } else if (auto bi = dyn_cast<TileBiasOp>(op)) {
      if (rootOf(bi.getScores()) != p.s)
        return fail(op, "tile_bias must add to the score tile");
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
  for (Operation *op : tileOps) {
    if (auto st = dyn_cast<TileStoreOp>(op))
      p.outArg = argNo(st.getDest());
    if (auto bi = dyn_cast<TileBiasOp>(op))
      p.biasArg = argNo(bi.getBias());
  }
  if (p.outArg < 0)
    return fail(where, "the tile program must store its output into a function argument");
  auto srcType = [](Value v) { return cast<MemRefType>(v.getType()); };
  p.elt = srcType(qSrc).getElementType();
  if (!p.elt.isF16() && !p.elt.isBF16()) {
    where->emitError("attn-lower-to-gpu: element type ")
        << p.elt << " is not supported on the GPU: tensor cores (mma.sync m16n8k16) take f16 "
        << "or bf16 inputs";
    failed = true;
    return std::nullopt;
  }
  if (srcType(kSrc).getElementType() != p.elt || srcType(vSrc).getElementType() != p.elt)
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
  p.wgmma = wgmmaFits && mma != "mma-sync";
  // TMA writes the 128-byte-swizzled panels that only the wgmma kernel reads.
  p.tma = p.wgmma && useTma;

  int64_t eltBytes = 2;
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


LogicalResult Lowering::buildLaunch() {
  func::FuncOp func = p.func;
  SmallVector<Value> ubs;
  if (p.grid) {
    b.setInsertionPoint(p.grid);
    loc = p.grid.getLoc();
    ubs = llvm::to_vector(p.grid.getUpperBound());
  } else {
    b.setInsertionPointToStart(&func.getBody().front());
  }
  Value one = idx(1);
  size_t n = ubs.size();
  Value gx = n >= 1 ? ubs[n - 1] : one, gy = n >= 2 ? ubs[n - 2] : one,
        gz = n >= 3 ? ubs[n - 3] : one;
  Value smem = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(p.smemBytes));
  launch = gpu::LaunchOp::create(b, loc, gx, gy, gz, idx(threads()), one, one, smem);
  Block &body = launch.getBody().front();
  if (p.grid) {
    Block *gb = p.grid.getBody();
    body.getOperations().splice(body.end(), gb->getOperations(), gb->begin(),
                                std::prev(gb->end()));
    Value ids[3] = {launch.getBlockIds().x, launch.getBlockIds().y, launch.getBlockIds().z};
    for (size_t i = 0; i < n; ++i)
      p.grid.getInductionVars()[n - 1 - i].replaceAllUsesWith(ids[i]);
    p.grid.erase();
  } else {
    Block &fb = func.getBody().front();
    body.getOperations().splice(body.end(), fb.getOperations(),
                                std::next(Block::iterator(launch)), std::prev(fb.end()));
  }
  b.setInsertionPointToEnd(&body);
  gpu::TerminatorOp::create(b, loc);
  return success();
}

/// Recomputes inside the kernel the index values the grid body used from the
/// host function (constants, memref.dim, arithmetic on them), so that the
/// kernel's arguments are exactly the function's buffers.
LogicalResult Lowering::internalizeValues() {
  Block &body = launch.getBody().front();
  OpBuilder cb(ctx());
  cb.setInsertionPointToStart(&body);
  // Keep the prelude (thread ids etc.) first.
  for (Operation &op : body)
    if (op.hasAttr("attn.prelude"))
      cb.setInsertionPointAfter(&op);
  IRMapping map;
  bool bad = false;
  std::function<Value(Value)> inside = [&](Value v) -> Value {
    if (launch.getBody().isAncestor(v.getParentRegion()))
      return v;
    if (isa<BlockArgument>(v) || isa<nvgpu::TensorMapDescriptorType>(v.getType()))
      return v; // a function argument or a TMA descriptor: becomes a kernel argument
    if (Value m = map.lookupOrNull(v))
      return m;
    Operation *def = v.getDefiningOp();
    if (!isMemoryEffectFree(def) && !isa<memref::DimOp>(def)) {
      def->emitError("attn-lower-to-gpu: the kernel uses a host value with side effects");
      bad = true;
      return v;
    }
    for (Value operand : def->getOperands())
      map.map(operand, inside(operand));
    Operation *clone = cb.clone(*def, map);
    cb.setInsertionPointAfter(clone);
    for (auto [o, n] : llvm::zip(def->getResults(), clone->getResults()))
      map.map(o, n);
    return map.lookup(v);
  };
  launch.getBody().walk([&](Operation *op) {
    for (OpOperand &use : op->getOpOperands()) {
      Value v = use.get();
      if (launch.getBody().isAncestor(v.getParentRegion()) || isa<BlockArgument>(v) ||
          isa<nvgpu::TensorMapDescriptorType>(v.getType()))
        continue;
      use.set(inside(v));
    }
  });
  return failure(bad);
}

void Lowering::buildPrelude() {
  Block &body = launch.getBody().front();
  b.setInsertionPointToStart(&body);
  auto mark = [&](Value v) {
    v.getDefiningOp()->setAttr("attn.prelude", b.getUnitAttr());
    return v;
  };
  tid = mark(gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  lane = mark(arith::RemUIOp::create(b, loc, tid, mark(idx(kWarpSize))));
  Value warp = mark(arith::DivUIOp::create(b, loc, tid, mark(idx(kWarpSize))));
  warpRow = mark(arith::MulIOp::create(b, loc, warp, mark(idx(kRowsPerWarp))));
  auto dsmType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface{},
                                 workgroup());
  Value dsm = mark(gpu::DynamicSharedMemoryOp::create(b, loc, dsmType));
  // wgmma's 128-byte swizzle is a function of address bits [4:9]: the tiles
  // start at the first 1024-byte boundary of dynamic shared memory (the
  // launch asks for 1 KiB more), whatever alignment the driver gives it.
  Value pad;
  if (p.wgmma) {
    Value base = mark(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, dsm));
    Value neg = mark(arith::SubIOp::create(b, loc, mark(idx(0)), base));
    pad = mark(arith::AndIOp::create(b, loc, neg, mark(idx(kSmemAlign - 1))));
  }
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape) {
    auto t = MemRefType::get(shape, p.elt, MemRefLayoutAttrInterface{}, workgroup());
    Value shift = mark(idx(offset));
    if (pad)
      shift = mark(arith::AddIOp::create(b, loc, pad, shift));
    return mark(memref::ViewOp::create(b, loc, t, dsm, shift, ValueRange{}));
  };
  if (p.wgmma) {
    // 64-column panels of 128-byte rows (gl::panelSwizzle); every tile and
    // slot is a multiple of 1024 bytes, so atoms stay 1024-byte aligned.
    qSmem = view(0, {p.BM * p.D / 64, 64});
    kSmem = view(p.qBytes, {p.S, p.BN * p.D / 64, 64});
    vSmem = view(p.qBytes + p.kBytes, {p.S, p.BN * p.Dv / 64, 64});
  } else {
    qSmem = view(0, {p.BM, p.D});
    kSmem = view(p.qBytes, {p.S, p.BN, p.D});
    vSmem = view(p.qBytes + p.kBytes, {p.S, p.BN, p.Dv});
  }
  auto privateBuffer = [&](int64_t n, Type t) {
    return mark(memref::AllocaOp::create(b, loc, MemRefType::get({n}, t)));
  };
  qFrag = privateBuffer(p.D / 16, VectorType::get({4, 2}, p.elt));
  sFrag = privateBuffer(p.BN / 8 * 4, b.getF32Type());
  accFrag = privateBuffer(p.Dv / 8 * 4, b.getF32Type());
  mxFrag = privateBuffer(2, b.getF32Type());
  sumFrag = privateBuffer(2, b.getF32Type());
}

/// Gives the K/V views (subviews, casts, loop-carried values) derived from the
/// f32 tile allocation `oldRoot` the types of the f16/bf16 shared-memory
/// tiles [block-n, head_dim] of `newBase` ([slots, block-n, head_dim]).
LogicalResult Lowering::retypeSharedTiles(Value oldRoot, Value newBase) {
  auto baseType = cast<MemRefType>(newBase.getType());
  int64_t rows = baseType.getDimSize(1), cols = baseType.getDimSize(2);
  auto dynTileType = MemRefType::get(
      {rows, cols}, baseType.getElementType(),
      StridedLayoutAttr::get(ctx(), ShapedType::kDynamic, {cols, 1}), baseType.getMemorySpace());
  auto oldType = cast<MemRefType>(oldRoot.getType());
  SmallVector<std::pair<Value, Value>> work;
  SmallVector<Operation *> toErase;
  llvm::DenseSet<Value> retypedInPlace;
  if (oldType.getRank() == 2) {
    // One slot (no pipelining): the tile is slot 0.
    b.setInsertionPointAfter(newBase.getDefiningOp());
    auto t = memref::SubViewOp::inferRankReducedResultType({rows, cols}, baseType,
                                                            ArrayRef<int64_t>{0, 0, 0},
                                                            ArrayRef<int64_t>{1, rows, cols},
                                                            ArrayRef<int64_t>{1, 1, 1});
    Value tile = memref::SubViewOp::create(b, loc, t, newBase, ArrayRef<int64_t>{0, 0, 0},
                                           ArrayRef<int64_t>{1, rows, cols},
                                           ArrayRef<int64_t>{1, 1, 1});
    work.push_back({oldRoot, tile});
  } else {
    work.push_back({oldRoot, newBase});
  }
  toErase.push_back(oldRoot.getDefiningOp());
  while (!work.empty()) {
    auto [oldV, newV] = work.pop_back_val();
    for (OpOperand &use : llvm::make_early_inc_range(oldV.getUses())) {
      Operation *user = use.getOwner();
      if (auto sv = dyn_cast<memref::SubViewOp>(user)) {
        if (sv.getSource() != oldV)
          return sv.emitError("attn-lower-to-gpu: unexpected subview of a K/V tile buffer");
        auto offsets = sv.getMixedOffsets();
        b.setInsertionPoint(sv);
        SmallVector<OpFoldResult> off{offsets[0], b.getIndexAttr(0), b.getIndexAttr(0)};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(rows),
                                        b.getIndexAttr(cols)};
        SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
        auto t = memref::SubViewOp::inferRankReducedResultType({rows, cols}, baseType, off, sizes,
                                                                strides);
        Value nv = memref::SubViewOp::create(b, sv.getLoc(), t, newV, off, sizes, strides);
        work.push_back({sv.getResult(), nv});
        toErase.push_back(sv);
      } else if (auto c = dyn_cast<memref::CastOp>(user)) {
        b.setInsertionPoint(c);
        Value nv = newV.getType() == dynTileType
                       ? newV
                       : memref::CastOp::create(b, c.getLoc(), dynTileType, newV).getResult();
        work.push_back({c.getResult(), nv});
        toErase.push_back(c);
      } else if (auto f = dyn_cast<scf::ForOp>(user)) {
        use.set(newV);
        BlockArgument arg = f.getTiedLoopRegionIterArg(&use);
        OpResult res = f.getTiedLoopResult(&use);
        if (!arg || !res)
          return f.emitError("attn-lower-to-gpu: unexpected use of a K/V tile buffer");
        if (arg.getType() != newV.getType()) {
          arg.setType(newV.getType());
          res.setType(newV.getType());
        }
        if (retypedInPlace.insert(arg).second)
          work.push_back({arg, arg});
        if (retypedInPlace.insert(res).second)
          work.push_back({res, res});
      } else if (isa<scf::YieldOp>(user)) {
        use.set(newV);
        auto f = dyn_cast<scf::ForOp>(user->getParentOp());
        if (!f)
          return user->emitError("attn-lower-to-gpu: a K/V tile buffer escapes an scf.if");
      } else if (isa<memref::DeallocOp>(user)) {
        user->erase();
      } else if (isa<CopyTileOp, TileMatmulOp>(user)) {
        use.set(newV);
      } else {
        return user->emitError("attn-lower-to-gpu: unexpected use of a K/V tile buffer");
      }
    }
  }
  // Users were pushed after their producers: erase in reverse.
  for (Operation *op : llvm::reverse(toErase)) {
    if (!op->use_empty())
      return op->emitError("attn-lower-to-gpu: could not retype all uses of a K/V buffer");
    op->erase();
  }
  return success();
}

Operation *anchorOf(Operation *op) {
  while (isa<scf::IfOp>(op->getParentOp()))
    op = op->getParentOp();
  return op;
}

size_t endOfCopyGroup(ArrayRef<CopyTileOp> copies, size_t i) {
  auto key = [](Operation *op) {
    return std::make_tuple(anchorOf(op)->getBlock(), op->getAttr("attn.part"),
                           op->getAttr("attn.iteration"), op->getAttr("attn.unrolled_copy"));
  };
  size_t j = i + 1;
  while (j < copies.size() && key(copies[j]) == key(copies[i]))
    ++j;
  return j;
}

LogicalResult Lowering::collectCopies(KernelCopies &copies) {
  SmallVector<CopyTileOp> qCopies;
  launch.getBody().walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (auto cp = dyn_cast<CopyTileOp>(op)) {
      Value r = rootOf(cp.getDest());
      (r == kSmem || r == vSmem ? copies.kv : qCopies).push_back(cp);
    } else if (auto mm = dyn_cast<TileMatmulOp>(op); mm && !mm.getAccumulate()) {
      copies.qk.push_back(mm);
    }
  });
  if (qCopies.size() != 1 || qCopies[0]->getBlock() != &launch.getBody().front())
    return p.func.emitError("attn-lower-to-gpu: expected one Q copy_tile at the top of the kernel");
  if (copies.qk.empty())
    return p.func.emitError("attn-lower-to-gpu: no Q.K^T tile_matmul");
  copies.q = qCopies[0];
  return success();
}

/// Lowers the copies to cp.async and places the groups, waits and barriers
/// from the pipelined structure:
///   * the Q copy is one group;
///   * the K/V copies of one pipelined iteration (same attn.part,
///     attn.iteration, attn.unrolled_copy, same block) are one group,
///     committed after the last of them (after the scf.if that predicates
///     them, so that every thread commits the same number of groups);
///   * a copy group in a loop body overwrites a slot that the compute of an
///     earlier iteration read: a gpu.barrier goes before it;
///   * before the Q.K^T of iteration i, `device_async_wait` lets the groups
///     of later iterations stay in flight: num_stages - 1 in the steady state,
///     num_stages - 2 - e in epilogue iteration e, 0 without pipelining; then
///     a gpu.barrier makes every thread's copies visible;
///   * Q fragments are loaded into registers once, before the first op that
///     runs Q.K^T, after waiting for the Q group.
LogicalResult Lowering::placeAsyncGroups() {
  Block &body = launch.getBody().front();
  KernelCopies copies;
  if (failed(collectCopies(copies)))
    return failure();
  SmallVector<CopyTileOp> &kvCopies = copies.kv;
  SmallVector<TileMatmulOp> &qkMatmuls = copies.qk;
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(ctx());
  // Commits take the tokens of their copies where those dominate them;
  // copies under an scf.if (predicated iterations, partial rounds) are
  // committed outside it, unconditionally, so that every thread commits the
  // same number of groups, and the commit names the Q group's token instead
  // (the operands only document the dependence: cp.async.commit_group
  // commits every copy issued before it).
  auto commitAfter = [&](Operation *after, ArrayRef<Value> tokens) {
    b.setInsertionPointAfter(after);
    SmallVector<Value> inputs;
    for (Value t : tokens)
      if (t.getParentBlock() == after->getBlock())
        inputs.push_back(t);
    if (inputs.size() != tokens.size() || inputs.empty())
      inputs.assign({qToken});
    return nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType, inputs);
  };

  // Q group.
  {
    CopyTileOp q = copies.q;
    b.setInsertionPoint(q);
    SmallVector<Value> tokens = emitTileCopy(q, qSmem, p.BM, p.D);
    if (auto sc = q.getScale())
      qScale = sc->convertToDouble();
    b.setInsertionPointAfter(q);
    SmallVector<Value> inputs;
    for (Value t : tokens)
      if (t.getParentBlock() == q->getBlock())
        inputs.push_back(t);
    auto qc = nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType, inputs);
    qToken = qc.getResult();
    qCommit = qc;
    q->erase();
  }

  // K/V groups.
  for (size_t i = 0; i < kvCopies.size();) {
    size_t j = endOfCopyGroup(kvCopies, i);
    Operation *first = anchorOf(kvCopies[i]), *last = anchorOf(kvCopies[j - 1]);
    if (isa<scf::ForOp>(first->getParentOp())) {
      b.setInsertionPoint(first);
      gpu::BarrierOp::create(b, loc);
    }
    SmallVector<Value> tokens;
    for (size_t c = i; c < j; ++c) {
      CopyTileOp cp = kvCopies[c];
      Value r = rootOf(cp.getDest());
      b.setInsertionPoint(cp);
      llvm::append_range(tokens, emitTileCopy(cp, cp.getDest(), p.BN, r == kSmem ? p.D : p.Dv));
    }
    // The anchor of a copy that is not under an scf.if is the copy itself.
    Operation *after = last == kvCopies[j - 1].getOperation() ? last->getPrevNode() : last;
    Operation *commit = commitAfter(after, tokens);
    (void)commit;
    for (size_t c = i; c < j; ++c)
      kvCopies[c]->erase();
    i = j;
  }

  // Q fragments, before the first top-level op that runs Q.K^T.
  Operation *firstTop = qkMatmuls.front();
  while (firstTop->getBlock() != &body)
    firstTop = firstTop->getParentOp();
  int64_t newer = 0;
  for (Operation *op = qCommit->getNextNode(); op && op != firstTop; op = op->getNextNode())
    if (isa<nvgpu::DeviceAsyncCreateGroupOp>(op))
      ++newer;
  b.setInsertionPoint(firstTop);
  nvgpu::DeviceAsyncWaitOp::create(b, loc, qToken, b.getI32IntegerAttr(newer));
  fenceForWgmma();
  gpu::BarrierOp::create(b, loc);
  emitQFragmentLoad();

  // Waits before each Q.K^T.
  for (TileMatmulOp mm : qkMatmuls) {
    int64_t pending = 0;
    auto part = mm->getAttrOfType<StringAttr>("attn.part");
    auto iter = mm->getAttrOfType<IntegerAttr>("attn.iteration");
    if (part && part.getValue() == "kernel")
      pending = p.S - 1;
    else if (part && part.getValue() == "epilogue")
      pending = p.S - 2 - (iter ? iter.getInt() : 0);
    pending = std::max<int64_t>(pending, 0);
    b.setInsertionPoint(anchorOf(mm));
    nvgpu::DeviceAsyncWaitOp::create(b, loc, qToken, b.getI32IntegerAttr(pending));
    fenceForWgmma();
    gpu::BarrierOp::create(b, loc);
  }
  return success();
}

SmallVector<Value> Lowering::emitTileCopy(CopyTileOp op, Value dst, int64_t rows,
                                          int64_t cols) {
  IRBuild &o = *this;
  SmallVector<Value> tokens;
  int64_t cpr = cols / 8, chunks = rows * cpr, T = threads();
  int64_t perThread = (chunks + T - 1) / T;
  for (int64_t j = 0; j < perThread; ++j) {
    auto copyChunk = [&] {
      auto [r, ch] = gl::copyChunk(o, tid, j, T, cpr);
      Value inRange = lt(r, op.getValid());
      Value srcRow = addi(op.getRow(), sel(inRange, r, idx(0)));
      Value n = sel(inRange, idx(8), idx(0));
      Value dRow = r, dCol;
      if (p.wgmma)
        std::tie(dRow, dCol) = gl::panelSwizzle(o, r, ch, rows);
      else
        dCol = o.muli(gl::swizzleChunk(o, r, ch), 8);
      tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
          b, loc, nvgpu::DeviceAsyncTokenType::get(ctx()), dst, ValueRange{dRow, dCol},
          op.getSource(), ValueRange{op.getBatch(), op.getHead(), srcRow, o.muli(ch, 8)},
          b.getIndexAttr(8), n, b.getUnitAttr()));
    };
    if ((j + 1) * T > chunks)
      ifThen(lt(addi(tid, idx(j * T)), idx(chunks)), copyChunk); // some threads have no chunk
    else
      copyChunk();
  }
  return tokens;
}

/// Q fragment (A operand) of k-step `ks` from shared memory.
Value Lowering::loadQFragment(int64_t ks) {
  IRBuild &o = *this;
  auto [r, c] = gl::ldmatrixRowMajorX4(o, lane);
  Value row = addi(warpRow, r);
  Value chunk = addi(idx(2 * ks), o.divui(c, 8));
  Value pcol = o.muli(gl::swizzleChunk(o, row, chunk), 8);
  return nvgpu::LdMatrixOp::create(b, loc, VectorType::get({4, 2}, p.elt), qSmem,
                                   ValueRange{row, pcol}, /*transpose=*/false, /*numTiles=*/4);
}

/// Head dim 64: Q fragments (16 registers) are loaded once and stay in
/// registers. Head dim 128: they would take 32 registers for the whole loop,
/// which pushes the 3-stage, 128 x 64 kernel over 255 registers; there Q.K^T
/// reloads each k-step's fragment from shared memory instead (one more
/// ldmatrix per k-step and warp, the way FlashAttention-2 trades registers for
/// shared-memory traffic).
bool Lowering::qInRegisters() const { return !p.wgmma && p.D <= 64; }

void Lowering::emitQFragmentLoad() {
  if (!qInRegisters())
    return;
  for (int64_t ks = 0; ks < p.D / 16; ++ks)
    store(loadQFragment(ks), qFrag, ks);
}

Value Lowering::qFragment(int64_t ks) {
  return qInRegisters() ? load(qFrag, ks) : loadQFragment(ks);
}

/// vector<Nx2xT> from N vector<2xT> rows.
Value Lowering::stack(ArrayRef<Value> rows) {
  auto rowType = cast<VectorType>(rows[0].getType());
  auto t = VectorType::get({(int64_t)rows.size(), rowType.getDimSize(0)}, rowType.getElementType());
  Value acc = arith::ConstantOp::create(b, loc, t, b.getZeroAttr(t));
  for (auto [i, r] : llvm::enumerate(rows))
    acc = vector::InsertOp::create(b, loc, r, acc, ArrayRef<int64_t>{(int64_t)i});
  return acc;
}

/// The A fragment of P for k-step `kk` (keys 16 kk .. 16 kk + 15) as 4
/// f16/bf16 pairs, converted from the score accumulators in place (see
/// gl::probabilityFragmentSource): the operand of both mma.sync and wgmma.
SmallVector<Value> Lowering::probabilityFragment(int64_t kk) {
  auto pairType = VectorType::get({2}, b.getF32Type());
  auto eltPairType = VectorType::get({2}, p.elt);
  SmallVector<Value> regs;
  for (int64_t reg = 0; reg < 4; ++reg) {
    auto [dnb, crow] = gl::probabilityFragmentSource(reg);
    int64_t base = (2 * kk + dnb) * 4 + crow * 2;
    Value pair = vector::FromElementsOp::create(
        b, loc, pairType, ValueRange{load(sFrag, base), load(sFrag, base + 1)});
    regs.push_back(arith::TruncFOp::create(b, loc, eltPairType, pair));
  }
  return regs;
}

/// A vector<2xf16/bf16> as the packed i32 register PTX takes it.
Value Lowering::packPair(Value pair) {
  Value w = vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, loc, w, ArrayRef<int64_t>{0});
}

/// c + a * b on tensor cores (m16n8k16, f32 accumulators).
Value Lowering::mma(Value a, Value bFrag, Value c) {
  if (!p.elt.isBF16())
    return nvgpu::MmaSyncOp::create(b, loc, a, bFrag, c, ArrayRef<int64_t>{16, 8, 16});
  // bf16: nvvm.mma.sync on packed i32 registers (the nvgpu lowering of this
  // MLIR cannot deduce PTX types for bf16).
  SmallVector<Value> A, B, C;
  for (int64_t i = 0; i < 4; ++i)
    A.push_back(packPair(vector::ExtractOp::create(b, loc, a, ArrayRef<int64_t>{i})));
  for (int64_t i = 0; i < 2; ++i)
    B.push_back(packPair(vector::ExtractOp::create(b, loc, bFrag, ArrayRef<int64_t>{i})));
  for (int64_t i = 0; i < 4; ++i)
    C.push_back(vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i / 2, i % 2}));
  auto f32t = b.getF32Type();
  auto resType = LLVM::LLVMStructType::getLiteral(ctx(), {f32t, f32t, f32t, f32t});
  auto mmaOp = NVVM::MmaOp::create(
      b, loc, resType, A, B, C, ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  Value out = c;
  for (int64_t i = 0; i < 4; ++i) {
    Value x = LLVM::ExtractValueOp::create(b, loc, mmaOp.getResult(), ArrayRef<int64_t>{i});
    out = vector::InsertOp::create(b, loc, x, out, ArrayRef<int64_t>{i / 2, i % 2});
  }
  return out;
}

/// 2^x with the PTX approximation (`ex2.approx.ftz.f32`, the instruction
/// CUDA's fast-math exp2f uses). math.exp2 would become a libdevice call,
/// which needs the CUDA toolkit's libdevice at compile time.
Value Lowering::exp2(Value x) {
  return LLVM::CallIntrinsicOp::create(b, loc, b.getF32Type(),
                                       b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f"),
                                       ValueRange{x})
      .getResult(0);
}

/// a * b + c, contractible into one fma (math.fma would be a libdevice call).
Value Lowering::fma(Value a, Value bv, Value c) {
  auto contract = arith::FastMathFlagsAttr::get(ctx(), arith::FastMathFlags::contract);
  Value m = arith::MulFOp::create(b, loc, a, bv, contract);
  return arith::AddFOp::create(b, loc, m, c, contract);
}

/// Reduces over the 4 lanes that share a row of an accumulator fragment.
Value Lowering::quadReduce(Value v, bool isMax) {
  Value width = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(kWarpSize));
  for (int32_t off : {1, 2}) {
    Value o = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(off));
    Value other = gpu::ShuffleOp::create(b, loc, v, o, width, gpu::ShuffleMode::XOR).getResult(0);
    v = isMax ? (Value)arith::MaximumFOp::create(b, loc, v, other)
              : (Value)arith::AddFOp::create(b, loc, v, other);
  }
  return v;
}

void Lowering::lowerQK(TileMatmulOp op) {
  IRBuild &o = *this;
  Value kTile = op.getB();
  auto [r, c] = gl::ldmatrixNMajorX4(o, lane);
  Value colChunk = o.divui(c, 8);
  auto x4Type = VectorType::get({4, 2}, p.elt);
  auto accType = VectorType::get({2, 2}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, loc, accType, b.getZeroAttr(accType));
  Value scale = f32(qScale);
  // k-steps outside, n-blocks inside: one Q fragment live at a time (the score
  // accumulators are live through the softmax anyway).
  SmallVector<Value> acc(p.BN / 8, zero);
  for (int64_t ks = 0; ks < p.D / 16; ++ks) {
    Value a = qFragment(ks);
    Value chunk = addi(colChunk, idx(2 * ks));
    for (int64_t nb2 = 0; nb2 < p.BN / 16; ++nb2) {
      Value row = addi(r, idx(16 * nb2));
      // (r + 16 nb2) % 8 == r % 8: the swizzled column depends on ks only.
      Value pcol = o.muli(gl::swizzleChunk(o, r, chunk), 8);
      Value bx4 = nvgpu::LdMatrixOp::create(b, loc, x4Type, kTile, ValueRange{row, pcol},
                                            /*transpose=*/false, /*numTiles=*/4);
      for (int64_t h = 0; h < 2; ++h) {
        Value b0 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h});
        Value b1 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h + 1});
        acc[2 * nb2 + h] = mma(a, stack({b0, b1}), acc[2 * nb2 + h]);
      }
    }
  }
  for (int64_t nb = 0; nb < p.BN / 8; ++nb)
    for (int64_t i = 0; i < 4; ++i) {
      Value x = vector::ExtractOp::create(b, loc, acc[nb], ArrayRef<int64_t>{i / 2, i % 2});
      if (qScale != 1.0)
        x = arith::MulFOp::create(b, loc, x, scale);
      store(x, sFrag, nb * 4 + i);
    }
}

void Lowering::lowerPV(TileMatmulOp op) {
  IRBuild &o = *this;
  Value vTile = op.getB();
  auto x4Type = VectorType::get({4, 2}, p.elt);
  auto accType = VectorType::get({2, 2}, b.getF32Type());
  auto [r, c] = gl::ldmatrixRowMajorX4(o, lane);
  Value colChunk = o.divui(c, 8);
  SmallVector<Value> acc;
  for (int64_t db = 0; db < p.Dv / 8; ++db) {
    SmallVector<Value> e;
    for (int64_t i = 0; i < 4; ++i)
      e.push_back(load(accFrag, db * 4 + i));
    acc.push_back(vector::FromElementsOp::create(b, loc, accType, e));
  }
  // k-steps (16 keys) outside: the probabilities of one k-step are built from
  // the score accumulators right before use (P as A fragments, no data
  // movement), so the scores die progressively.
  for (int64_t kk = 0; kk < p.BN / 16; ++kk) {
    Value a = stack(probabilityFragment(kk));
    Value row = addi(r, idx(16 * kk));
    for (int64_t db2 = 0; db2 < p.Dv / 16; ++db2) {
      Value chunk = addi(colChunk, idx(2 * db2));
      // (r + 16 kk) % 8 == r % 8: the swizzled column depends on db2 only.
      Value pcol = o.muli(gl::swizzleChunk(o, r, chunk), 8);
      Value bx4 = nvgpu::LdMatrixOp::create(b, loc, x4Type, vTile, ValueRange{row, pcol},
                                            /*transpose=*/true, /*numTiles=*/4);
      for (int64_t h = 0; h < 2; ++h) {
        Value b0 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h});
        Value b1 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h + 1});
        acc[2 * db2 + h] = mma(a, stack({b0, b1}), acc[2 * db2 + h]);
      }
    }
  }
  for (int64_t db = 0; db < p.Dv / 8; ++db)
    for (int64_t i = 0; i < 4; ++i)
      store(vector::ExtractOp::create(b, loc, acc[db], ArrayRef<int64_t>{i / 2, i % 2}), accFrag,
            db * 4 + i);
}

void Lowering::lowerMask(TileMaskOp op, Value when) {
  IRBuild &o = *this;
  MaskKind kind = op.getKind();
  bool causal = kind == MaskKind::causal || kind == MaskKind::sliding_window;
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  // Element (nb, i) of a lane is at row rowBase + dr(i), column
  // colBase + 8 nb + dc(i) of the tile; with the column offset
  // k = 8 nb + dc(i) a constant, every test is "k against one per-lane value":
  //   past the keys:  colBase + k >= valid            <=>  k >= valid - colBase
  //   causal:         col + colBase + k > row + rowBase + dr  <=>  k > dRow(dr)
  //   window:         kPos + window <= qPos           <=>  k <= dRow(dr) - window
  auto [rowBase, colBase] = gl::accumulatorElement(o, lane, 0);
  auto cmpConst = [&](arith::CmpIPredicate pred, int64_t k, Value v) {
    return cmpi(pred, idx(k), v);
  };
  Value validRel = subi(op.getValid(), colBase);
  Value qBase = addi(op.getRow(), addi(warpRow, rowBase));
  Value kBase = addi(op.getCol(), colBase);
  Value dRowBase = subi(qBase, kBase);
  Value window = op.getWindow() ? idx(*op.getWindow()) : Value();
  for (int64_t i = 0; i < 4; ++i) {
    auto [dr, dc] = gl::accumulatorOffset(i);
    Value dRow = addi(dRowBase, idx(dr));
    Value dRowWin = window ? subi(dRow, window) : Value();
    for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
      int64_t k = 8 * nb + dc;
      Value masked = cmpConst(arith::CmpIPredicate::sge, k, validRel);
      if (causal) {
        masked = arith::OrIOp::create(b, loc, masked, cmpConst(arith::CmpIPredicate::sgt, k, dRow));
        if (kind == MaskKind::sliding_window && window)
          masked = arith::OrIOp::create(b, loc, masked,
                                        cmpConst(arith::CmpIPredicate::sle, k, dRowWin));
      }
      if (when)
        masked = arith::AndIOp::create(b, loc, masked, when);
      int64_t e = nb * 4 + i;
      store(sel(masked, negInf, load(sFrag, e)), sFrag, e);
    }
  }
}

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

void Lowering::lowerBias(TileBiasOp op) {
  IRBuild &o = *this;
  auto biasType = cast<MemRefType>(op.getBias().getType());
  int64_t rank = biasType.getRank();
  Value scale = f32(op.getScale().convertToDouble());
  Value zero = idx(0);
  for (int64_t i = 0; i < 4; ++i) {
    auto [rr, cc] = gl::accumulatorElement(o, lane, i);
    Value row = addi(warpRow, rr);
    Value rowOk = lt(row, op.getValidRows());
    Value rowIdx = addi(op.getRow(), sel(rowOk, row, zero));
    for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
      Value col = addi(cc, idx(8 * nb));
      Value colOk = lt(col, op.getValidCols());
      Value colIdx = addi(op.getCol(), sel(colOk, col, zero));
      Value full[4] = {op.getBatch(), op.getHead(), rowIdx, colIdx};
      SmallVector<Value> indices;
      for (int64_t d = 0; d < rank; ++d) {
        Value ix = full[4 - rank + d];
        indices.push_back(biasType.getDimSize(d) == 1 ? zero : ix);
      }
      Value x = memref::LoadOp::create(b, loc, op.getBias(), indices);
      if (!x.getType().isF32())
        x = x.getType().getIntOrFloatBitWidth() < 32
                ? (Value)arith::ExtFOp::create(b, loc, b.getF32Type(), x)
                : (Value)arith::TruncFOp::create(b, loc, b.getF32Type(), x);
      int64_t e = nb * 4 + i;
      Value s = load(sFrag, e);
      Value ok = arith::AndIOp::create(b, loc, rowOk, colOk);
      Value added = fma(x, scale, s);
      store(sel(ok, added, s), sFrag, e);
    }
  }
}

void Lowering::lowerSoftmax(TileSoftmaxOp op) {
  const double log2e = 1.4426950408889634;
  Value cLog2e = f32(log2e), zero = f32(0.0);
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  for (int64_t h = 0; h < 2; ++h) {
    Value mOld = load(mxFrag, h);
    Value bm = negInf;
    for (int64_t nb = 0; nb < p.BN / 8; ++nb)
      for (int64_t e = 0; e < 2; ++e)
        bm = arith::MaximumFOp::create(b, loc, bm, load(sFrag, nb * 4 + h * 2 + e));
    bm = quadReduce(bm, /*isMax=*/true);
    Value mNew = arith::MaximumFOp::create(b, loc, mOld, bm);
    Value isInf = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, mNew, negInf);
    Value mUse = sel(isInf, zero, mNew);
    Value mScaled = arith::MulFOp::create(b, loc, mUse, cLog2e);
    Value negM = arith::NegFOp::create(b, loc, mScaled);
    Value alpha = exp2(fma(mOld, cLog2e, negM));
    Value rowSum = zero;
    for (int64_t nb = 0; nb < p.BN / 8; ++nb)
      for (int64_t e = 0; e < 2; ++e) {
        int64_t k = nb * 4 + h * 2 + e;
        Value pr = exp2(fma(load(sFrag, k), cLog2e, negM));
        store(pr, sFrag, k);
        rowSum = arith::AddFOp::create(b, loc, rowSum, pr);
      }
    // Per-lane partial sums; tile_store adds the 4 lanes of a row.
    store(fma(load(sumFrag, h), alpha, rowSum), sumFrag, h);
    for (int64_t db = 0; db < p.Dv / 8; ++db)
      for (int64_t e = 0; e < 2; ++e) {
        int64_t k = db * 4 + h * 2 + e;
        store(arith::MulFOp::create(b, loc, load(accFrag, k), alpha), accFrag, k);
      }
    store(mNew, mxFrag, h);
  }
}

void Lowering::lowerStore(TileStoreOp op) {
  IRBuild &o = *this;
  auto outType = cast<MemRefType>(op.getDest().getType());
  Type outElt = outType.getElementType();
  auto pairType = VectorType::get({2}, b.getF32Type());
  auto outPairType = VectorType::get({2}, outElt);
  Value zero = f32(0.0), one = f32(1.0);
  for (int64_t h = 0; h < 2; ++h) {
    Value total = quadReduce(load(sumFrag, h), /*isMax=*/false);
    Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, total, zero);
    Value inv = sel(isZero, zero, arith::DivFOp::create(b, loc, one, total));
    Value invPair = vector::BroadcastOp::create(b, loc, pairType, inv);
    Value rr, cc; // (not a structured binding: the lambda below captures cc)
    std::tie(rr, cc) = gl::accumulatorElement(o, lane, 2 * h);
    Value row = addi(warpRow, rr);
    ifThen(lt(row, op.getValid()), [&] {
      Value outRow = addi(op.getRow(), row);
      for (int64_t db = 0; db < p.Dv / 8; ++db) {
        int64_t base = db * 4 + h * 2;
        Value pair = vector::FromElementsOp::create(
            b, loc, pairType, ValueRange{load(accFrag, base), load(accFrag, base + 1)});
        Value scaled = arith::MulFOp::create(b, loc, pair, invPair);
        Value out = outElt.isF32() ? scaled
                                   : (Value)arith::TruncFOp::create(b, loc, outPairType, scaled);
        Value col = addi(cc, idx(8 * db));
        vector::StoreOp::create(b, loc, out, op.getDest(),
                                ValueRange{op.getBatch(), op.getHead(), outRow, col});
      }
    });
  }
}

LogicalResult Lowering::lowerFill(linalg::FillOp op) {
  Value root = rootOf(op.getOutputs()[0]);
  Value buf = root == p.acc ? accFrag : root == p.mx ? mxFrag : root == p.sum ? sumFrag
            : root == p.s   ? sFrag
                            : Value();
  if (!buf)
    return op.emitError("attn-lower-to-gpu: linalg.fill of a buffer that is not a register tile");
  Value v = op.getInputs()[0];
  if (!v.getType().isF32())
    return op.emitError("attn-lower-to-gpu: register tiles are f32");
  int64_t n = cast<MemRefType>(buf.getType()).getDimSize(0);
  for (int64_t i = 0; i < n; ++i)
    store(v, buf, i);
  return success();
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
        p.wgmma ? lowerPVWgmma(mm) : lowerPV(mm);
      else
        p.wgmma ? lowerQKWgmma(mm) : lowerQK(mm);
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
    } else if (auto sm = dyn_cast<TileSoftmaxOp>(op)) {
      lowerSoftmax(sm);
    } else if (auto st = dyn_cast<TileStoreOp>(op)) {
      lowerStore(st);
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
                         {"bias", p.biasArg}, {"out", p.outArg}})
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

/// Outlines the launch into `gpu.module @<func>_kernel { gpu.func @<func>_kernel }`
/// (upstream outlineKernelFunc, as gpu-kernel-outlining does) so that the
/// kernel can carry NVVM attributes: `nvvm.minctasm = 1` tells ptxas that one
/// block per SM is enough, so it does not cap registers for occupancy (with
/// 128 threads it otherwise targets 4 blocks, i.e. 128 registers, and
/// spills); `.maxntid` comes from the static block size.
LogicalResult Lowering::outline() {
  ModuleOp top = p.func->getParentOfType<ModuleOp>();
  std::string name = (p.func.getSymName() + "_kernel").str();
  SmallVector<Value> operands;
  gpu::GPUFuncOp kernel = outlineKernelFunc(launch, name, operands);
  if (threads() <= 128)
    kernel->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(), b.getI32IntegerAttr(1));
  OpBuilder mb(ctx());
  mb.setInsertionPointToEnd(top.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(mb, loc, name);
  SymbolTable(gpuModule).insert(kernel);
  SymbolTable(top).insert(gpuModule); // renames on a clash
  // TMA descriptors cross the kernel boundary as generic pointers (what the
  // NVGPU lowering makes of them): the kernel signature then converts to
  // LLVM, which a !nvgpu.tensormap.descriptor argument would not.
  auto ptrType = LLVM::LLVMPointerType::get(ctx());
  Block &entry = kernel.getBody().front();
  SmallVector<Type> argTypes(kernel.getArgumentTypes());
  for (auto [i, arg] : llvm::enumerate(entry.getArguments())) {
    if (!isa<nvgpu::TensorMapDescriptorType>(arg.getType()))
      continue;
    Type descType = arg.getType();
    arg.setType(ptrType);
    argTypes[i] = ptrType;
    OpBuilder kb = OpBuilder::atBlockBegin(&entry);
    auto cast = UnrealizedConversionCastOp::create(kb, loc, descType, ValueRange{arg});
    arg.replaceAllUsesExcept(cast.getResult(0), cast);
    // The host copied the tensor map to global memory (generic proxy): make
    // it visible to the tensormap proxy before TMA uses it (CUDA Programming
    // Guide, "Using TMA": fence.proxy.tensormap::generic.acquire).
    nvgpu::TmaFenceOp::create(kb, loc, cast.getResult(0));
    b.setInsertionPoint(launch);
    operands[i] = UnrealizedConversionCastOp::create(b, loc, ptrType, operands[i]).getResult(0);
  }
  kernel.setFunctionType(FunctionType::get(ctx(), argTypes, {}));
  b.setInsertionPoint(launch);
  gpu::LaunchFuncOp::create(b, launch.getLoc(), kernel, launch.getGridSizeOperandValues(),
                            launch.getBlockSizeOperandValues(),
                            launch.getDynamicSharedMemorySize(), operands);
  launch.erase();
  return success();
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
    if (mma != "auto" && mma != "mma-sync" && mma != "wgmma") {
      module.emitError("attn-lower-to-gpu: unknown mma '") << mma
                                                           << "' (expected auto, mma-sync or wgmma)";
      return signalPassFailure();
    }
    bool any = false;
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (func.isExternal())
        continue;
      bool failedAnalysis = false;
      std::optional<Plan> plan = analyze(func, numWarps, chip, mma, tma, failedAnalysis);
      if (failedAnalysis)
        return signalPassFailure();
      if (!plan)
        continue;
      OpBuilder builder(&getContext());
      Lowering lowering(*plan, numWarps, builder);
      if (failed(lowering.run()))
        return signalPassFailure();
      any = true;
    }
    if (any)
      module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), UnitAttr::get(&getContext()));
  }
};
} // namespace
