//===- AttnLowerToCpu.cpp - attn-lower-to-cpu: the pass -------------------===//
//
// Lowers the tile-level attn ops (copy_tile, tile_matmul, tile_mask,
// tile_bias, tile_softmax, tile_store) to scf/vector/memref/arith/math for a
// SIMD CPU, `vector-width` f32 lanes per vector (16 = AVX-512):
//
//  * tile_matmul (CpuMatmul.cpp): a register-blocked outer-product
//    micro-kernel. A block of MR rows x NR vectors of `c` lives in vector
//    accumulators carried through the K loop (scf.for iter_args); each step
//    loads NR vectors of row k of `b`, broadcasts a[i, k] and issues MR x NR
//    `vector.fma`. Q K^T uses K copied transposed, so both matmuls of
//    attention have this shape.
//  * tile_softmax (CpuSoftmax.cpp): per row, vector max / exp / sum with
//    `vector.reduction`; `math.exp` is replaced by upstream's polynomial
//    approximation (no libm calls). Rows whose running max is -inf give
//    p = 0 and alpha = 1.
//  * copy_tile (CpuCopies.cpp): vectorized conversion (f16/bf16/f64 -> f32),
//    scaling and zero-filling of the rows past `valid`; the transposed layout
//    moves W x W blocks through registers with a shuffle transpose.
//  * tile_softcap / tile_alibi (CpuScores.cpp): cap * tanh(s / cap) with an
//    approximated tanh; -slope * |i + offset - j| per row, vectorized.
//  * tile_mask / tile_bias / tile_store (CpuSoftmax.cpp): per-row vector
//    selects, masked loads and normalized, converting stores.
//  * tile_lse / tile_combine (CpuSplitKv.cpp): log-sum-exp rows and the
//    split-KV combine (LSE-weighted sum of the partial outputs).
//  * `pairs` tile_matmul and tile_convert (CpuAmx.cpp): bf16 matmuls on AMX
//    tiles (option `amx`) or vdpbf16ps (option `bf16-dot`, CpuBf16Dot.cpp), P
//    rounded to bf16; `pairs` copy_tile (CpuCopies.cpp).
//
// Tile buffers may be strided subviews (attn-pipeline's multi-buffers) as
// long as their innermost dimension is static with unit stride. Unsupported
// shapes and element types are reported as diagnostics before anything is
// rewritten. linalg.fill on the buffers is left to convert-linalg-to-loops.
// Each function that held tile ops gets `attn.arg_types`, its argument types,
// which survive the LLVM conversion for the runtime's argument checks.
//
// This file holds the checks and the pass; the emission helpers are
// CpuLowering.h's (on top of IRBuild.h).
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include <functional>

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERTOCPU
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::cpu_lowering;

