//===- CpuLowering.h - attn-lower-to-cpu's shared emission helpers --------===//
//
// Shared by the files of attn-lower-to-cpu (AttnLowerToCpu.cpp: checks and
// the pass; CpuMatmul.cpp, CpuSoftmax.cpp, CpuCopies.cpp: the lowering of
// each tile op): CpuEmitter, the CPU's vector helpers on top of IRBuild, and
// the lowering entry points.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_CPULOWERING_H
#define ATTNCC_PASSES_CPULOWERING_H

#include "passes/IRBuild.h"
#include "passes/Passes.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"

namespace mlir::attn::cpu_lowering {

/// Chunk loops over at most this many vectors are unrolled in the IR; longer
/// rows get an scf.for.
constexpr int64_t kMaxUnrolledChunks = 2;

/// Whether the innermost dimension of `t` has unit stride (rank 0: yes).
inline bool hasUnitInnerStride(MemRefType t) {
  if (t.getRank() == 0)
    return true;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(t.getStridesAndOffset(strides, offset)))
    return false;
  return strides.back() == 1;
}

/// The two-source shuffle masks (lanes of two w-lane vectors x, y) that swap
/// bit h of the lane index with the vector index: `low` has x's lanes with
/// bit h clear and, where it is set, y's lane j - h; `high` x's lane j + h
/// where bit h is clear and y's lanes where it is set. Register transposes
/// and transposing reductions are log2 rounds of these.
inline std::pair<SmallVector<int64_t>, SmallVector<int64_t>> bitSwapMasks(int64_t w, int64_t h) {
  SmallVector<int64_t> low, high;
  for (int64_t j = 0; j < w; ++j) {
    bool upper = j & h;
    low.push_back(upper ? w + (j - h) : j);
    high.push_back(upper ? w + j : j + h);
  }
  return {low, high};
}

/// The CPU's vector helpers, on top of the target-neutral IRBuild (scalar
/// constants, index arithmetic, dims, loops, branches). `ib` is the same
/// builder as IRBuild::b, at the lowered op's location.
struct CpuEmitter : IRBuild {
  ImplicitLocOpBuilder &ib;
  int64_t W;                           // f32 lanes per vector
  int64_t MR, NR;                      // matmul register block: rows x vectors
  SmallVectorImpl<Operation *> &exps;  // math.exp / tanh / log ops to approximate

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
    if (isa<Float8E4M3FNType, Float8E5M2Type>(from))
      return convert(fp8ToF32(v), to);
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

  /// An fp8 scalar or vector (f8E4M3FN or f8E5M2: quantized K/V caches) to
  /// f32, exactly, through f16: LLVM has no fp8 type, so arith.extf from
  /// one cannot be lowered. E5M2 is the top byte of an f16 (a shift); E4M3's
  /// sign goes to bit 15 and its exponent and mantissa bits to bits 7..13,
  /// an f16 whose exponent is 8 too small (bias 7 against 15), made exact by
  /// one multiply by 2^8 after widening. Widening f16 -> f32 is one
  /// instruction (F16C's vcvtph2ps, Arm's fcvtl) that takes f16 subnormals
  /// (fp8 subnormals land there) at full speed: building the f32 bits
  /// directly puts E4M3's subnormals on f32 subnormals, and a multiply with
  /// one as input was 35% slower per decode on Zen 3 (~1% of a Gaussian
  /// cache's E4M3 values are subnormal). NaN and E5M2 infinities are not
  /// kept apart: quantized caches are finite.
  Value fp8ToF32(Value v, bool exact = true) {
    bool e4m3 = isa<Float8E4M3FNType>(getElementTypeOrSelf(v.getType()));
    auto like = [&](Type t) -> Type {
      if (auto vt = dyn_cast<VectorType>(v.getType()))
        return vt.clone(t);
      return t;
    };
    Type i16 = like(ib.getI16Type());
    auto icst = [&](uint16_t x) -> Value {
      TypedAttr a = IntegerAttr::get(ib.getI16Type(), APInt(16, x));
      if (auto vt = dyn_cast<VectorType>(i16))
        a = DenseElementsAttr::get(vt, a);
      return arith::ConstantOp::create(ib, a);
    };
    Value bytes = arith::BitcastOp::create(ib, like(ib.getI8Type()), v);
    Value x = arith::ExtSIOp::create(ib, i16, bytes); // the sign fills bits 8..15
    x = arith::ShLIOp::create(ib, x, icst(e4m3 ? 7 : 8));
    if (e4m3) // the sign (bit 15) and bits 7..13
      x = arith::AndIOp::create(ib, x, icst(0xBF80));
    Value h = arith::BitcastOp::create(ib, like(ib.getF16Type()), x);
    Value f = arith::ExtFOp::create(ib, like(f32Type()), h);
    if (!e4m3 || !exact)
      return f;
    Value k = isa<VectorType>(i16) ? splat(256.0, cast<VectorType>(i16).getNumElements())
                                   : f32(256.0);
    return arith::MulFOp::create(ib, f, k);
  }

