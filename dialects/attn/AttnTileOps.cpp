//===- AttnTileOps.cpp - tile-level op verifiers --------------------------===//
#include "dialects/attn/AttnOps.h"

#include <cmath>
#include <string>

using namespace mlir;
using namespace mlir::attn;

namespace {
bool compatible(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}
/// A shape extent as the IR writes it ("?" when dynamic).
std::string ext(int64_t d) { return ShapedType::isDynamic(d) ? "?" : std::to_string(d); }
} // namespace

LogicalResult mlir::attn::verifyPairsTile(Operation *op, MemRefType src, MemRefType dst,
                                          bool transposed) {
  if (!src.getElementType().isBF16() || !dst.getElementType().isBF16())
    return op->emitOpError("pairs copies bf16 into a bf16 tile, got ")
           << src.getElementType() << " into " << dst.getElementType();
  // [D / 2, 2 R] (transposed) or [R / 2, 2 D].
  int64_t d = src.getDimSize(3), cols = dst.getDimSize(1);
  if (ShapedType::isDynamic(cols) || cols % 2)
    return op->emitOpError("a pairs tile needs a static, even column count, got ") << ext(cols);
  if (transposed ? !compatible(d, 2 * dst.getDimSize(0)) : !compatible(d, cols / 2))
    return op->emitOpError("pairs tile ") << ext(dst.getDimSize(0)) << "x" << ext(cols)
                                          << " does not hold rows of head_dim " << ext(d);
  return success();
}

LogicalResult CopyTileOp::verify() {
  auto src = getSource().getType(), dst = getDest().getType();
  int64_t d = src.getDimSize(3);
  if (getPairs()) {
    if (getScale())
      return emitOpError("pairs copies take no scale");
    return verifyPairsTile(*this, src, dst, getTransposed());
  }
  int64_t cols = getTransposed() ? dst.getDimSize(0) : dst.getDimSize(1);
  if (!compatible(d, cols))
    return emitOpError("tile ") << (getTransposed() ? "rows" : "columns") << " ("
                                << cols << ") must equal the source head_dim (" << d << ")";
  if (auto s = getScale(); s && !std::isfinite(s->convertToDouble()))
    return emitOpError("scale must be finite");
  return success();
}

LogicalResult TileMatmulOp::verify() {
  auto a = getA().getType(), b = getB().getType(), c = getC().getType();
  if (Value pf = getPrefetch()) {
    // Key rows like b's: b is [keys, D] when transposed, [keys, Dv] otherwise.
    auto t = cast<MemRefType>(pf.getType());
    if (getPairs() && !pairsInPlace())
      return emitOpError("prefetch is for b read in place (kv-in-place), not a pairs tile");
    if (!compatible(t.getDimSize(1), b.getDimSize(1)))
      return emitOpError("prefetch rows have ")
             << ext(t.getDimSize(1)) << " elements, b's rows " << ext(b.getDimSize(1));
  }
  if (auto s = getScale()) {
    if (!getPairs() || getAccumulate())
      return emitOpError("scale is only for a pairs product that does not accumulate");
    if (!std::isfinite(s->convertToDouble()))
      return emitOpError("scale must be finite");
  }
  if (getPairs()) {
    // b may also be an fp8 K/V cache read in place (widened to bf16 as it is
    // loaded); a pairs tile holds bf16.
    bool fp8B = isa<Float8E4M3FNType, Float8E5M2Type>(b.getElementType());
    if (!a.getElementType().isBF16() || !(b.getElementType().isBF16() || fp8B))
      return emitOpError("pairs needs bf16 a and b, got ")
             << a.getElementType() << " and " << b.getElementType();
    if (fp8B && !pairsInPlace())
      return emitOpError("pairs with fp8 b need b's rows read in place (kv-in-place), got b ")
             << b;
    if (!c.getElementType().isF32())
      return emitOpError("c must be f32");
    int64_t K = a.getDimSize(1);
    if (ShapedType::isDynamic(K) || K % 2 || ShapedType::isDynamic(b.getDimSize(1)))
      return emitOpError("pairs needs a static even contraction extent and static b columns, "
                         "got a ")
             << ext(a.getDimSize(0)) << "x" << ext(K) << ", b " << ext(b.getDimSize(0)) << "x"
             << ext(b.getDimSize(1));
    if (!compatible(a.getDimSize(0), c.getDimSize(0)))
      return emitOpError("c must have a's ") << ext(a.getDimSize(0)) << " rows";
    if (getTransposed()) {
      // a [M, K], b [N', K] key rows as stored (N' <= N), c [M, N].
      if (!compatible(b.getDimSize(1), K) ||
          (!b.isDynamicDim(0) && !c.isDynamicDim(1) && b.getDimSize(0) > c.getDimSize(1)))
        return emitOpError("transposed pairs shapes do not fit: a ")
               << ext(a.getDimSize(0)) << "x" << ext(K) << ", b " << ext(b.getDimSize(0)) << "x"
               << ext(b.getDimSize(1)) << " (expected N'x" << K << "), c "
               << ext(c.getDimSize(0)) << "x" << ext(c.getDimSize(1));
      return success();
    }
    if (pairsInPlace()) {
      // a [M, K], b [K', N] value rows as stored (K' <= K), c [M, N].
      if (!b.isDynamicDim(0) && b.getDimSize(0) > K)
        return emitOpError("pairs b has ") << b.getDimSize(0) << " rows, more than a's " << K
                                           << " columns";
      return success();
    }
    // a [M, K], b [K / 2, 2 N], c [M, N].
    if (b.getDimSize(1) % 2 || !compatible(b.getDimSize(0), K / 2) ||
        !compatible(b.getDimSize(1) / 2, c.getDimSize(1)))
      return emitOpError("pairs shapes do not fit: a ")
             << ext(a.getDimSize(0)) << "x" << ext(K) << ", b " << ext(b.getDimSize(0)) << "x"
             << ext(b.getDimSize(1)) << " (expected " << K / 2 << "x2N), c "
             << ext(c.getDimSize(0)) << "x" << ext(c.getDimSize(1));
    return success();
  }
  // b's contraction and column extents (b is [N, K] when transposed).
  int64_t bK = b.getDimSize(getTransposed() ? 1 : 0), bN = b.getDimSize(getTransposed() ? 0 : 1);
  if (!compatible(a.getDimSize(1), bK))
    return emitOpError("contraction extents differ: a is ")
           << ext(a.getDimSize(0)) << "x" << ext(a.getDimSize(1)) << ", b is "
           << ext(b.getDimSize(0)) << "x" << ext(b.getDimSize(1))
           << (getTransposed() ? " (transposed)" : "");
  if (!compatible(a.getDimSize(0), c.getDimSize(0)) || !compatible(bN, c.getDimSize(1)))
    return emitOpError("c must be ") << ext(a.getDimSize(0)) << "x" << ext(bN);
  if (!c.getElementType().isF32())
    return emitOpError("c must be f32");
  if (!a.getElementType().isF32())
    return emitOpError("a must be f32 (a tile buffer)");
  return success();
}

