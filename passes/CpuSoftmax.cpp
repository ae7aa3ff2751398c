//===- CpuSoftmax.cpp - attn-lower-to-cpu: softmax, mask, bias, store -----===//
//
// The row-wise tile ops of attn-lower-to-cpu, which all walk the score or
// accumulator tile one row (or W rows) at a time in W-lane chunks: the
// online softmax (vector max / exp / sum, W rows at once where they fill
// whole vectors), tile_mask as vector selects against the kept column
// range, tile_bias (masked or broadcast loads) and tile_store (normalize by
// the row sum, convert, store).
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"
#include "passes/MaskSides.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

//===----------------------------------------------------------------------===//
// tile_softmax
//===----------------------------------------------------------------------===//

/// One row at a time: horizontal reductions with vector.reduction and a scalar
/// exp for alpha. Used for rows that do not fill a group of W.
static void emitSoftmaxRow(CpuEmitter &e, TileSoftmaxOp op, Value i, Value pDst) {
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
      b, dead, e.f32(1.0), e.expNonPositive(arith::SubFOp::create(b, mOld, mUse)));

  // p = exp(s - m), written back; row sum.
  Value tailSum = e.f32(0.0);
  auto expChunk = [&](Value col, int64_t w) {
    Value p = e.expNonPositive(
        arith::SubFOp::create(b, e.loadF32(s, {i, col}, w), e.bcast(mUse, w)));
    e.storeF32(p, pDst, {i, col});
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
static void emitSoftmaxGroup(CpuEmitter &e, TileSoftmaxOp op, Value r0, Value pDst) {
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
  Value mNew = e.vmax(mOld, e.transposeReduce(rowMax, vmaxOp));
  Value dead = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, e.splat(ninf, W));
  Value mUse = arith::SelectOp::create(b, dead, e.splat(0.0, W), mNew);
  // alpha = 1 exactly where the max did not move (the approximated exp(0)
  // need not be), so that a group whose maxima all stayed skips the
  // rescale of its acc rows below: after the first KV blocks most do.
  Value same = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mOld, mUse);
  Value keep = arith::OrIOp::create(b, dead, same);
  Value alpha = arith::SelectOp::create(b, keep, e.splat(1.0, W),
                                        e.expNonPositive(arith::SubFOp::create(b, mOld, mUse)));
  Value moved = vector::ReductionOp::create(
      b, vector::CombiningKind::OR,
      arith::CmpFOp::create(b, arith::CmpFPredicate::UNE, alpha, e.splat(1.0, W)));
  e.storeF32(mNew, mx, {r0});

  SmallVector<Value> rowSum;
  for (int64_t r = 0; r < W; ++r) {
    Value m = lane(mUse, r);
    rowSum.push_back(e.chunks(
        C, {e.splat(0.0, W)},
        [&](Value col, ValueRange sum) -> SmallVector<Value> {
          Value p = e.expNonPositive(
              arith::SubFOp::create(b, e.loadF32(s, {rows[r], col}, W), m));
          e.storeF32(p, pDst, {rows[r], col});
          return {arith::AddFOp::create(b, sum[0], p)};
        },
        nullptr)[0]);
  }
  Value lNew = math::FmaOp::create(b, lOld, alpha, e.transposeReduce(rowSum, addOp));
  e.storeF32(lNew, sm, {r0});

  e.ifThen(moved, [&] {
    for (int64_t r = 0; r < W; ++r) {
      Value a = lane(alpha, r);
      e.chunks(Dv, [&](Value col, int64_t w) {
        Value ab = w == W ? a : vector::ShuffleOp::create(b, a, a, SmallVector<int64_t>(w, 0));
        Value v = arith::MulFOp::create(b, e.loadF32(acc, {rows[r], col}, w), ab);
        e.storeF32(v, acc, {rows[r], col});
      });
    }
  });
}

void lowerSoftmax(CpuEmitter &e, TileSoftmaxOp op, Value pOut) {
  int64_t W = e.W;
  Value s = op.getScores();
  Value pDst = pOut ? pOut : s;
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
    e.loop(e.idx(0), rGroups, e.idx(W), [&](Value r0) { emitSoftmaxGroup(e, op, r0, pDst); });
  }
  if (!grouped || sType.isDynamicDim(0) || sType.getDimSize(0) % W)
    e.loop(rGroups, R, e.idx(1), [&](Value i) { emitSoftmaxRow(e, op, i, pDst); });
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
  int64_t left, right; // -1 = unbounded (MaskSides.h)
  std::tie(left, right) = maskSides(op);
  Type i32 = b.getI32Type();
  const double ninf = -std::numeric_limits<double>::infinity();

  // Row i keeps columns j in [lo, hi), with diag = row + i + offset - col:
  //   hi = min(valid, C, right >= 0 ? diag + right + 1 : C)
  //   lo = left >= 0 ? diag - left : 0
  Value hiValid = e.clamp0(op.getValid(), cC);
  Value offset = op.getOffset();
  e.loop(e.idx(0), e.dim(s, 0), e.idx(1), [&](Value i) {
    Value aligned = offset ? e.addi(e.addi(row, i), offset) : e.addi(row, i);
    Value diag = e.subi(aligned, col); // key offset of the diagonal in this row
    Value hi = hiValid;
    if (right >= 0)
      hi = e.clamp0(e.minsi(hi, e.addi(diag, e.idx(right + 1))), cC);
    Value lo = e.idx(0);
    if (left >= 0)
      lo = e.clamp0(left == 0 ? diag : e.subi(diag, e.idx(left)), cC);
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

} // namespace mlir::attn::cpu_lowering
