//===- CpuBf16Dot.cpp - attn-lower-to-cpu: bf16 pairs on AVX-512-BF16 -----===//
//
// The `pairs` form of attn.tile_matmul (bf16 a [M, K], pair-packed bf16 b
// [K / 2, 2 N], f32 c [M, N]) on hosts with AVX-512-BF16 but no AMX (or no
// permission for it): `vdpbf16ps` through upstream's x86vector dialect
// (`x86vector.avx512.dot`). It is the f32 micro-kernel of CpuMatmul.cpp with
// the contraction taken in pairs: per pair index t, one 64-byte load of row t
// of b per 16 columns of c (the pairs (b[2t, n], b[2t + 1, n]) of 16
// columns), one 32-bit broadcast of (a[i, 2t], a[i, 2t + 1]) per row, and
// one vdpbf16ps per accumulator, which adds both products: half the
// instructions of f32 FMAs on widened inputs, and no widening. The pair
// packing of b is the AMX layout (copy_tile / gather_tile `pairs`), so
// attn-tile's `bf16-pairs` program serves both.
//
// The kv-in-place pairs (attn-tile `kv-in-place-pairs`, bf16 decode): Q K^T
// `transposed pairs` is CpuMatmul.cpp's dot-product block with vdpbf16ps
// steps; P V `pairs` on value rows as stored interleaves two rows into pairs
// as it loads them (emitRowsBlock). fp8 K/V rows (a bf16 query over a
// quantized cache) are widened to bf16 as they are loaded (fp8ToBf16): the
// bf16 high and low bytes of each value looked up in two 128-byte tables by
// its low 7 bits (AVX-512 VBMI's vpermi2b; MLIR's x86vector has no byte
// permute, so the LLVM intrinsic), the sign or'ed in, the bytes assembled
// into words by two shuffles (vpermt2b): 5 byte ops per 64 values, exact.
// Widening through f16 and f32 (vcvtph2ps, vcvtneps2bf16) instead cost more
// than the FMAs vdpbf16ps saves (docs/quantized-kv.md,
// bench/c/fp8_widen_probe.c).
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "llvm/ADT/APFloat.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

/// f32 lanes of one vdpbf16ps (zmm): 16, i.e. 32 bf16 of a and of b.
constexpr int64_t kLanes = 16;

Value dotBf16(CpuEmitter &e, Value acc, Value a, Value b) {
  return x86vector::DotBF16Op::create(e.ib, e.vec(kLanes), acc, a, b);
}

std::pair<Value, Value> fp8ToBf16(CpuEmitter &e, Value v) {
  ImplicitLocOpBuilder &b = e.ib;
  auto vt = cast<VectorType>(v.getType());
  bool e4m3 = isa<Float8E4M3FNType>(vt.getElementType());
  if (vt.getNumElements() == 32) // padded to the 64 bytes of one vpermi2b
    v = vector::ShuffleOp::create(b, v, v, llvm::to_vector(llvm::seq<int64_t>(0, 64)));
  auto bytes = VectorType::get({64}, b.getI8Type());
  Value x = arith::BitcastOp::create(b, bytes, v);
  // Per magnitude (the low 7 bits) the bf16 of fp8ToF32's f16 (exponent and
  // mantissa bits shifted into an f16: E4M3 without its 2^8, E5M2 as is);
  // every one is exact in bf16 (E5M2's inf and NaN stay inf and NaN).
  SmallVector<int8_t> hi(128), lo(128);
  for (unsigned m = 0; m < 128; ++m) {
    llvm::APFloat f(llvm::APFloat::IEEEhalf(), llvm::APInt(16, e4m3 ? m << 7 : m << 8));
    bool lost;
    f.convert(llvm::APFloat::BFloat(), llvm::APFloat::rmNearestTiesToEven, &lost);
    uint64_t w = f.bitcastToAPInt().getZExtValue();
    hi[m] = static_cast<int8_t>(w >> 8);
    lo[m] = static_cast<int8_t>(w & 0xFF);
  }
  auto table = [&](ArrayRef<int8_t> t) -> Value {
    return arith::ConstantOp::create(b, DenseElementsAttr::get(bytes, t));
  };
  // vpermi2b: byte i of the result is (t0 ++ t1)[x[i] & 127].
  auto lookup = [&](ArrayRef<int8_t> t) -> Value {
    return LLVM::CallIntrinsicOp::create(b, bytes,
                                         b.getStringAttr("llvm.x86.avx512.vpermi2var.qi.512"),
                                         ValueRange{table(t.take_front(64)), x,
                                                    table(t.drop_front(64))})
        ->getResult(0);
  };
  Value h = lookup(hi), l = lookup(lo);
  Value sign = arith::ConstantOp::create(
      b, DenseElementsAttr::get(bytes, b.getI8IntegerAttr(static_cast<int8_t>(0x80))));
  h = arith::OrIOp::create(b, h, arith::AndIOp::create(b, x, sign));
  auto words = [&](int64_t first) -> Value {
    SmallVector<int64_t> mask;
    for (int64_t i = first; i < first + 32; ++i)
      mask.append({i, 64 + i}); // (low byte, high byte) of value i
    return vector::BitCastOp::create(b, VectorType::get({32}, b.getBF16Type()),
                                     vector::ShuffleOp::create(b, l, h, mask));
  };
  return {words(0), words(32)};
}

