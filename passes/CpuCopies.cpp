//===- CpuCopies.cpp - attn-lower-to-cpu: copy_tile ------------------------===//
//
// attn.copy_tile on the CPU: rows of a [B, H, L, D] tensor into a tile
// buffer, converted to f32, scaled, and zero past `valid`; the transposed
// form (K for Q.K^T) moves W x W blocks through registers with a shuffle
// transpose and copies the edges element by element.
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

/// Transposes `rows` (n vectors of n lanes, n a power of two) in registers:
/// log2(n) stages, each swapping one bit of the row index with the same bit
/// of the column index through two-source shuffles.
static SmallVector<Value> transposeSquare(ImplicitLocOpBuilder &b, SmallVector<Value> rows) {
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
  std::optional<double> scale;
  if (auto s = op.getScale(); s && s->convertToDouble() != 1.0)
    scale = s->convertToDouble();
  Value bi = op.getBatch(), hi = op.getHead();
  copyRows(e, op.getSource(), op.getDest(), op.getRow(), op.getValid(), op.getTransposed(),
           scale, [&](Value sr) -> SmallVector<Value> { return {bi, hi, sr}; });
}

void copyRows(CpuEmitter &e, Value src, Value dst, Value row, Value valid, bool transposed,
              std::optional<double> scale, RowAddress address) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = e.W;
  auto scaled = [&](Value v) -> Value {
    if (!scale)
      return v;
    Value k = isa<VectorType>(v.getType())
                  ? e.splat(*scale, cast<VectorType>(v.getType()).getNumElements())
                  : e.f32(*scale);
    return arith::MulFOp::create(b, v, k);
  };
  auto at = [](SmallVector<Value> lead, Value col) {
    lead.push_back(col);
    return lead;
  };

  if (!transposed) {
    // dest[r, :] = r < valid ? src[address(row + r), :] * scale : 0
    int64_t D = e.staticDim(dst, 1);
    Value R = e.dim(dst, 0);
    Value n = e.clamp0(valid, R);
    e.loop(e.idx(0), n, e.idx(1), [&](Value r) {
      SmallVector<Value> lead = address(e.addi(row, r));
      e.chunks(D, [&](Value c0, int64_t w) {
        e.storeF32(scaled(e.loadF32(src, at(lead, c0), w)), dst, {r, c0});
      });
    });
    e.loop(n, R, e.idx(1), [&](Value r) {
      e.chunks(D, [&](Value c0, int64_t w) { e.storeF32(e.splat(0.0, w), dst, {r, c0}); });
    });
    return;
  }

  // Transposed: dest[d, r] = r < valid ? src[address(row + r), d] * scale : 0.
  // W x W blocks go through registers (W row loads, a shuffle transpose, W
  // row stores); the edges that do not fill a block are copied one element
  // at a time. Row addresses are computed once per block of W rows, from a
  // row clamped into the valid ones (an address of a row past `valid` is
  // never loaded from, but a gathered address reads the block table).
  int64_t R = e.staticDim(dst, 1);
  Value D = e.dim(dst, 0);
  Value n = e.clamp0(valid, e.idx(R));
  Value lastRow = e.maxsi(e.subi(n, e.idx(1)), e.idx(0));
  auto clampedAddress = [&](Value r) { return address(e.addi(row, e.minsi(r, lastRow))); };
  int64_t rBlocks = R - R % W;
  Value dBlocks = e.staticDim(dst, 0) != ShapedType::kDynamic
                      ? e.idx(e.staticDim(dst, 0) - e.staticDim(dst, 0) % W)
                      : arith::MulIOp::create(b, arith::DivUIOp::create(b, D, e.idx(W)), e.idx(W));
  if (rBlocks > 0) {
    e.loop(e.idx(0), e.idx(rBlocks), e.idx(W), [&](Value r0) {
      SmallVector<SmallVector<Value>> leads;
      for (int64_t t = 0; t < W; ++t)
        leads.push_back(clampedAddress(e.addi(r0, e.idx(t))));
      e.loop(e.idx(0), dBlocks, e.idx(W), [&](Value d0) {
        // All W source rows valid: plain loads; otherwise each row is loaded
        // or zero on its own.
        Value allValid = arith::CmpIOp::create(b, arith::CmpIPredicate::sle,
                                               e.addi(r0, e.idx(W)), n);
        auto loadRows = [&](bool checked) {
          SmallVector<Value> rows;
          for (int64_t t = 0; t < W; ++t) {
            Value r = e.addi(r0, e.idx(t));
            if (!checked) {
              rows.push_back(scaled(e.loadF32(src, at(leads[t], d0), W)));
              continue;
            }
            Value ok = e.lt(r, n);
            Value v = e.ifElse(
                ok, e.vec(W), [&] { return e.loadF32(src, at(leads[t], d0), W); },
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
      SmallVector<Value> lead = clampedAddress(r);
      e.loop(dLo, dHi, e.idx(1), [&](Value d) {
        Value v = e.ifElse(
            ok, e.f32Type(), [&] { return e.loadScalarF32(src, at(lead, d)); },
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

} // namespace mlir::attn::cpu_lowering
