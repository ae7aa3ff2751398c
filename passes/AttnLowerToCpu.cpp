//===- AttnLowerToCpu.cpp - attn-lower-to-cpu -----------------------------===//
//
// Lowers the tile-level attn ops (copy_tile, tile_matmul, tile_mask,
// tile_bias, tile_softmax, tile_store) to scf/vector/memref/arith/math for a
// SIMD CPU, `vector-width` f32 lanes per vector (16 = AVX-512):
//
//  * tile_matmul: a register-blocked outer-product micro-kernel. A block of
//    MR rows x NR vectors of `c` lives in vector accumulators carried through
//    the K loop (scf.for iter_args); each step loads NR vectors of row k of
//    `b`, broadcasts a[i, k] and issues MR x NR `vector.fma`. Q K^T uses K
//    copied transposed, so both matmuls of attention have this shape.
//  * tile_softmax: per row, vector max / exp / sum with `vector.reduction`;
//    `math.exp` is replaced by upstream's polynomial approximation (no libm
//    calls). Rows whose running max is -inf give p = 0 and alpha = 1.
//  * copy_tile: vectorized conversion (f16/bf16/f64 -> f32), scaling and
//    zero-filling of the rows past `valid`; the transposed layout moves
//    W x W blocks through registers with a shuffle transpose.
//  * tile_mask / tile_bias / tile_store: per-row vector selects, masked
//    loads and normalized, converting stores.
//
// Tile buffers may be strided subviews (attn-pipeline's multi-buffers) as
// long as their innermost dimension is static with unit stride. Unsupported
// shapes and element types are reported as diagnostics before anything is
// rewritten. linalg.fill on the buffers is left to convert-linalg-to-loops.
// Each function that held tile ops gets `attn.arg_types`, its argument types,
// which survive the LLVM conversion for the runtime's argument checks.
//
//===----------------------------------------------------------------------===//
#include "passes/IRBuild.h"
#include "passes/Passes.h"

#include <functional>

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/STLExtras.h"

#include <limits>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERTOCPU
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Chunk loops over at most this many vectors are unrolled in the IR; longer
/// rows get an scf.for.
constexpr int64_t kMaxUnrolledChunks = 2;

//===----------------------------------------------------------------------===//
// Checks (run on every op before anything is rewritten)
//===----------------------------------------------------------------------===//

bool isSupportedFloat(Type t) { return t.isF16() || t.isBF16() || t.isF32() || t.isF64(); }

LogicalResult checkElementType(Operation *op, StringRef what, MemRefType t) {
  if (isSupportedFloat(t.getElementType()))
    return success();
  return op->emitOpError("attn-lower-to-cpu: ")
         << what << " element type " << t.getElementType()
         << " is not supported (expected f16, bf16, f32 or f64)";
}

bool hasUnitInnerStride(MemRefType t) {
  if (t.getRank() == 0)
    return true;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(t.getStridesAndOffset(strides, offset)))
    return false;
  return strides.back() == 1;
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

LogicalResult check(Operation *op) {
  // Each op's operands, checked in order; the first failure has emitted.
  auto all = [](std::initializer_list<std::function<LogicalResult()>> checks) {
    for (auto &c : checks)
      if (failed(c()))
        return failure();
    return success();
  };
  if (auto copy = dyn_cast<CopyTileOp>(op))
    return all({[&] { return checkTensor(op, "source", copy.getSource().getType()); },
                [&] { return checkTile(op, "destination tile", copy.getDest().getType()); }});
  if (auto mm = dyn_cast<TileMatmulOp>(op))
    return all({[&] { return checkTile(op, "a", mm.getA().getType()); },
                [&] { return checkTile(op, "b", mm.getB().getType()); },
                [&] { return checkTile(op, "c", mm.getC().getType()); }});
  if (auto mask = dyn_cast<TileMaskOp>(op))
    return checkTile(op, "scores", mask.getScores().getType());
  if (auto bias = dyn_cast<TileBiasOp>(op))
    return all({[&] { return checkTile(op, "scores", bias.getScores().getType()); },
                [&] { return checkElementType(op, "bias", bias.getBias().getType()); }});
  if (auto sm = dyn_cast<TileSoftmaxOp>(op))
    return all({[&] { return checkTile(op, "scores", sm.getScores().getType()); },
                [&] { return checkTile(op, "acc", sm.getAcc().getType()); }});
  if (auto st = dyn_cast<TileStoreOp>(op))
    return all({[&] { return checkTile(op, "acc", st.getAcc().getType()); },
                [&] { return checkTensor(op, "destination", st.getDest().getType()); }});
  return success();
}

//===----------------------------------------------------------------------===//
// Emission helpers
//===----------------------------------------------------------------------===//

/// The CPU's vector helpers, on top of the target-neutral IRBuild (scalar
/// constants, index arithmetic, dims, loops, branches). `ib` is the same
/// builder as IRBuild::b, at the lowered op's location.
struct CpuEmitter : IRBuild {
  ImplicitLocOpBuilder &ib;
  int64_t W;                           // f32 lanes per vector
  int64_t MR, NR;                      // matmul register block: rows x vectors
  SmallVectorImpl<Operation *> &exps;  // math.exp ops to approximate

