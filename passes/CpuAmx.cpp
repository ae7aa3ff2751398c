//===- CpuAmx.cpp - attn-lower-to-cpu: bf16 pairs on AMX ------------------===//
//
// The `pairs` form of attn.tile_matmul (bf16 a [M, K], pair-packed bf16 b
// [K / 2, 2 N], f32 c [M, N]) on Intel AMX through upstream's `amx` dialect:
// blocks of up to 2 x 2 16 x 16 f32 tiles of c, loaded (accumulate) or
// zeroed, then for every 32 contraction indices the 16 x 32 bf16 tiles of a
// and the matching 16 x (16 pairs) tiles of b of the block, and one
// `amx.tile_mulf` (tdpbf16ps, 8192 multiply-adds) per tile of c, then stored
// (and, with `scale`, multiplied by it in vector code). The K steps are unrolled in the IR so that no
// tile value crosses a loop's iterations (LLVM's AMX lowering allocates the
// 8 tile registers and emits the tile configuration per function).
//
// Also tile_convert (f32 P to bf16 for the `pairs` P V), as vectors.
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include "mlir/Dialect/AMX/AMXDialect.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

/// AMX tiles: 16 rows of c and a, 32 bf16 (16 pairs) of contraction per row.
constexpr int64_t kTileRows = 16, kTileK = 32;

LogicalResult checkAmxMatmul(TileMatmulOp op) {
  auto a = cast<MemRefType>(op.getA().getType());
  auto c = cast<MemRefType>(op.getC().getType());
  int64_t M = a.getDimSize(0), K = a.getDimSize(1), N = c.getDimSize(1);
  if (ShapedType::isDynamic(M) || M % kTileRows || K % kTileK || N % kTileRows)
    return op.emitOpError("attn-lower-to-cpu: a pairs tile_matmul on AMX needs static rows "
                          "and columns that are multiples of 16 and a contraction extent "
                          "that is a multiple of 32, got a ")
           << a << " and c " << c;
  return success();
}

void lowerMatmulAmx(CpuEmitter &e, TileMatmulOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  auto aType = cast<MemRefType>(a.getType());
  int64_t M = aType.getDimSize(0), K = aType.getDimSize(1);
  int64_t N = cast<MemRefType>(c.getType()).getDimSize(1);
  auto abTile = amx::TileType::get({kTileRows, kTileK}, b.getBF16Type());
  auto cTile = amx::TileType::get({kTileRows, kTileRows}, b.getF32Type());
  // A block of tr x tc tiles of c: each loaded tile of a is used tc times,
  // each of b tr times. 2 x 2 (4 + 2 + 2 tiles) fills the 8 tile registers.
  int64_t tr = (M / kTileRows) % 2 == 0 ? 2 : 1, tc = (N / kTileRows) % 2 == 0 ? 2 : 1;
  e.loop(e.idx(0), e.idx(M), e.idx(tr * kTileRows), [&](Value i0) {
    e.loop(e.idx(0), e.idx(N), e.idx(tc * kTileRows), [&](Value j0) {
      SmallVector<Value> rows, cols, acc;
      for (int64_t r = 0; r < tr; ++r)
        rows.push_back(r ? e.addi(i0, e.idx(r * kTileRows)) : i0);
      for (int64_t t = 0; t < tc; ++t)
        cols.push_back(t ? e.addi(j0, e.idx(t * kTileRows)) : j0);
      for (int64_t r = 0; r < tr; ++r)
        for (int64_t t = 0; t < tc; ++t)
          acc.push_back(op.getAccumulate()
                            ? amx::TileLoadOp::create(b, cTile, c, ValueRange{rows[r], cols[t]})
                                  .getResult()
                            : amx::TileZeroOp::create(b, cTile).getResult());
      for (int64_t k = 0; k < K; k += kTileK) {
        SmallVector<Value> at, bt;
        for (int64_t r = 0; r < tr; ++r)
          at.push_back(amx::TileLoadOp::create(b, abTile, a, ValueRange{rows[r], e.idx(k)}));
        for (int64_t t = 0; t < tc; ++t)
          bt.push_back(amx::TileLoadOp::create(b, abTile, bm,
                                               ValueRange{e.idx(k / 2), e.muli(cols[t], 2)}));
        for (int64_t r = 0; r < tr; ++r)
          for (int64_t t = 0; t < tc; ++t)
            acc[r * tc + t] = amx::TileMulFOp::create(b, cTile, at[r], bt[t], acc[r * tc + t]);
      }
      for (int64_t r = 0; r < tr; ++r)
        for (int64_t t = 0; t < tc; ++t)
          amx::TileStoreOp::create(b, c, ValueRange{rows[r], cols[t]}, acc[r * tc + t]);
      // `scale`: the block's f32 results times the softmax scale, in vectors
      // of 16 while they are in L1.
      if (auto s = op.getScale(); s && s->convertToDouble() != 1.0) {
        Value k = e.splat(s->convertToDouble(), kTileRows);
        e.loop(i0, e.addi(i0, e.idx(tr * kTileRows)), e.idx(1), [&](Value i) {
          for (int64_t t = 0; t < tc; ++t) {
            Value v = vector::LoadOp::create(b, e.vec(kTileRows), c, ValueRange{i, cols[t]});
            vector::StoreOp::create(b, arith::MulFOp::create(b, v, k), c,
                                    ValueRange{i, cols[t]});
          }
        });
      }
    });
  });
}

void lowerConvert(CpuEmitter &e, TileConvertOp op) {
  Value src = op.getSource(), dst = op.getDest();
  int64_t C = e.staticDim(dst, 1);
  e.loop(e.idx(0), e.dim(dst, 0), e.idx(1), [&](Value r) {
    e.chunks(C, [&](Value c0, int64_t w) { e.storeF32(e.loadF32(src, {r, c0}, w), dst, {r, c0}); });
  });
}

} // namespace mlir::attn::cpu_lowering