LogicalResult checkBf16DotMatmul(TileMatmulOp op, int64_t W) {
  auto a = cast<MemRefType>(op.getA().getType());
  auto c = cast<MemRefType>(op.getC().getType());
  int64_t M = a.getDimSize(0), N = c.getDimSize(1);
  if (op.getTransposed() && (W != kLanes || a.getDimSize(1) % (2 * kLanes)))
    return op.emitOpError("attn-lower-to-cpu: a transposed pairs tile_matmul on AVX-512-BF16 "
                          "needs 16-lane vectors and a contraction extent that is a multiple "
                          "of 32, got vector-width ")
           << W << " and a " << a;
  if (op.getTransposed())
    return success();
  if (W != kLanes || ShapedType::isDynamic(M) || ShapedType::isDynamic(N) || N % kLanes)
    return op.emitOpError("attn-lower-to-cpu: a pairs tile_matmul on AVX-512-BF16 needs "
                          "16-lane vectors and static rows and columns, the columns a "
                          "multiple of 16, got vector-width ")
           << W << ", a " << a << " and c " << c;
  return success();
}

/// Rows [i0, i0 + mr) x `nv` vectors of c from column col0: accumulators
/// through the pair loop, then stored (times `scale` when given).
static void emitDotBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, int64_t col0,
                         int64_t nv, int64_t pairs) {
  ImplicitLocOpBuilder &b = e.ib;
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  Type bf16 = b.getBF16Type(), i32 = b.getI32Type();
  auto abType = VectorType::get({2 * kLanes}, bf16);
  auto [rows, cols, init] = registerBlock(e, op, i0, mr, col0, nv, kLanes);
  SmallVector<Value> res = e.loop(
      e.idx(0), e.idx(pairs), e.idx(1), init, [&](Value t, ValueRange acc) {
        SmallVector<Value> bv;
        for (int64_t j = 0; j < nv; ++j)
          bv.push_back(vector::LoadOp::create(b, abType, bm,
                                              ValueRange{t, e.idx(2 * (col0 + j * kLanes))}));
        SmallVector<Value> next(acc.begin(), acc.end());
        Value k = e.muli(t, 2);
        for (int64_t r = 0; r < mr; ++r) {
          // (a[i, 2t], a[i, 2t + 1]) as one 32-bit word in every lane.
          Value pair = vector::LoadOp::create(b, VectorType::get({2}, bf16), a,
                                              ValueRange{rows[r], k});
          Value word = vector::ExtractOp::create(
              b, vector::BitCastOp::create(b, VectorType::get({1}, i32), pair), 0);
          Value av = vector::BitCastOp::create(
              b, abType, vector::BroadcastOp::create(b, VectorType::get({kLanes}, i32), word));
          for (int64_t j = 0; j < nv; ++j)
            next[r * nv + j] = x86vector::DotBF16Op::create(b, e.vec(kLanes), next[r * nv + j],
                                                            av, bv[j]);
        }
        return next;
      });
  std::optional<double> scale;
  if (auto s = op.getScale(); s && s->convertToDouble() != 1.0)
    scale = s->convertToDouble();
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j) {
      Value v = res[r * nv + j];
      if (scale)
        v = arith::MulFOp::create(b, v, e.splat(*scale, kLanes));
      e.storeF32(v, c, {rows[r], cols[j]});
    }
}