  CpuEmitter(ImplicitLocOpBuilder &ib, int64_t W, int64_t MR, int64_t NR,
             SmallVectorImpl<Operation *> &exps)
      : IRBuild{ib, ib.getLoc()}, ib(ib), W(W), MR(MR), NR(NR), exps(exps) {}

  Type f32Type() { return ib.getF32Type(); }
  VectorType vec(int64_t n, Type t = {}) { return VectorType::get({n}, t ? t : f32Type()); }

  Value splat(double v, int64_t n) {
    return arith::ConstantOp::create(
        ib, DenseElementsAttr::get(vec(n), ib.getFloatAttr(f32Type(), v)));
  }
  Value bcast(Value scalar, int64_t n) { return vector::BroadcastOp::create(ib, vec(n), scalar); }

  /// Converts a float scalar or vector to element type `to` (extf / truncf;
  /// f16 <-> bf16 through f32).
  Value convert(Value v, Type to) {
    Type from = getElementTypeOrSelf(v.getType());
    if (from == to)
      return v;
    Type target = to;
    if (auto vt = dyn_cast<VectorType>(v.getType()))
      target = vt.clone(to);
    unsigned wf = cast<FloatType>(from).getWidth(), wt = cast<FloatType>(to).getWidth();
    if (wf < wt)
      return arith::ExtFOp::create(ib, target, v);
    if (wf > wt)
      return arith::TruncFOp::create(ib, target, v);
    return convert(convert(v, f32Type()), to);
  }

  Value exp(Value v) {
    auto e = math::ExpOp::create(ib, v);
    exps.push_back(e);
    return e;
  }

  /// Loads `n` elements at `indices` as an f32 vector.
  Value loadF32(Value memref, ValueRange indices, int64_t n) {
    Type et = cast<MemRefType>(memref.getType()).getElementType();
    Value v = vector::LoadOp::create(ib, vec(n, et), memref, indices);
    return convert(v, f32Type());
  }
  void storeF32(Value v, Value memref, ValueRange indices) {
    Type et = cast<MemRefType>(memref.getType()).getElementType();
    vector::StoreOp::create(ib, convert(v, et), memref, indices);
  }
  Value loadScalarF32(Value memref, ValueRange indices) {
    return convert(memref::LoadOp::create(ib, memref, indices), f32Type());
  }
  void storeScalarF32(Value v, Value memref, ValueRange indices) {
    Type et = cast<MemRefType>(memref.getType()).getElementType();
    memref::StoreOp::create(ib, convert(v, et), memref, indices);
  }

  /// Visits the columns [0, n) of a row in chunks: full chunks of W lanes
  /// (unrolled in the IR when there are few, an scf.for otherwise) threading
  /// `init` through `full(col, carried)`, then one tail chunk of n % W lanes
  /// (`tail(col, width, carried)`, may be null when n % W == 0).
  SmallVector<Value>
  chunks(int64_t n, ValueRange init,
         function_ref<SmallVector<Value>(Value col, ValueRange carried)> full,
         function_ref<SmallVector<Value>(Value col, int64_t width, ValueRange carried)> tail) {
    int64_t count = n / W, rem = n % W;
    SmallVector<Value> carried(init.begin(), init.end());
    if (count <= kMaxUnrolledChunks) {
      for (int64_t c = 0; c < count; ++c)
        carried = full(idx(c * W), carried);
    } else {
      carried = loop(idx(0), idx(count * W), idx(W), carried, full);
    }
    if (rem)
      carried = tail(idx(count * W), rem, carried);
    return carried;
  }
  /// Same without carried values: `body(col, width)` for every chunk.
  void chunks(int64_t n, function_ref<void(Value col, int64_t width)> body) {
    chunks(
        n, {},
        [&](Value col, ValueRange) -> SmallVector<Value> {
          body(col, W);
          return {};
        },
        [&](Value col, int64_t width, ValueRange) -> SmallVector<Value> {
          body(col, width);
          return {};
        });
  }

  /// The i32 vector [c0, c0 + 1, ..., c0 + w - 1]: a constant when the chunk
  /// offset is (unrolled chunks), otherwise an iota plus a broadcast.
  Value columnIndices(Value c0, int64_t w) {
    VectorType vi = vec(w, ib.getI32Type());
    int64_t base = 0;
    auto cst = c0.getDefiningOp<arith::ConstantIndexOp>();
    if (cst)
      base = cst.value();
    SmallVector<int32_t> iota;
    for (int64_t t = 0; t < w; ++t)
      iota.push_back(static_cast<int32_t>(base + t));
    Value j = arith::ConstantOp::create(ib, DenseElementsAttr::get(vi, ArrayRef<int32_t>(iota)));
    if (cst)
      return j;
    Value c32 = arith::IndexCastOp::create(ib, ib.getI32Type(), c0);
    return arith::AddIOp::create(ib, j, vector::BroadcastOp::create(ib, vi, c32));
  }