LogicalResult TileConvertOp::verify() {
  auto src = getSource().getType(), dst = getDest().getType();
  if (!compatible(src.getDimSize(0), dst.getDimSize(0)) ||
      !compatible(src.getDimSize(1), dst.getDimSize(1)))
    return emitOpError("source ") << ext(src.getDimSize(0)) << "x" << ext(src.getDimSize(1))
                                  << " and destination " << ext(dst.getDimSize(0)) << "x"
                                  << ext(dst.getDimSize(1)) << " differ in shape";
  return success();
}

LogicalResult TileMaskOp::verify() {
  if (getKind() == MaskKind::sliding_window) {
    if (auto sides = getWindowSides()) {
      if (getWindow())
        return emitOpError("window and window_sides are exclusive");
      if (sides->size() != 2 || (*sides)[0] < -1 || (*sides)[1] < -1)
        return emitOpError("window_sides must be [left, right], each >= -1");
    } else if (!getWindow() || *getWindow() < 1) {
      return emitOpError("sliding_window needs a window of at least 1");
    }
  } else if (getWindow() || getWindowSides()) {
    return emitOpError("window is only valid with sliding_window");
  }
  if (!getScores().getType().getElementType().isF32())
    return emitOpError("scores must be f32");
  return success();
}

LogicalResult TileBiasOp::verify() {
  if (getBias().getType().getRank() > 4)
    return emitOpError("bias rank must be at most 4, got ") << getBias().getType().getRank();
  if (!getScores().getType().getElementType().isF32())
    return emitOpError("scores must be f32");
  return success();
}

LogicalResult TileSoftmaxOp::verify() {
  auto s = getScores().getType(), acc = getAcc().getType();
  int64_t rows = s.getDimSize(0);
  for (auto [name, t] : {std::pair<StringRef, MemRefType>{"max", getMax().getType()},
                         {"sum", getSum().getType()}})
    if (!compatible(t.getDimSize(0), rows))
      return emitOpError() << name << " must have " << rows << " rows, got " << t.getDimSize(0);
  if (!compatible(acc.getDimSize(0), rows))
    return emitOpError("acc must have ") << rows << " rows, got " << acc.getDimSize(0);
  if (!s.getElementType().isF32() || !acc.getElementType().isF32())
    return emitOpError("scores and acc must be f32");
  return success();
}

LogicalResult TileStoreOp::verify() {
  auto acc = getAcc().getType(), dst = getDest().getType();
  if (!compatible(acc.getDimSize(0), getSum().getType().getDimSize(0)))
    return emitOpError("acc and sum row counts differ");
  if (!compatible(acc.getDimSize(1), dst.getDimSize(3)))
    return emitOpError("acc columns (") << acc.getDimSize(1)
                                        << ") must equal the destination head_dim ("
                                        << dst.getDimSize(3) << ")";
  if (!acc.getElementType().isF32())
    return emitOpError("acc must be f32");
  return success();
}

LogicalResult TileSoftcapOp::verify() {
  double c = getCap().convertToDouble();
  if (!(c > 0) || !std::isfinite(c))
    return emitOpError("cap must be positive and finite, got ") << c;
  if (!getScores().getType().getElementType().isF32())
    return emitOpError("scores must be f32");
  return success();
}

LogicalResult TileAlibiOp::verify() {
  if (!getScores().getType().getElementType().isF32())
    return emitOpError("scores must be f32");
  return success();
}

LogicalResult TileLseOp::verify() {
  if (!compatible(getMax().getType().getDimSize(0), getSum().getType().getDimSize(0)))
    return emitOpError("max and sum row counts differ");
  return success();
}

LogicalResult TileCombineOp::verify() {
  auto part = getPart().getType(), dst = getDest().getType();
  if (!part.getElementType().isF32())
    return emitOpError("part must be f32, got ") << part.getElementType();
  if (!compatible(part.getDimSize(3), dst.getDimSize(3)))
    return emitOpError("part head_dim (")
           << part.getDimSize(3) << ") must equal the destination head_dim ("
           << dst.getDimSize(3) << ")";
  if (!compatible(part.getDimSize(1), dst.getDimSize(1)) ||
      !compatible(getPartLse().getType().getDimSize(1), dst.getDimSize(1)) ||
      !compatible(getLse().getType().getDimSize(1), dst.getDimSize(1)))
    return emitOpError("part, part_lse, dest and lse must have the same heads");
  return success();
}