  Value exp(Value v) {
    auto e = math::ExpOp::create(ib, v);
    exps.push_back(e);
    return e;
  }

  /// exp(x) for x <= 0 or -inf (the softmax's s - max and m_old - m_new),
  /// f32 scalar or vector: 2^n * 2^f with n = roundeven(x log2 e),
  /// f = x log2 e - n in [-1/2, 1/2], 2^f a degree-6 polynomial (relative
  /// error 1.6 ulp on that range, fitted for this), 2^n built in the
  /// exponent bits. x is clamped at -88, where n = -127 gives exactly 0
  /// (so exp(-inf) = 0); NaN propagates. 14 instructions against ~21 for upstream's
  /// general math.exp approximation (which also handles x > 0, NaN and
  /// relative accuracy far below 2^-126); the rounding of x log2 e costs
  /// relative accuracy only where exp(x) is tiny, i.e. nothing next to a
  /// softmax row's sum of at least 1.
  Value expNonPositive(Value x) {
    Type t = x.getType();
    auto cst = [&](double v) -> Value {
      if (auto vt = dyn_cast<VectorType>(t))
        return splat(v, vt.getNumElements());
      return f32(v);
    };
    // x < -88 (ordered: a NaN stays NaN and propagates, torch's pattern).
    Value xc = arith::SelectOp::create(
        ib, arith::CmpFOp::create(ib, arith::CmpFPredicate::OLT, x, cst(-88.0)), cst(-88.0), x);
    Value tl = arith::MulFOp::create(ib, xc, cst(1.4426950408889634));
    Value n = math::RoundEvenOp::create(ib, tl);
    Value f = arith::SubFOp::create(ib, tl, n);
    static const double c[] = {1.0,
                               0.6931471824645996,
                               0.24022647738456726,
                               0.055503323674201965,
                               0.00961843691766262,
                               0.0013398875016719103,
                               0.00015353360504377633};
    Value p = cst(c[6]);
    for (int k = 5; k >= 0; --k)
      p = math::FmaOp::create(ib, p, f, cst(c[k]));
    Type it = ib.getI32Type();
    if (auto vt = dyn_cast<VectorType>(t))
      it = vt.clone(it);
    auto icst = [&](int32_t v) -> Value {
      if (auto vt = dyn_cast<VectorType>(it))
        return arith::ConstantOp::create(ib, DenseElementsAttr::get(vt, ib.getI32IntegerAttr(v)));
      return arith::ConstantOp::create(ib, ib.getI32IntegerAttr(v));
    };
    Value ni = arith::FPToSIOp::create(ib, it, n);
    Value bits = arith::ShLIOp::create(ib, arith::AddIOp::create(ib, ni, icst(127)), icst(23));
    return arith::MulFOp::create(ib, p, arith::BitcastOp::create(ib, t, bits));
  }