  Value reduce(vector::CombiningKind kind, Value v) {
    auto fm = kind == vector::CombiningKind::ADD ? arith::FastMathFlags::reassoc
                                                 : arith::FastMathFlags::nnan;
    return vector::ReductionOp::create(ib, kind, v, fm);
  }
  /// max(x, y) as `x > y ? x : y`: one vmaxps on x86 (arith.maxnumf keeps
  /// its NaN checks in the LLVM lowering even with fastmath<nnan>).
  Value vmax(Value x, Value y) {
    return arith::SelectOp::create(ib, arith::CmpFOp::create(ib, arith::CmpFPredicate::OGT, x, y),
                                   x, y);
  }
};

//===----------------------------------------------------------------------===//
// tile_matmul
//===----------------------------------------------------------------------===//

/// One register block: rows [i0, i0 + mr) x `nv` vectors of `w` lanes at
/// column `col0` of c, accumulated over k in [0, K).
void emitMatmulBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, int64_t col0,
                     int64_t nv, int64_t w, Value K) {
  ImplicitLocOpBuilder &b = e.ib;
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  SmallVector<Value> rows, cols;
  for (int64_t r = 0; r < mr; ++r)
    rows.push_back(r == 0 ? i0 : e.addi(i0, e.idx(r)));
  for (int64_t j = 0; j < nv; ++j)
    cols.push_back(e.idx(col0 + j * w));

  SmallVector<Value> init;
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j)
      init.push_back(op.getAccumulate() ? e.loadF32(c, {rows[r], cols[j]}, w) : e.splat(0.0, w));

  SmallVector<Value> res =
      e.loop(e.idx(0), K, e.idx(1), init, [&](Value k, ValueRange acc) -> SmallVector<Value> {
        SmallVector<Value> bv;
        for (int64_t j = 0; j < nv; ++j)
          bv.push_back(e.loadF32(bm, {k, cols[j]}, w));
        SmallVector<Value> next(acc.begin(), acc.end());
        for (int64_t r = 0; r < mr; ++r) {
          Value av = e.bcast(e.loadScalarF32(a, {rows[r], k}), w);
          for (int64_t j = 0; j < nv; ++j)
            next[r * nv + j] = vector::FMAOp::create(b, av, bv[j], next[r * nv + j]);
        }
        return next;
      });
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j)
      e.storeF32(res[r * nv + j], c, {rows[r], cols[j]});
}

void lowerMatmul(CpuEmitter &e, TileMatmulOp op) {
  int64_t W = e.W;
  Value c = op.getC();
  int64_t N = e.staticDim(c, 1);
  Value M = e.dim(c, 0), K = e.dim(op.getA(), 1);
  auto cType = cast<MemRefType>(c.getType());

  // Column groups: up to NR full vectors each, then the N % W tail.
  struct Group { int64_t col, nv, w; };
  SmallVector<Group> groups;
  int64_t full = N / W;
  for (int64_t j = 0; j < full;) {
    int64_t nv = std::min<int64_t>(e.NR, full - j);
    groups.push_back({j * W, nv, W});
    j += nv;
  }
  if (N % W)
    groups.push_back({full * W, 1, N % W});

  for (const Group &g : groups) {
    // Rows per block: as many as the accumulator budget MR x NR allows (on
    // AVX-512, 6 rows x 4 vectors for 64 columns: 24 accumulators, 10 loads
    // per 24 FMAs; measured ~5% faster than 4 x 4, 7 or 8 rows spill). A
    // narrower group gets more rows, at most 8.
    int64_t mr = std::max<int64_t>(1, std::min<int64_t>(8, e.MR * e.NR / g.nv));
    if (!cType.isDynamicDim(0))
      mr = std::min(mr, std::max<int64_t>(1, cType.getDimSize(0)));
    // Full row blocks, then the remaining rows one block (static M) or one
    // row at a time (dynamic M).
    Value mFull;
    if (!cType.isDynamicDim(0)) {
      int64_t m = cType.getDimSize(0);
      mFull = e.idx(m - m % mr);
      e.loop(e.idx(0), mFull, e.idx(mr),
             [&](Value i0) { emitMatmulBlock(e, op, i0, mr, g.col, g.nv, g.w, K); });
      if (m % mr)
        emitMatmulBlock(e, op, mFull, m % mr, g.col, g.nv, g.w, K);
    } else {
      mFull = arith::MulIOp::create(e.ib, arith::DivUIOp::create(e.ib, M, e.idx(mr)), e.idx(mr));
      e.loop(e.idx(0), mFull, e.idx(mr),
             [&](Value i0) { emitMatmulBlock(e, op, i0, mr, g.col, g.nv, g.w, K); });
      e.loop(mFull, M, e.idx(1),
             [&](Value i) { emitMatmulBlock(e, op, i, 1, g.col, g.nv, g.w, K); });
    }
  }
}

//===----------------------------------------------------------------------===//
// tile_softmax
//===----------------------------------------------------------------------===//

