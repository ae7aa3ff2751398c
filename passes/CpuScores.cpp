//===- CpuScores.cpp - attn-lower-to-cpu: soft-capping and ALiBi ----------===//
//
// The score variants applied to a score tile between Q K^T and the mask, one
// row at a time in W-lane chunks: logit soft-capping (`cap * tanh(s / cap)`,
// math.tanh, which the pass replaces by upstream's polynomial approximation:
// no libm call) and ALiBi (`s -= slope[head] * |row + i + offset - col - j|`).
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

void lowerSoftcap(CpuEmitter &e, TileSoftcapOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value s = op.getScores();
  int64_t C = e.staticDim(s, 1);
  double cap = op.getCap().convertToDouble();
  e.loop(e.idx(0), e.dim(s, 0), e.idx(1), [&](Value i) {
    e.chunks(C, [&](Value c0, int64_t w) {
      Value v = arith::MulFOp::create(b, e.loadF32(s, {i, c0}, w), e.splat(1.0 / cap, w));
      auto t = math::TanhOp::create(b, v);
      e.exps.push_back(t);
      e.storeF32(arith::MulFOp::create(b, t, e.splat(cap, w)), s, {i, c0});
    });
  });
}

void lowerAlibi(CpuEmitter &e, TileAlibiOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value s = op.getScores();
  int64_t C = e.staticDim(s, 1);
  Type i32 = b.getI32Type(), f32 = e.f32Type();
  Value slope = memref::LoadOp::create(b, op.getSlopes(), ValueRange{op.getHead()});
  Value negSlope = arith::NegFOp::create(b, slope);
  // Row i's aligned query position relative to the tile's first key.
  Value base = e.subi(e.addi(op.getRow(), op.getOffset()), op.getCol());
  e.loop(e.idx(0), e.dim(s, 0), e.idx(1), [&](Value i) {
    Value pos = arith::IndexCastOp::create(b, i32, e.addi(base, i));
    Value posF = arith::SIToFPOp::create(b, f32, pos);
    e.chunks(C, [&](Value c0, int64_t w) {
      Value j = arith::SIToFPOp::create(b, e.vec(w), e.columnIndices(c0, w));
      Value dist = math::AbsFOp::create(b, arith::SubFOp::create(b, e.bcast(posF, w), j));
      Value v = math::FmaOp::create(b, e.bcast(negSlope, w), dist, e.loadF32(s, {i, c0}, w));
      e.storeF32(v, s, {i, c0});
    });
  });
}

} // namespace mlir::attn::cpu_lowering
