//===- GpuScores.cpp - attn-lower-to-gpu: soft-capping and ALiBi ----------===//
//
// The score variants of attn-lower-to-gpu between Q.K^T and the mask, on the
// score fragments of each lane (the accumulator layout of GpuLayout.h, the
// same for mma.sync and wgmma):
//   tile_softcap  c * tanh(s / c) = c - 2c / (1 + 2^(s * 2 log2(e) / c)):
//                 ex2.approx.ftz and rcp.approx.ftz, no libdevice call and no
//                 branch (tanh.approx.f32 has ~2^-11 relative error, i.e.
//                 c * 5e-4 on the capped score; this form stays within a few
//                 ulp of c);
//   tile_alibi    s -= slope[head] * |i' - j| with the aligned query position
//                 i' = row + i + offset, one f32 distance per lane and row.
// The structured masks (bottom-right offset, window sides) and sinks (the
// initial running max and sum) are GpuSoftmax.cpp's.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

LogicalResult checkScoreVariant(Operation *op, Value scores) {
  auto fail = [&](const Twine &msg) -> LogicalResult {
    return op->emitError("attn-lower-to-gpu: ") << msg;
  };
  if (auto sc = dyn_cast<TileSoftcapOp>(op)) {
    if (rootOf(sc.getScores()) != scores)
      return fail("tile_softcap must cap the score tile");
  } else if (auto al = dyn_cast<TileAlibiOp>(op)) {
    if (rootOf(al.getScores()) != scores)
      return fail("tile_alibi must add to the score tile");
    // The slopes are read in the kernel: a kernel argument (global memory).
    if (!isa<BlockArgument>(al.getSlopes()) ||
        cast<MemRefType>(al.getSlopes().getType()).getMemorySpace())
      return fail("the ALiBi slopes must be a function argument in global memory");
  }
  return success();
}

/// 1 / x with the PTX approximation (`rcp.approx.ftz.f32`, at most 1 ulp off;
/// arith.divf is the IEEE division, a subroutine with a slow path).
Value Lowering::rcp(Value x) { return nvvmApprox(b, loc, "llvm.nvvm.rcp.approx.ftz.f", x); }

void Lowering::lowerSoftcap(TileSoftcapOp op) {
  const double log2e = 1.4426950408889634;
  double cap = op.getCap().convertToDouble();
  // 2^(2x log2 e) = e^(2x) with x = s / c; 1 + e^(2x) in [1, inf]: no
  // cancellation in the reciprocal, and e^(2x) = inf (large s) gives c.
  Value k = f32(2.0 * log2e / cap), one = f32(1.0), c = f32(cap), minus2c = f32(-2.0 * cap);
  for (int64_t e = 0; e < p.BN / 8 * 4; ++e) {
    Value s = load(sFrag, e);
    Value ex = exp2(arith::MulFOp::create(b, loc, s, k));
    Value r = rcp(arith::AddFOp::create(b, loc, ex, one));
    store(fma(r, minus2c, c), sFrag, e);
  }
}

void Lowering::lowerAlibi(TileAlibiOp op) {
  IRBuild &o = *this;
  Value slope = memref::LoadOp::create(b, loc, op.getSlopes(), ValueRange{op.getHead()});
  Value negSlope = arith::NegFOp::create(b, loc, slope);
  // Element (nb, i) of a lane: query row + warpRow + rowBase + dr(i) (+ offset),
  // key col + colBase + 8 nb + dc(i); the distance is pos(dr) - (8 nb + dc),
  // with pos(dr) one f32 per lane and row half (exact: |pos| < 2^24).
  auto [rowBase, colBase] = gl::accumulatorElement(o, lane, 0);
  Value base = subi(addi(addi(op.getRow(), op.getOffset()), addi(warpRow, rowBase)),
                    addi(op.getCol(), colBase));
  Type i32 = b.getI32Type();
  for (int64_t i = 0; i < 4; ++i) {
    auto [dr, dc] = gl::accumulatorOffset(i);
    Value pos = arith::IndexCastOp::create(b, loc, i32, addi(base, idx(dr)));
    Value posF = arith::SIToFPOp::create(b, loc, b.getF32Type(), pos);
    for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
      Value d = arith::SubFOp::create(b, loc, posF, f32(double(8 * nb + dc)));
      // |d| as max(d, -d): math.absf would be a libdevice call.
      Value dist = arith::MaximumFOp::create(b, loc, d, arith::NegFOp::create(b, loc, d));
      int64_t e = nb * 4 + i;
      store(fma(negSlope, dist, load(sFrag, e)), sFrag, e);
    }
  }
}

} // namespace mlir::attn::gpu_lowering