  /// Loads `n` elements at `indices` as an f32 vector.
  Value loadF32(Value memref, ValueRange indices, int64_t n) {
    Type et = cast<MemRefType>(memref.getType()).getElementType();
    Value v = vector::LoadOp::create(ib, vec(n, et), memref, indices);
    return convert(v, f32Type());
  }
  /// The factor loadF32Unscaled leaves out of a memref's elements: 2^8 for
  /// f8E4M3FN (fp8ToF32's last multiply), 1 otherwise.
  static double unscaledFactor(Value memref) {
    return isa<Float8E4M3FNType>(cast<MemRefType>(memref.getType()).getElementType()) ? 256.0
                                                                                       : 1.0;
  }
  /// loadF32 without the exact scaling of E4M3 (the elements times
  /// 1 / unscaledFactor): for the dot products of decode, whose sums take
  /// the factor once instead of every element (one vector op in five).
  Value loadF32Unscaled(Value memref, ValueRange indices, int64_t n) {
    Type et = cast<MemRefType>(memref.getType()).getElementType();
    Value v = vector::LoadOp::create(ib, vec(n, et), memref, indices);
    if (isa<Float8E4M3FNType>(et))
      return fp8ToF32(v, /*exact=*/false);
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
  /// Reduces n vectors of w lanes (n a power of two, 2 <= n <= w) to one
  /// vector of n lanes whose lane r is the reduction of vector r: log2(n)
  /// rounds, each combining vectors r and r + h with two shuffles so that
  /// lanes with bit h clear carry vector r and lanes with bit h set carry
  /// vector r + h, each over a pair of lanes; then, where n < w, log2(w / n)
  /// halvings (lanes l and l + n carry the same vector). About 3 (n - 1) + 2
  /// log2(w / n) instructions for n reductions, against ~2 log2(w) + 1 for
  /// each `vector.reduction`. Upstream's nearest form, vector.multi_reduction
  /// over [n, w] with the inner-parallel lowering, transposes all n vectors
  /// first (n log2(n) shuffles) and adds after; here each round halves the
  /// vectors it shuffles.
  Value transposeReduce(SmallVector<Value> rows, function_ref<Value(Value, Value)> combine) {
    int64_t n = rows.size();
    int64_t w = cast<VectorType>(rows[0].getType()).getNumElements();
    assert(llvm::isPowerOf2_64(n) && llvm::isPowerOf2_64(w) && n >= 2 && n <= w &&
           "transposeReduce: n vectors of w >= n lanes, both powers of two");
    for (int64_t h = n / 2; h >= 1; h /= 2) {
      auto [lowMask, highMask] = bitSwapMasks(w, h);
      SmallVector<Value> next;
      for (int64_t r = 0; r < h; ++r) {
        Value lo = vector::ShuffleOp::create(ib, rows[r], rows[r + h], lowMask);
        Value hi = vector::ShuffleOp::create(ib, rows[r], rows[r + h], highMask);
        next.push_back(combine(lo, hi));
      }
      rows = std::move(next);
    }
    Value v = rows[0];
    for (int64_t half = w / 2; half >= n; half /= 2) {
      auto part = [&](int64_t off) {
        return vector::ExtractStridedSliceOp::create(ib, v, ArrayRef<int64_t>{off},
                                                     ArrayRef<int64_t>{half}, ArrayRef<int64_t>{1});
      };
      v = combine(part(0), part(half));
    }
    return v;
  }

  /// max(x, y) as `x > y ? x : y`: one vmaxps on x86 (arith.maxnumf keeps
  /// its NaN checks in the LLVM lowering even with fastmath<nnan>).
  Value vmax(Value x, Value y) {
    return arith::SelectOp::create(ib, arith::CmpFOp::create(ib, arith::CmpFPredicate::OGT, x, y),
                                   x, y);
  }
};

// The lowering of each tile op at its position (`e` is at the op); the op
// itself is erased by the pass.
void lowerMatmul(CpuEmitter &e, TileMatmulOp op);   // CpuMatmul.cpp
/// `pOut`: where p = exp(s - m) goes instead of back into the scores (a
/// tile_convert's destination fused into the softmax), converted on store.
void lowerSoftmax(CpuEmitter &e, TileSoftmaxOp op, Value pOut = {}); // CpuSoftmax.cpp
void lowerMask(CpuEmitter &e, TileMaskOp op);       // CpuSoftmax.cpp
void lowerBias(CpuEmitter &e, TileBiasOp op);       // CpuSoftmax.cpp
void lowerStore(CpuEmitter &e, TileStoreOp op);     // CpuSoftmax.cpp
void lowerCopy(CpuEmitter &e, CopyTileOp op);       // CpuCopies.cpp
/// The leading (batch, head, row) indices of source row `sr` of a copy.
using RowAddress = function_ref<SmallVector<Value>(Value sr)>;
/// copy_tile's row copy with the source rows located by `address`
/// (CpuCopies.cpp; gather_tile's paged rows use it too).
void copyRows(CpuEmitter &e, Value src, Value dst, Value row, Value valid, bool transposed,
              std::optional<double> scale, RowAddress address);
void lowerGather(CpuEmitter &e, GatherTileOp op);   // CpuGather.cpp
void lowerSoftcap(CpuEmitter &e, TileSoftcapOp op); // CpuScores.cpp
void lowerAlibi(CpuEmitter &e, TileAlibiOp op);     // CpuScores.cpp
void lowerLse(CpuEmitter &e, TileLseOp op);         // CpuSplitKv.cpp
void lowerCombine(CpuEmitter &e, TileCombineOp op); // CpuSplitKv.cpp
/// copy_tile / gather_tile `pairs`: whole blocks of W lanes, and the copy
/// itself with source rows located by `address` (CpuCopies.cpp).
LogicalResult checkPairsCopy(Operation *op, MemRefType dst, bool transposed, int64_t W);
void copyPairs(CpuEmitter &e, Value src, Value dst, Value row, Value valid, bool transposed,
               RowAddress address);
/// tile_matmul `pairs` on AMX tiles, and its shape check (CpuAmx.cpp).
LogicalResult checkAmxMatmul(TileMatmulOp op);
void lowerMatmulAmx(CpuEmitter &e, TileMatmulOp op);
void lowerConvert(CpuEmitter &e, TileConvertOp op); // CpuAmx.cpp
/// A register block of tile_matmul's c: rows [i0, i0 + mr) x `nv` vectors of
/// `w` lanes from column col0, and the accumulators' initial values (c's
/// when the matmul accumulates, else zeros), row-major (CpuMatmul.cpp; the
/// f32 and the vdpbf16ps micro-kernels share it). With `lastRow`, rows past
/// it are clamped to it (a dynamic row count's last block).
struct RegisterBlock {
  SmallVector<Value> rows, cols, init;
};
RegisterBlock registerBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, int64_t col0,
                            int64_t nv, int64_t w, Value lastRow = Value());