/// Reduces n vectors of n lanes (n a power of two) to one vector whose lane r
/// is the reduction of vector r: log2(n) rounds; each combines vectors r and
/// r + h with two shuffles, so that lanes with bit h clear carry row r and
/// lanes with bit h set carry row r + h, each summed over a pair of columns.
Value transposeReduce(ImplicitLocOpBuilder &b, SmallVector<Value> rows,
                      function_ref<Value(Value, Value)> combine) {
  int64_t n = rows.size();
  for (int64_t h = n / 2; h >= 1; h /= 2) {
    SmallVector<int64_t> lowMask, highMask;
    for (int64_t j = 0; j < n; ++j) {
      bool upper = j & h;
      lowMask.push_back(upper ? n + (j - h) : j);
      highMask.push_back(upper ? n + j : j + h);
    }
    SmallVector<Value> next;
    for (int64_t r = 0; r < h; ++r) {
      Value lo = vector::ShuffleOp::create(b, rows[r], rows[r + h], lowMask);
      Value hi = vector::ShuffleOp::create(b, rows[r], rows[r + h], highMask);
      next.push_back(combine(lo, hi));
    }
    rows = std::move(next);
  }
  return rows[0];
}

/// One row at a time: horizontal reductions with vector.reduction and a scalar
/// exp for alpha. Used for rows that do not fill a group of W.
void emitSoftmaxRow(CpuEmitter &e, TileSoftmaxOp op, Value i) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = e.W;
  Value s = op.getScores(), mx = op.getMax(), sm = op.getSum(), acc = op.getAcc();
  int64_t C = e.staticDim(s, 1), Dv = e.staticDim(acc, 1);
  const double ninf = -std::numeric_limits<double>::infinity();
  using Kind = vector::CombiningKind;

  Value mOld = memref::LoadOp::create(b, mx, ValueRange{i});
  Value lOld = memref::LoadOp::create(b, sm, ValueRange{i});

  // Row max: one W-lane running max over the full chunks, the tail reduced
  // on its own.
  Value tailMax = mOld;
  SmallVector<Value> runMax = e.chunks(
      C, {e.splat(ninf, W)},
      [&](Value col, ValueRange m) -> SmallVector<Value> {
        return {e.vmax(m[0], e.loadF32(s, {i, col}, W))};
      },
      [&](Value col, int64_t w, ValueRange m) -> SmallVector<Value> {
        tailMax = e.vmax(tailMax, e.reduce(Kind::MAXNUMF, e.loadF32(s, {i, col}, w)));
        return {m[0]};
      });
  Value mNew = C >= W ? e.vmax(tailMax, e.reduce(Kind::MAXNUMF, runMax[0])) : tailMax;

  // While the max is -inf every score of the row is -inf so far: p = 0,
  // alpha = 1 (subtracting 0 instead of -inf avoids -inf - -inf = NaN).
  Value dead = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, e.f32(ninf));
  Value mUse = arith::SelectOp::create(b, dead, e.f32(0.0), mNew);
  Value alpha = arith::SelectOp::create(
      b, dead, e.f32(1.0), e.exp(arith::SubFOp::create(b, mOld, mUse)));

  // p = exp(s - m), written back; row sum.
  Value tailSum = e.f32(0.0);
  auto expChunk = [&](Value col, int64_t w) {
    Value p = e.exp(arith::SubFOp::create(b, e.loadF32(s, {i, col}, w), e.bcast(mUse, w)));
    e.storeF32(p, s, {i, col});
    return p;
  };
  SmallVector<Value> runSum = e.chunks(
      C, {e.splat(0.0, W)},
      [&](Value col, ValueRange acc) -> SmallVector<Value> {
        return {arith::AddFOp::create(b, acc[0], expChunk(col, W))};
      },
      [&](Value col, int64_t w, ValueRange acc) -> SmallVector<Value> {
        tailSum = e.reduce(Kind::ADD, expChunk(col, w));
        return {acc[0]};
      });
  Value rowSum = C >= W ? arith::AddFOp::create(b, e.reduce(Kind::ADD, runSum[0]), tailSum)
                        : tailSum;
  Value lNew = math::FmaOp::create(b, lOld, alpha, rowSum);
  memref::StoreOp::create(b, lNew, sm, ValueRange{i});
  memref::StoreOp::create(b, mNew, mx, ValueRange{i});

  // acc[i, :] *= alpha
  e.chunks(Dv, [&](Value col, int64_t w) {
    Value v = arith::MulFOp::create(b, e.loadF32(acc, {i, col}, w), e.bcast(alpha, w));
    e.storeF32(v, acc, {i, col});
  });
}