/// P V on value rows read in place (b [K', N] bf16, K' <= K at run time):
/// rows [i0, i0 + mr) x `nv` vectors of c from col0. Per key pair t, rows 2t
/// and 2t + 1 of b, 16 columns each, interleaved into the pairs
/// (b[2t, n], b[2t + 1, n]) as they are loaded, and per row of a its pair
/// broadcast; an odd last key pairs with zeros (in b and in a, so that the
/// column after it is never read into a product).
static void emitRowsBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, int64_t col0,
                          int64_t nv) {
  ImplicitLocOpBuilder &b = e.ib;
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  Type bf16 = b.getBF16Type(), i16 = b.getI16Type(), i32 = b.getI32Type();
  auto half = VectorType::get({kLanes}, bf16), abType = VectorType::get({2 * kLanes}, bf16);
  auto splatI32 = VectorType::get({kLanes}, i32);
  auto [rows, cols, init] = registerBlock(e, op, i0, mr, col0, nv, kLanes);
  // E4M3 value rows are widened unscaled (fp8ToBf16): summed from zero,
  // then c = init + factor * sums, as the f32 rows block.
  Type elt = cast<MemRefType>(bm.getType()).getElementType();
  bool fp8 = !elt.isBF16();
  double factor = CpuEmitter::unscaledFactor(bm);
  SmallVector<Value> start =
      factor == 1.0 ? init : SmallVector<Value>(init.size(), e.splat(0.0, kLanes));
  auto keyStep = [&](Value k, bool odd, ValueRange acc) {
    Value k1 = odd ? Value() : e.addi(k, e.idx(1));
    prefetchKeyRow(e, op, k, col0, nv * kLanes);
    if (!odd)
      prefetchKeyRow(e, op, k1, col0, nv * kLanes);
    SmallVector<Value> bv;
    for (int64_t j = 0; j < nv; ++j) {
      Value col = e.idx(col0 + j * kLanes);
      if (fp8) {
        // Rows k and k + 1 of 32 columns (16 for a last odd vector)
        // interleaved as bytes, then widened as 64 values: the pairs of two
        // vectors of columns.
        int64_t n = j + 1 < nv ? 2 * kLanes : kLanes;
        auto rowType = VectorType::get({n}, elt);
        Value lo = vector::LoadOp::create(b, rowType, bm, ValueRange{k, col});
        Value hi = odd ? vector::BitCastOp::create(
                             b, rowType, arith::ConstantOp::create(
                                             b, DenseElementsAttr::get(
                                                    VectorType::get({n}, b.getI8Type()),
                                                    b.getI8IntegerAttr(0))))
                       : Value(vector::LoadOp::create(b, rowType, bm, ValueRange{k1, col}));
        auto [w0, w1] = fp8ToBf16(e, vector::InterleaveOp::create(b, lo, hi));
        bv.push_back(w0);
        if (n == 2 * kLanes)
          bv.push_back(w1), ++j;
        continue;
      }
      Value lo = vector::LoadOp::create(b, half, bm, ValueRange{k, col});
      Value hi = odd ? Value(arith::ConstantOp::create(
                           b, DenseElementsAttr::get(half, b.getFloatAttr(bf16, 0.0))))
                     : Value(vector::LoadOp::create(b, half, bm, ValueRange{k1, col}));
      bv.push_back(vector::InterleaveOp::create(b, lo, hi)); // (lo[n], hi[n]) pairs
    }
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t r = 0; r < mr; ++r) {
      // (a[i, k], a[i, k + 1]) as one 32-bit word, or (a[i, k], 0).
      Value word;
      if (odd) {
        Value x = memref::LoadOp::create(b, a, ValueRange{rows[r], k});
        word = arith::ExtUIOp::create(b, i32, arith::BitcastOp::create(b, i16, x));
      } else {
        Value pair = vector::LoadOp::create(b, VectorType::get({2}, bf16), a,
                                            ValueRange{rows[r], k});
        word = vector::ExtractOp::create(
            b, vector::BitCastOp::create(b, VectorType::get({1}, i32), pair), 0);
      }
      Value av = vector::BitCastOp::create(b, abType,
                                           vector::BroadcastOp::create(b, splatI32, word));
      for (int64_t j = 0; j < nv; ++j)
        next[r * nv + j] = dotBf16(e, next[r * nv + j], av, bv[j]);
    }
    return next;
  };
  Value keys = e.dim(bm, 0);
  Value even = e.muli(arith::DivUIOp::create(b, keys, e.idx(2)), 2);
  SmallVector<Value> res = e.loop(e.idx(0), even, e.idx(2), start, [&](Value k, ValueRange acc) {
    return keyStep(k, /*odd=*/false, acc);
  });
  // The odd last key: a loop of zero or one step.
  res = e.loop(even, keys, e.idx(1), res,
               [&](Value k, ValueRange acc) { return keyStep(k, /*odd=*/true, acc); });
  if (factor != 1.0)
    for (auto [x, i] : llvm::zip(res, init))
      x = vector::FMAOp::create(b, x, e.splat(factor, kLanes), i);
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j)
      e.storeF32(res[r * nv + j], c, {rows[r], cols[j]});
}