namespace {

//===----------------------------------------------------------------------===//
// Checks (run on every op before anything is rewritten)
//===----------------------------------------------------------------------===//

/// fp8 (E4M3FN, E5M2) only as loaded: K/V caches, dequantized on the way in
/// (CpuEmitter::fp8ToF32); the frontend never stores one.
bool isSupportedFloat(Type t) {
  return t.isF16() || t.isBF16() || t.isF32() || t.isF64() ||
         isa<Float8E4M3FNType, Float8E5M2Type>(t);
}

LogicalResult checkElementType(Operation *op, StringRef what, MemRefType t) {
  if (isSupportedFloat(t.getElementType()))
    return success();
  return op->emitOpError("attn-lower-to-cpu: ")
         << what << " element type " << t.getElementType()
         << " is not supported (expected f16, bf16, f32, f64, f8E4M3FN or f8E5M2)";
}

/// A tile buffer needs a static column count (vector widths are static) and
/// unit column stride (rows are contiguous vectors).
LogicalResult checkTile(Operation *op, StringRef what, MemRefType t) {
  if (failed(checkElementType(op, what, t)))
    return failure();
  if (ShapedType::isDynamic(t.getShape().back()))
    return op->emitOpError("attn-lower-to-cpu: ")
           << what << " needs a static innermost dimension, got " << t;
  if (!hasUnitInnerStride(t))
    return op->emitOpError("attn-lower-to-cpu: ")
           << what << " needs a unit-stride innermost dimension, got " << t;
  return success();
}

/// A [B, H, L, D] tensor is read or written one row of D at a time.
LogicalResult checkTensor(Operation *op, StringRef what, MemRefType t) {
  if (failed(checkElementType(op, what, t)))
    return failure();
  if (!hasUnitInnerStride(t))
    return op->emitOpError("attn-lower-to-cpu: ")
           << what << " needs a unit-stride innermost dimension, got " << t;
  return success();
}

LogicalResult check(Operation *op, int64_t W, bool amx, bool bf16Dot) {
  // Each op's operands, checked in order; the first failure has emitted.
  auto all = [](std::initializer_list<std::function<LogicalResult()>> checks) {
    for (auto &c : checks)
      if (failed(c()))
        return failure();
    return success();
  };
  if (auto copy = dyn_cast<CopyTileOp>(op))
    return all({[&] { return checkTensor(op, "source", copy.getSource().getType()); },
                [&] { return checkTile(op, "destination tile", copy.getDest().getType()); },
                [&] {
                  return copy.getPairs() ? checkPairsCopy(op, copy.getDest().getType(),
                                                          copy.getTransposed(), W)
                                         : success();
                }});
  if (auto g = dyn_cast<GatherTileOp>(op))
    return all({[&] { return checkTensor(op, "source", g.getSource().getType()); },
                [&] { return checkTile(op, "destination tile", g.getDest().getType()); },
                [&] {
                  return g.getPairs() ? checkPairsCopy(op, g.getDest().getType(),
                                                       g.getTransposed(), W)
                                      : success();
                }});
  if (auto mm = dyn_cast<TileMatmulOp>(op))
    return all({[&] { return checkTile(op, "a", mm.getA().getType()); },
                [&] { return checkTile(op, "b", mm.getB().getType()); },
                [&] { return checkTile(op, "c", mm.getC().getType()); },
                [&]() -> LogicalResult {
                  if (!mm.getPairs())
                    return success();
                  if (mm.pairsInPlace())
                    return bf16Dot ? checkBf16DotMatmul(mm, W)
                                   : op->emitOpError("attn-lower-to-cpu: pairs on K/V rows "
                                                     "read in place (kv-in-place) need the "
                                                     "bf16-dot option (vdpbf16ps)");
                  if (amx)
                    return checkAmxMatmul(mm);
                  if (bf16Dot)
                    return checkBf16DotMatmul(mm, W);
                  return op->emitOpError("attn-lower-to-cpu: a pairs tile_matmul needs "
                                         "the amx or bf16-dot option (a target with AMX bf16 "
                                         "or AVX-512-BF16)");
                }});
  if (auto cv = dyn_cast<TileConvertOp>(op))
    return all({[&] { return checkTile(op, "source", cv.getSource().getType()); },
                [&] { return checkTile(op, "destination", cv.getDest().getType()); }});
  if (auto mask = dyn_cast<TileMaskOp>(op))
    return checkTile(op, "scores", mask.getScores().getType());
  if (auto bias = dyn_cast<TileBiasOp>(op))
    return all({[&] { return checkTile(op, "scores", bias.getScores().getType()); },
                [&] { return checkElementType(op, "bias", bias.getBias().getType()); }});
  if (auto sm = dyn_cast<TileSoftmaxOp>(op))
    return all({[&] { return checkTile(op, "scores", sm.getScores().getType()); },
                [&] { return checkTile(op, "acc", sm.getAcc().getType()); }});
  if (auto sc = dyn_cast<TileSoftcapOp>(op))
    return checkTile(op, "scores", sc.getScores().getType());
  if (auto al = dyn_cast<TileAlibiOp>(op))
    return checkTile(op, "scores", al.getScores().getType());
  if (auto st = dyn_cast<TileStoreOp>(op))
    return all({[&] { return checkTile(op, "acc", st.getAcc().getType()); },
                [&] { return checkTensor(op, "destination", st.getDest().getType()); }});
  if (auto cb = dyn_cast<TileCombineOp>(op))
    return all({[&] { return checkTile(op, "part", cb.getPart().getType()); },
                [&] { return checkTensor(op, "destination", cb.getDest().getType()); }});
  return success();
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct AttnLowerToCpuPass : mlir::attn::impl::AttnLowerToCpuBase<AttnLowerToCpuPass> {
  using AttnLowerToCpuBase::AttnLowerToCpuBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    int64_t W = vectorWidth;
    if (W < 1 || W > 64 || (W & (W - 1))) {
      module.emitError("attn-lower-to-cpu: vector-width must be a power of two in [1, 64], got ")
          << W;
      return signalPassFailure();
    }
    int64_t mr = microRows, nr = microVectors;
    if (mr < 1 || mr > 16 || nr < 1 || nr > 16) {
      module.emitError("attn-lower-to-cpu: micro-rows and micro-vectors must be in [1, 16], got ")
          << mr << " x " << nr;
      return signalPassFailure();
    }
    Builder builder(&getContext());
    SmallVector<NamedAttribute> cpu = {
        builder.getNamedAttr("vector_width", builder.getI64IntegerAttr(W)),
        builder.getNamedAttr("micro_kernel",
                             builder.getDenseI64ArrayAttr({mr, nr}))};
    if (!isaName.empty())
      cpu.push_back(builder.getNamedAttr("isa", builder.getStringAttr(isaName)));
    if (amx)
      cpu.push_back(builder.getNamedAttr("amx", builder.getUnitAttr()));
    else if (bf16Dot)
      cpu.push_back(builder.getNamedAttr("bf16_dot", builder.getUnitAttr()));

    // Check everything first, so that a failure leaves the IR untouched.
    SmallVector<Operation *> tileOps;
    bool ok = true;
    module.walk([&](Operation *op) {
      if (!isa<CopyTileOp, GatherTileOp, TileMatmulOp, TileMaskOp, TileBiasOp, TileSoftmaxOp,
               TileStoreOp, TileSoftcapOp, TileAlibiOp, TileLseOp, TileCombineOp,
               TileConvertOp>(op))
        return;
      tileOps.push_back(op);
      ok &= succeeded(check(op, W, amx, bf16Dot));
    });
    if (!ok)
      return signalPassFailure();

    SmallVector<Operation *> exps;
    llvm::SetVector<Operation *> funcs;
    // A tile_convert right after the softmax of its source (the bf16 P of
    // the pairs form) is fused into it: p is rounded as it is stored, and
    // the f32 p is never written.
    llvm::SmallPtrSet<Operation *, 8> fused;
    for (Operation *op : tileOps) {
      if (fused.contains(op)) {
        op->erase();
        continue;
      }
      ImplicitLocOpBuilder b(op->getLoc(), op);
      CpuEmitter e(b, W, mr, nr, exps);
      if (auto o = dyn_cast<CopyTileOp>(op))
        lowerCopy(e, o);
      else if (auto o = dyn_cast<GatherTileOp>(op))
        lowerGather(e, o);
      else if (auto o = dyn_cast<TileMatmulOp>(op))
        !o.getPairs()                  ? lowerMatmul(e, o)
        : amx && !o.pairsInPlace()     ? lowerMatmulAmx(e, o)
                                       : lowerMatmulBf16Dot(e, o);
      else if (auto o = dyn_cast<TileConvertOp>(op))
        lowerConvert(e, o);
      else if (auto o = dyn_cast<TileMaskOp>(op))
        lowerMask(e, o);
      else if (auto o = dyn_cast<TileBiasOp>(op))
        lowerBias(e, o);
      else if (auto o = dyn_cast<TileSoftmaxOp>(op)) {
        auto cv = dyn_cast_or_null<TileConvertOp>(op->getNextNode());
        if (cv && cv.getSource() == o.getScores()) {
          fused.insert(cv);
          lowerSoftmax(e, o, cv.getDest());
        } else {
          lowerSoftmax(e, o);
        }
      }
      else if (auto o = dyn_cast<TileStoreOp>(op))
        lowerStore(e, o);
      else if (auto o = dyn_cast<TileSoftcapOp>(op))
        lowerSoftcap(e, o);
      else if (auto o = dyn_cast<TileAlibiOp>(op))
        lowerAlibi(e, o);
      else if (auto o = dyn_cast<TileLseOp>(op))
        lowerLse(e, o);
      else if (auto o = dyn_cast<TileCombineOp>(op))
        lowerCombine(e, o);
      if (auto f = op->getParentOfType<FunctionOpInterface>())
        funcs.insert(f);
      op->erase();
    }

    if (!funcs.empty())
      module->setAttr("attn.cpu", builder.getDictionaryAttr(cpu));
    for (Operation *f : funcs) {
      // Tile buffers: cache-line aligned, so that vector rows do not split lines.
      f->walk([&](memref::AllocOp alloc) {
        if (!alloc.getAlignment())
          alloc.setAlignment(64);
      });
      // The kernel's memref signature, for the runtime: the LLVM conversion
      // erases static shapes, layouts and element types from the arguments.
      auto fn = cast<FunctionOpInterface>(f);
      SmallVector<Attribute> types;
      for (Type t : fn.getArgumentTypes())
        types.push_back(TypeAttr::get(t));
      f->setAttr("attn.arg_types", ArrayAttr::get(&getContext(), types));
    }

    // Fast exp and tanh (soft-capping): upstream's polynomial approximations
    // (f32, scalar and vector), so that the JIT never calls libm.
    if (!exps.empty()) {
      RewritePatternSet patterns(&getContext());
      populateMathPolynomialApproximationPatterns(
          patterns, [](StringRef name) {
            return name == math::ExpOp::getOperationName() ||
                   name == math::TanhOp::getOperationName() ||
                   name == math::LogOp::getOperationName();
          });
      GreedyRewriteConfig config;
      config.setStrictness(GreedyRewriteStrictness::ExistingAndNewOps);
      if (failed(applyOpPatternsGreedily(exps, std::move(patterns), config))) {
        module.emitError("attn-lower-to-cpu: exp approximation did not converge");
        return signalPassFailure();
      }
    }
  }
};

} // namespace