/// W rows at once: per row a W-lane running max / sum, then one
/// transposeReduce gives the W row maxima (sums) as one vector, so that the
/// max/alpha/sum bookkeeping is vector code (one vector exp for W alphas
/// instead of W scalar ones) and no reduction sits on a row's critical path.
void emitSoftmaxGroup(CpuEmitter &e, TileSoftmaxOp op, Value r0) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = e.W;
  Value s = op.getScores(), mx = op.getMax(), sm = op.getSum(), acc = op.getAcc();
  int64_t C = e.staticDim(s, 1), Dv = e.staticDim(acc, 1);
  const double ninf = -std::numeric_limits<double>::infinity();

  SmallVector<Value> rows;
  for (int64_t r = 0; r < W; ++r)
    rows.push_back(r == 0 ? r0 : e.addi(r0, e.idx(r)));
  auto lane = [&](Value v, int64_t r) {
    return vector::ShuffleOp::create(b, v, v, SmallVector<int64_t>(W, r));
  };
  auto vmaxOp = [&](Value x, Value y) { return e.vmax(x, y); };
  auto addOp = [&](Value x, Value y) -> Value { return arith::AddFOp::create(b, x, y); };

  Value mOld = e.loadF32(mx, {r0}, W), lOld = e.loadF32(sm, {r0}, W);
  SmallVector<Value> rowMax;
  for (int64_t r = 0; r < W; ++r)
    rowMax.push_back(e.chunks(
        C, {e.splat(ninf, W)},
        [&](Value col, ValueRange m) -> SmallVector<Value> {
          return {e.vmax(m[0], e.loadF32(s, {rows[r], col}, W))};
        },
        nullptr)[0]);
  Value mNew = e.vmax(mOld, transposeReduce(b, rowMax, vmaxOp));
  Value dead = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, e.splat(ninf, W));
  Value mUse = arith::SelectOp::create(b, dead, e.splat(0.0, W), mNew);
  Value alpha = arith::SelectOp::create(b, dead, e.splat(1.0, W),
                                        e.exp(arith::SubFOp::create(b, mOld, mUse)));
  e.storeF32(mNew, mx, {r0});

  SmallVector<Value> rowSum;
  for (int64_t r = 0; r < W; ++r) {
    Value m = lane(mUse, r);
    rowSum.push_back(e.chunks(
        C, {e.splat(0.0, W)},
        [&](Value col, ValueRange sum) -> SmallVector<Value> {
          Value p = e.exp(arith::SubFOp::create(b, e.loadF32(s, {rows[r], col}, W), m));
          e.storeF32(p, s, {rows[r], col});
          return {arith::AddFOp::create(b, sum[0], p)};
        },
        nullptr)[0]);
  }
  Value lNew = math::FmaOp::create(b, lOld, alpha, transposeReduce(b, rowSum, addOp));
  e.storeF32(lNew, sm, {r0});

  for (int64_t r = 0; r < W; ++r) {
    Value a = lane(alpha, r);
    e.chunks(Dv, [&](Value col, int64_t w) {
      Value ab = w == W ? a : vector::ShuffleOp::create(b, a, a, SmallVector<int64_t>(w, 0));
      Value v = arith::MulFOp::create(b, e.loadF32(acc, {rows[r], col}, w), ab);
      e.storeF32(v, acc, {rows[r], col});
    });
  }
}

void lowerSoftmax(CpuEmitter &e, TileSoftmaxOp op) {
  int64_t W = e.W;
  Value s = op.getScores();
  int64_t C = e.staticDim(s, 1);
  auto unit = [](Value v) { return hasUnitInnerStride(cast<MemRefType>(v.getType())); };
  // Groups need whole vectors per row and vector access to max/sum.
  bool grouped = W >= 2 && C % W == 0 && C >= W && unit(op.getMax()) && unit(op.getSum());
  auto sType = cast<MemRefType>(s.getType());
  Value R = e.dim(s, 0), rGroups = e.idx(0);
  if (grouped) {
    rGroups = !sType.isDynamicDim(0)
                  ? e.idx(sType.getDimSize(0) - sType.getDimSize(0) % W)
                  : arith::MulIOp::create(e.ib, arith::DivUIOp::create(e.ib, R, e.idx(W)), e.idx(W));
    e.loop(e.idx(0), rGroups, e.idx(W), [&](Value r0) { emitSoftmaxGroup(e, op, r0); });
  }
  if (!grouped || sType.isDynamicDim(0) || sType.getDimSize(0) % W)
    e.loop(rGroups, R, e.idx(1), [&](Value i) { emitSoftmaxRow(e, op, i); });
}

//===----------------------------------------------------------------------===//
// tile_mask
//===----------------------------------------------------------------------===//

