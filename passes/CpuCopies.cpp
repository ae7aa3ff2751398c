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
    auto [lowMask, highMask] = bitSwapMasks(n, half);
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

/// copy_tile `pairs` (CopyTileOp's description): bf16 rows into the
/// pair-packed layout, moved as they are (no conversion). V (not transposed):
/// rows 2t and 2t + 1 interleaved (vector.interleave) per W columns. K
/// (transposed): K's rows seen as 32-bit words (pairs of head-dim columns),
/// transposed W x W through registers like the f32 transposed copy. Rows at
/// or past `valid` are zero (a row load under an scf.if each: rows past the
/// end of K/V are never read). attn-lower-to-cpu checks the shapes (whole
/// blocks of W) first.
void copyPairs(CpuEmitter &e, Value src, Value dst, Value row, Value valid, bool transposed,
               RowAddress address) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = e.W;
  Type bf16 = b.getBF16Type(), i32 = b.getI32Type();
  auto zeros = [&](int64_t n) -> Value {
    auto t = e.vec(n, bf16);
    return arith::ConstantOp::create(b, DenseElementsAttr::get(t, b.getFloatAttr(bf16, 0.0)));
  };
  auto at = [](SmallVector<Value> lead, Value col) {
    lead.push_back(col);
    return lead;
  };
  // Row r of the source (W bf16 from column c0), or zeros past `valid`.
  auto loadRow = [&](Value r, Value n, Value c0, int64_t w) -> Value {
    Value rr = e.minsi(r, e.maxsi(e.subi(n, e.idx(1)), e.idx(0)));
    return e.ifElse(
        e.lt(r, n), e.vec(w, bf16),
        [&] { return vector::LoadOp::create(b, e.vec(w, bf16), src, at(address(e.addi(row, rr)), c0)).getResult(); },
        [&] { return zeros(w); });
  };
  if (!transposed) {
    // dst [R / 2, 2 D]: dst[t, 2 d + s] = src row 2 t + s, column d.
    int64_t D = e.staticDim(dst, 1) / 2;
    Value half = e.dim(dst, 0);
    Value n = e.clamp0(valid, e.muli(half, 2));
    e.loop(e.idx(0), half, e.idx(1), [&](Value t) {
      Value r0 = e.muli(t, 2), r1 = e.addi(r0, e.idx(1));
      for (int64_t d0 = 0; d0 < D; d0 += W) {
        Value c0 = e.idx(d0);
        Value v0 = loadRow(r0, n, c0, W), v1 = loadRow(r1, n, c0, W);
        Value both = vector::InterleaveOp::create(b, v0, v1);
        vector::StoreOp::create(b, both, dst, ValueRange{t, e.idx(2 * d0)});
      }
    });
    return;
  }
  // dst [D / 2, 2 R]: dst[t, 2 r + s] = src row r, column 2 t + s. Blocks of
  // W keys x W words: W row loads of 2W bf16 (W words), a shuffle transpose,
  // W stores of 2W bf16.
  int64_t R = e.staticDim(dst, 1) / 2, words = e.staticDim(dst, 0);
  Value n = e.clamp0(valid, e.idx(R));
  e.loop(e.idx(0), e.idx(R), e.idx(W), [&](Value r0) {
    e.loop(e.idx(0), e.idx(words), e.idx(W), [&](Value t0) {
      SmallVector<Value> rows;
      for (int64_t i = 0; i < W; ++i) {
        Value v = loadRow(e.addi(r0, e.idx(i)), n, e.muli(t0, 2), 2 * W);
        rows.push_back(vector::BitCastOp::create(b, e.vec(W, i32), v));
      }
      SmallVector<Value> cols = transposeSquare(b, std::move(rows));
      for (int64_t i = 0; i < W; ++i)
        vector::StoreOp::create(b, vector::BitCastOp::create(b, e.vec(2 * W, bf16), cols[i]),
                                dst, ValueRange{e.addi(t0, e.idx(i)), e.muli(r0, 2)});
    });
  });
}

LogicalResult checkPairsCopy(Operation *op, MemRefType dst, bool transposed, int64_t W) {
  int64_t rows = dst.getDimSize(0), cols = dst.getDimSize(1);
  bool ok = transposed ? !ShapedType::isDynamic(rows) && rows % W == 0 && (cols / 2) % W == 0
                       : (cols / 2) % W == 0;
  if (!ok)
    return op->emitOpError("attn-lower-to-cpu: a pairs copy needs whole blocks of ")
           << W << " lanes (head_dim and, transposed, the tile's keys), got " << dst;
  return success();
}

void lowerCopy(CpuEmitter &e, CopyTileOp op) {
  if (op.getPairs()) {
    Value bi = op.getBatch(), hi = op.getHead();
    copyPairs(e, op.getSource(), op.getDest(), op.getRow(), op.getValid(), op.getTransposed(),
              [&](Value sr) -> SmallVector<Value> { return {bi, hi, sr}; });
    return;
  }
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
    // Same element type and no scale (rows gathered for the in-place form):
    // the rows move as they are, no conversion either way.
    Type et = cast<MemRefType>(dst.getType()).getElementType();
    bool raw = !scale && et == cast<MemRefType>(src.getType()).getElementType();
    e.loop(e.idx(0), n, e.idx(1), [&](Value r) {
      SmallVector<Value> lead = address(e.addi(row, r));
      e.chunks(D, [&](Value c0, int64_t w) {
        if (raw)
          vector::StoreOp::create(
              b, vector::LoadOp::create(b, e.vec(w, et), src, at(lead, c0)), dst,
              ValueRange{r, c0});
        else
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
