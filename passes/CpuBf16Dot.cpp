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
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

/// f32 lanes of one vdpbf16ps (zmm): 16, i.e. 32 bf16 of a and of b.
constexpr int64_t kLanes = 16;

LogicalResult checkBf16DotMatmul(TileMatmulOp op, int64_t W) {
  auto a = cast<MemRefType>(op.getA().getType());
  auto c = cast<MemRefType>(op.getC().getType());
  int64_t M = a.getDimSize(0), N = c.getDimSize(1);
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

void lowerMatmulBf16Dot(CpuEmitter &e, TileMatmulOp op) {
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