void lowerMask(CpuEmitter &e, TileMaskOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value s = op.getScores();
  int64_t C = e.staticDim(s, 1);
  Value cC = e.idx(C);
  Value row = op.getRow(), col = op.getCol();
  MaskKind kind = op.getKind();
  bool causal = kind == MaskKind::causal || kind == MaskKind::sliding_window;
  bool window = kind == MaskKind::sliding_window;
  Type i32 = b.getI32Type();
  const double ninf = -std::numeric_limits<double>::infinity();

  // Row i keeps columns j in [lo, hi):
  //   hi = min(valid, C, causal ? row + i - col + 1 : C)
  //   lo = window ? row + i - col - window + 1 : 0
  Value hiValid = e.clamp0(op.getValid(), cC);
  e.loop(e.idx(0), e.dim(s, 0), e.idx(1), [&](Value i) {
    Value diag = e.subi(e.addi(row, i), col); // key offset of the diagonal in this row
    Value hi = hiValid;
    if (causal)
      hi = e.clamp0(e.minsi(hi, e.addi(diag, e.idx(1))), cC);
    Value lo = e.idx(0);
    if (window)
      lo = e.clamp0(e.subi(diag, e.idx(*op.getWindow() - 1)), cC);
    Value lo32 = arith::IndexCastOp::create(b, i32, lo);
    Value hi32 = arith::IndexCastOp::create(b, i32, hi);
    e.chunks(C, [&](Value c0, int64_t w) {
      VectorType vi = e.vec(w, i32);
      Value j = e.columnIndices(c0, w);
      Value before = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, j,
                                           vector::BroadcastOp::create(b, vi, lo32));
      Value after = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, j,
                                          vector::BroadcastOp::create(b, vi, hi32));
      Value masked = arith::OrIOp::create(b, before, after);
      Value v = e.loadF32(s, {i, c0}, w);
      e.storeF32(arith::SelectOp::create(b, masked, e.splat(ninf, w), v), s, {i, c0});
    });
  });
}

//===----------------------------------------------------------------------===//
// tile_bias
//===----------------------------------------------------------------------===//

void lowerBias(CpuEmitter &e, TileBiasOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value s = op.getScores(), bias = op.getBias();
  auto bt = cast<MemRefType>(bias.getType());
  int64_t rank = bt.getRank();
  int64_t C = e.staticDim(s, 1);
  double scale = op.getScale().convertToDouble();
  Value nRows = e.clamp0(op.getValidRows(), e.dim(s, 0));
  Value nCols = e.clamp0(op.getValidCols(), e.idx(C));

  // Bias dim d is dim (4 - rank + d) of [B, H, Lq, Lk]; static extent 1
  // broadcasts.
  auto broadcasts = [&](int64_t full) {
    int64_t d = full - (4 - rank);
    return d < 0 || bt.getDimSize(d) == 1;
  };
  bool keyBroadcast = broadcasts(3);
  bool keyContiguous = !keyBroadcast && hasUnitInnerStride(bt);

  auto scaled = [&](Value v) -> Value {
    if (scale == 1.0)
      return v;
    Value k = isa<VectorType>(v.getType())
                  ? e.splat(scale, cast<VectorType>(v.getType()).getNumElements())
                  : e.f32(scale);
    return arith::MulFOp::create(b, v, k);
  };

  e.loop(e.idx(0), nRows, e.idx(1), [&](Value i) {
    Value full[4] = {op.getBatch(), op.getHead(), e.addi(op.getRow(), i), Value()};
    auto indices = [&](Value key) {
      full[3] = key;
      SmallVector<Value> ind;
      for (int64_t f = 4 - rank; f < 4; ++f)
        ind.push_back(broadcasts(f) ? e.idx(0) : full[f]);
      return ind;
    };
    if (keyContiguous) {
      // Masked vector loads: lanes at or past nCols read nothing and add 0.
      e.chunks(C, [&](Value c0, int64_t w) {
        Value n = e.clamp0(e.subi(nCols, c0), e.idx(w));
        Value at = e.addi(op.getCol(), c0);
        Value bv;
        if (bt.getElementType().getIntOrFloatBitWidth() == 16) {
          // No masked load of 16-bit floats: LLVM legalizes one on hosts
          // without AVX-512 through f32 and back, i.e. a call of
          // __truncsfbf2 the JIT cannot resolve (found by the fuzzer). A
          // full chunk is one vector load, the row's tail scalar loads.
          Value whole = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, n, e.idx(w));
          bv = e.ifElse(
              whole, e.vec(w), [&] { return e.loadF32(bias, indices(at), w); },
              [&] {
                SmallVector<Value> tail = e.loop(
                    e.idx(0), n, e.idx(1), {e.splat(0.0, w)},
                    [&](Value t, ValueRange acc) -> SmallVector<Value> {
                      Value x = e.loadScalarF32(bias, indices(e.addi(at, t)));
                      return {vector::InsertOp::create(b, x, acc[0], OpFoldResult(t))};
                    });
                return tail[0];
              });
        } else {
          // Masked vector loads: lanes at or past nCols read nothing and add 0.
          Value mask = vector::CreateMaskOp::create(b, e.vec(w, b.getI1Type()), ValueRange{n});
          Value pass = arith::ConstantOp::create(
              b, DenseElementsAttr::get(e.vec(w, bt.getElementType()),
                                        b.getFloatAttr(bt.getElementType(), 0.0)));
          bv = e.convert(vector::MaskedLoadOp::create(b, e.vec(w, bt.getElementType()), bias,
                                                      indices(at), mask, pass),
                         e.f32Type());
        }
        Value sv = e.loadF32(s, {i, c0}, w);
        e.storeF32(arith::AddFOp::create(b, sv, scaled(bv)), s, {i, c0});
      });
    } else if (keyBroadcast) {
      // One value per row, added to the columns before nCols.
      Value bvs = scaled(e.loadScalarF32(bias, indices(e.idx(0))));
      Type i32 = b.getI32Type();
      Value n32 = arith::IndexCastOp::create(b, i32, nCols);
      e.chunks(C, [&](Value c0, int64_t w) {
        VectorType vi = e.vec(w, i32);
        Value j = e.columnIndices(c0, w);
        Value in = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, j,
                                         vector::BroadcastOp::create(b, vi, n32));
        Value add = arith::SelectOp::create(b, in, e.bcast(bvs, w), e.splat(0.0, w));
        Value sv = e.loadF32(s, {i, c0}, w);
        e.storeF32(arith::AddFOp::create(b, sv, add), s, {i, c0});
      });
    } else {
      // Strided keys: scalar loop.
      e.loop(e.idx(0), nCols, e.idx(1), [&](Value j) {
        Value bv = scaled(e.loadScalarF32(bias, indices(e.addi(op.getCol(), j))));
        Value sv = memref::LoadOp::create(b, s, ValueRange{i, j});
        memref::StoreOp::create(b, arith::AddFOp::create(b, sv, bv), s, ValueRange{i, j});
      });
    }
  });
}