RegisterBlock registerBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, Value col0,
                            int64_t nv, int64_t w, Value lastRow = Value());
/// tile_matmul `pairs` on AVX-512-BF16 (vdpbf16ps), and its shape check (CpuBf16Dot.cpp).
LogicalResult checkBf16DotMatmul(TileMatmulOp op, int64_t W);
void lowerMatmulBf16Dot(CpuEmitter &e, TileMatmulOp op);
/// acc + the pair products of a and b (32 bf16 each): one vdpbf16ps.
Value dotBf16(CpuEmitter &e, Value acc, Value a, Value b);
/// 64 fp8 values (vector<64 x f8E4M3FN or f8E5M2>) as two vector<32xbf16>,
/// elements [0, 32) and [32, 64), unscaled as CpuEmitter::fp8ToF32(v,
/// /*exact=*/false) (AVX-512 VBMI byte tables; CpuBf16Dot.cpp). 32 values
/// are padded to 64: the second vector is then unused.
std::pair<Value, Value> fp8ToBf16(CpuEmitter &e, Value v);
/// The software prefetch for key row `r` of a kv-in-place b (CpuMatmul.cpp).
void prefetchKeyRow(CpuEmitter &e, TileMatmulOp op, Value r, int64_t col0, int64_t n);
void prefetchKeyRow(CpuEmitter &e, TileMatmulOp op, Value r, Value col0, int64_t n);

} // namespace mlir::attn::cpu_lowering

#endif // ATTNCC_PASSES_CPULOWERING_H
