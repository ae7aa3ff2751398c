//===- GpuSoftmax.cpp - attn-lower-to-gpu: mask, bias, softmax, store -----===//
//
// The register-fragment math of attn-lower-to-gpu between and after the
// matmuls, the same for mma.sync and wgmma (their accumulator fragments have
// one layout per warp): tile_mask as predicated selects, tile_bias, the
// online softmax with exp2 and shuffle-xor quad reductions, the normalized
// output store, and linalg.fill of the register tiles.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"
#include "passes/MaskSides.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

Value nvvmApprox(OpBuilder &b, Location loc, StringRef intrinsic, Value x) {
  return LLVM::CallIntrinsicOp::create(b, loc, b.getF32Type(), b.getStringAttr(intrinsic),
                                       ValueRange{x})
      .getResult(0);
}

/// 2^x with the PTX approximation (`ex2.approx.ftz.f32`, the instruction
/// CUDA's fast-math exp2f uses).
Value Lowering::exp2(Value x) { return nvvmApprox(b, loc, "llvm.nvvm.ex2.approx.ftz.f", x); }

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

void Lowering::lowerMask(TileMaskOp op, Value when) {
  IRBuild &o = *this;
  int64_t left, right; // -1 = unbounded (MaskSides.h)
  std::tie(left, right) = maskSides(op);
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  // Element (nb, i) of a lane is at row rowBase + dr(i), column
  // colBase + 8 nb + dc(i) of the tile; with the column offset
  // k = 8 nb + dc(i) a constant, every test is "k against one per-lane value".
  // With dRow = (aligned query position) - (key of column k = 0):
  //   past the keys:  colBase + k >= valid   <=>  k > valid - colBase - 1
  //   right side:     key > i' + right       <=>  k > dRow + right
  //   left side:      key < i' - left        <=>  k <= dRow - left - 1
  // so per row half (dr = 0, 8) the lane keeps two limits, hi and lo, and an
  // element is masked iff k > hi or k <= lo. The limits are clamped to
  // [-1, block-n] and compared as i32: one 32-bit compare and a select per
  // element, and nothing per element that ptxas could hoist above the Q.K^T
  // MMAs (64-bit compares with an or/and chain per element did that to the
  // causal 128 x 64, 3-stage, head-dim-128 kernel: 255 registers, spills).
  auto [rowBase, colBase] = gl::accumulatorElement(o, lane, 0);
  Value validRel = subi(op.getValid(), colBase);
  Value qBase = addi(op.getRow(), addi(warpRow, rowBase));
  if (Value off = op.getOffset()) // bottom-right alignment: i' = i + Lk - Lq
    qBase = addi(qBase, off);
  Value kBase = addi(op.getCol(), colBase);
  Value dRowBase = subi(qBase, kBase);
  Type i32 = b.getI32Type();
  auto narrow = [&](Value v) {
    return arith::IndexCastOp::create(b, loc, i32, clamp0(addi(v, idx(1)), idx(p.BN + 1)))
        .getResult();
  };
  auto cst = [&](int64_t v) { return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v)); };
  for (int64_t half = 0; half < 2; ++half) {
    Value dRow = addi(dRowBase, idx(8 * half));
    Value hi = subi(validRel, idx(1));
    if (right >= 0)
      hi = minsi(hi, right ? addi(dRow, idx(right)) : dRow);
    Value lo = left >= 0 ? subi(dRow, idx(left + 1)) : Value();
    // (v + 1) clamped to [0, BN + 1], as i32: v clamped to [-1, BN], plus 1.
    Value hi1 = narrow(hi), lo1 = lo ? narrow(lo) : Value();
    if (when) {
      hi1 = sel(when, hi1, cst(p.BN + 1)); // k + 1 > BN + 1 never holds
      if (lo1)
        lo1 = sel(when, lo1, cst(0)); // k + 1 <= 0 never holds
    }
    for (int64_t e = 0; e < 2; ++e) {
      int64_t i = 2 * half + e;
      auto [dr, dc] = gl::accumulatorOffset(i);
      (void)dr;
      for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
        Value k1 = cst(8 * nb + dc + 1);
        Value masked = cmpi(arith::CmpIPredicate::sgt, k1, hi1);
        if (lo1)
          masked = arith::OrIOp::create(b, loc, masked, cmpi(arith::CmpIPredicate::sle, k1, lo1));
        int64_t el = nb * 4 + i;
        store(sel(masked, negInf, load(sFrag, el)), sFrag, el);
      }
    }
  }
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

/// lse = max + ln(sum) per row (-inf for a row no key reached: sum 0), the
/// max and the quad-reduced sum of the online softmax as tile_store saw
/// them. ln via `lg2.approx.ftz.f32` (max error 2^-22 on [1, 2) mantissas;
/// sum >= 1 when nonzero, as the row max contributes exp(0)), not math.log,
/// a libdevice call. One lane per quad writes the row's value.
void Lowering::lowerLse(TileLseOp op) {
  IRBuild &o = *this;
  Value zero = f32(0.0), ln2 = f32(0.69314718055994531);
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  Value firstOfQuad = cmpi(arith::CmpIPredicate::eq, remui(lane, 4), idx(0));
  for (int64_t h = 0; h < 2; ++h) {
    Value total = quadReduce(load(sumFrag, h), /*isMax=*/false);
    Value lg2 = nvvmApprox(b, loc, "llvm.nvvm.lg2.approx.ftz.f", total);
    Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, total, zero);
    Value lse = sel(isZero, negInf, fma(lg2, ln2, load(mxFrag, h)));
    Value row = addi(warpRow, gl::accumulatorElement(o, lane, 2 * h).first);
    Value write = arith::AndIOp::create(b, loc, firstOfQuad, lt(row, op.getValid()));
    ifThen(write, [&] {
      memref::StoreOp::create(b, loc, lse, op.getDest(),
                              ValueRange{op.getBatch(), op.getHead(), addi(op.getRow(), row)});
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
  // The row sums are per-lane partial sums that tile_store adds over the 4
  // lanes of a row: a nonzero initial sum (1 with sinks: the sink's exp(0))
  // goes to the first lane of each quad only.
  if (buf == sumFrag && !matchPattern(v, m_AnyZeroFloat()))
    v = sel(cmpi(arith::CmpIPredicate::eq, remui(lane, 4), idx(0)), v, f32(0.0));
  int64_t n = cast<MemRefType>(buf.getType()).getDimSize(0);
  for (int64_t i = 0; i < n; ++i)
    store(v, buf, i);
  return success();
}

} // namespace mlir::attn::gpu_lowering