//===----------------------------------------------------------------------===//
// tile_store
//===----------------------------------------------------------------------===//

void lowerStore(CpuEmitter &e, TileStoreOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value acc = op.getAcc(), sm = op.getSum(), dst = op.getDest();
  int64_t C = e.staticDim(acc, 1);
  Value n = e.clamp0(op.getValid(), e.dim(acc, 0));
  e.loop(e.idx(0), n, e.idx(1), [&](Value i) {
    Value l = memref::LoadOp::create(b, sm, ValueRange{i});
    Value zero = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, l, e.f32(0.0));
    Value inv = arith::SelectOp::create(b, zero, e.f32(0.0),
                                        arith::DivFOp::create(b, e.f32(1.0), l));
    Value r = e.addi(op.getRow(), i);
    e.chunks(C, [&](Value c0, int64_t w) {
      Value v = arith::MulFOp::create(b, e.loadF32(acc, {i, c0}, w), e.bcast(inv, w));
      e.storeF32(v, dst, {op.getBatch(), op.getHead(), r, c0});
    });
  });
}

//===----------------------------------------------------------------------===//
// copy_tile
//===----------------------------------------------------------------------===//

/// Transposes `rows` (n vectors of n lanes, n a power of two) in registers:
/// log2(n) stages, each swapping one bit of the row index with the same bit
/// of the column index through two-source shuffles.
SmallVector<Value> transposeSquare(ImplicitLocOpBuilder &b, SmallVector<Value> rows) {
  int64_t n = rows.size();
  for (int64_t half = n / 2; half >= 1; half /= 2) {
    SmallVector<int64_t> lowMask, highMask;
    for (int64_t j = 0; j < n; ++j) {
      bool upper = j & half;
      lowMask.push_back(upper ? n + (j - half) : j);
      highMask.push_back(upper ? n + j : j + half);
    }
    SmallVector<Value> next(rows);
    for (int64_t i = 0; i < n; ++i) {
      if (i & half)
        continue;
      next[i] = vector::ShuffleOp::create(b, rows[i], rows[i + half], lowMask);
      next[i + half] = vector::ShuffleOp::create(b, rows[i], rows[i + half], highMask);
    }
    rows = std::move(next);
  }
  return rows;
}