/// P V on value rows in place: column groups as lowerMatmul's (a decode
/// block has fewer rows than micro-rows: wider groups, V swept fewer times).
static void lowerRowsBf16Dot(CpuEmitter &e, TileMatmulOp op) {
  int64_t M = cast<MemRefType>(op.getA().getType()).getDimSize(0);
  int64_t N = cast<MemRefType>(op.getC().getType()).getDimSize(1);
  int64_t width = M < e.MR ? std::max<int64_t>(e.NR, e.MR * e.NR / std::max<int64_t>(1, M))
                           : e.NR;
  for (int64_t col = 0; col < N; col += width * kLanes) {
    int64_t nv = std::min<int64_t>(width, (N - col) / kLanes);
    int64_t mr = std::max<int64_t>(1, std::min<int64_t>({8, e.MR * e.NR / nv, M}));
    int64_t full = M - M % mr;
    e.loop(e.idx(0), e.idx(full), e.idx(mr),
           [&](Value i0) { emitRowsBlock(e, op, i0, mr, col, nv); });
    if (M % mr)
      emitRowsBlock(e, op, e.idx(full), M % mr, col, nv);
  }
}

void lowerMatmulBf16Dot(CpuEmitter &e, TileMatmulOp op) {
  if (op.getTransposed())
    return lowerMatmul(e, op); // the dot-product block, vdpbf16ps steps
  if (op.pairsInPlace())
    return lowerRowsBf16Dot(e, op);
  auto aType = cast<MemRefType>(op.getA().getType());
  int64_t M = aType.getDimSize(0), pairs = aType.getDimSize(1) / 2;
  int64_t N = cast<MemRefType>(op.getC().getType()).getDimSize(1);
  // Column groups of up to micro-vectors vectors, as many rows as the
  // accumulator budget (micro-rows x micro-vectors) allows, like the f32 kernel.
  for (int64_t col = 0; col < N; col += e.NR * kLanes) {
    int64_t nv = std::min<int64_t>(e.NR, (N - col) / kLanes);
    int64_t mr = std::max<int64_t>(1, std::min<int64_t>({8, e.MR * e.NR / nv, M}));
    int64_t full = M - M % mr;
    e.loop(e.idx(0), e.idx(full), e.idx(mr),
           [&](Value i0) { emitDotBlock(e, op, i0, mr, col, nv, pairs); });
    if (M % mr)
      emitDotBlock(e, op, e.idx(full), M % mr, col, nv, pairs);
  }
}

} // namespace mlir::attn::cpu_lowering