void lowerCopy(CpuEmitter &e, CopyTileOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = e.W;
  Value src = op.getSource(), dst = op.getDest();
  std::optional<double> scale;
  if (auto s = op.getScale(); s && s->convertToDouble() != 1.0)
    scale = s->convertToDouble();
  auto scaled = [&](Value v) -> Value {
    if (!scale)
      return v;
    Value k = isa<VectorType>(v.getType())
                  ? e.splat(*scale, cast<VectorType>(v.getType()).getNumElements())
                  : e.f32(*scale);
    return arith::MulFOp::create(b, v, k);
  };
  Value bi = op.getBatch(), hi = op.getHead(), row = op.getRow();

  if (!op.getTransposed()) {
    // dest[r, :] = r < valid ? src[b, h, row + r, :] * scale : 0
    int64_t D = e.staticDim(dst, 1);
    Value R = e.dim(dst, 0);
    Value n = e.clamp0(op.getValid(), R);
    e.loop(e.idx(0), n, e.idx(1), [&](Value r) {
      Value sr = e.addi(row, r);
      e.chunks(D, [&](Value c0, int64_t w) {
        e.storeF32(scaled(e.loadF32(src, {bi, hi, sr, c0}, w)), dst, {r, c0});
      });
    });
    e.loop(n, R, e.idx(1), [&](Value r) {
      e.chunks(D, [&](Value c0, int64_t w) { e.storeF32(e.splat(0.0, w), dst, {r, c0}); });
    });
    return;
  }

  // Transposed: dest[d, r] = r < valid ? src[b, h, row + r, d] * scale : 0.
  // W x W blocks go through registers (W row loads, a shuffle transpose, W
  // row stores); the edges that do not fill a block are copied one element
  // at a time.
  int64_t R = e.staticDim(dst, 1);
  Value D = e.dim(dst, 0);
  Value n = e.clamp0(op.getValid(), e.idx(R));
  int64_t rBlocks = R - R % W;
  Value dBlocks = e.staticDim(dst, 0) != ShapedType::kDynamic
                      ? e.idx(e.staticDim(dst, 0) - e.staticDim(dst, 0) % W)
                      : arith::MulIOp::create(b, arith::DivUIOp::create(b, D, e.idx(W)), e.idx(W));
  if (rBlocks > 0) {
    e.loop(e.idx(0), e.idx(rBlocks), e.idx(W), [&](Value r0) {
      e.loop(e.idx(0), dBlocks, e.idx(W), [&](Value d0) {
        // All W source rows valid: plain loads; otherwise each row is loaded
        // or zero on its own.
        Value allValid = arith::CmpIOp::create(b, arith::CmpIPredicate::sle,
                                               e.addi(r0, e.idx(W)), n);
        auto loadRows = [&](bool checked) {
          SmallVector<Value> rows;
          for (int64_t t = 0; t < W; ++t) {
            Value r = e.addi(r0, e.idx(t));
            Value sr = e.addi(row, r);
            if (!checked) {
              rows.push_back(scaled(e.loadF32(src, {bi, hi, sr, d0}, W)));
              continue;
            }
            Value ok = e.lt(r, n);
            Value v = e.ifElse(
                ok, e.vec(W), [&] { return e.loadF32(src, {bi, hi, sr, d0}, W); },
                [&] { return e.splat(0.0, W); });
            rows.push_back(scaled(v));
          }
          return rows;
        };
        auto storeRows = [&](SmallVector<Value> rows) {
          SmallVector<Value> cols = transposeSquare(b, std::move(rows));
          for (int64_t t = 0; t < W; ++t)
            e.storeF32(cols[t], dst, {e.addi(d0, e.idx(t)), r0});
        };
        e.ifElse(
            allValid, [&] { storeRows(loadRows(false)); }, [&] { storeRows(loadRows(true)); });
      });
    });
  }
  // Edges: rows r >= rBlocks for every d, and d >= dBlocks for r < rBlocks.
  auto scalarCopy = [&](Value rLo, Value rHi, Value dLo, Value dHi) {
    e.loop(rLo, rHi, e.idx(1), [&](Value r) {
      Value ok = e.lt(r, n);
      Value sr = e.addi(row, r);
      e.loop(dLo, dHi, e.idx(1), [&](Value d) {
        Value v = e.ifElse(
            ok, e.f32Type(), [&] { return e.loadScalarF32(src, {bi, hi, sr, d}); },
            [&] { return e.f32(0.0); });
        e.storeScalarF32(scaled(v), dst, {d, r});
      });
    });
  };
  if (rBlocks < R)
    scalarCopy(e.idx(rBlocks), e.idx(R), e.idx(0), D);
  if (rBlocks > 0 && (e.staticDim(dst, 0) == ShapedType::kDynamic || e.staticDim(dst, 0) % W))
    scalarCopy(e.idx(0), e.idx(rBlocks), dBlocks, D);
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

    // Check everything first, so that a failure leaves the IR untouched.
    SmallVector<Operation *> tileOps;
    bool ok = true;
    module.walk([&](Operation *op) {
      if (!isa<CopyTileOp, TileMatmulOp, TileMaskOp, TileBiasOp, TileSoftmaxOp, TileStoreOp>(op))
        return;
      tileOps.push_back(op);
      ok &= succeeded(check(op));
    });
    if (!ok)
      return signalPassFailure();

    SmallVector<Operation *> exps;
    llvm::SetVector<Operation *> funcs;
    for (Operation *op : tileOps) {
      ImplicitLocOpBuilder b(op->getLoc(), op);
      CpuEmitter e(b, W, mr, nr, exps);
      if (auto o = dyn_cast<CopyTileOp>(op))
        lowerCopy(e, o);
      else if (auto o = dyn_cast<TileMatmulOp>(op))
        lowerMatmul(e, o);
      else if (auto o = dyn_cast<TileMaskOp>(op))
        lowerMask(e, o);
      else if (auto o = dyn_cast<TileBiasOp>(op))
        lowerBias(e, o);
      else if (auto o = dyn_cast<TileSoftmaxOp>(op))
        lowerSoftmax(e, o);
      else if (auto o = dyn_cast<TileStoreOp>(op))
        lowerStore(e, o);
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

    // Fast exp: upstream's polynomial approximation (f32, scalar and vector).
    if (!exps.empty()) {
      RewritePatternSet patterns(&getContext());
      populateMathPolynomialApproximationPatterns(
          patterns, [](StringRef name) { return name == math::ExpOp::getOperationName(); });
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
