//===- AttnOps.cpp - attn op verifiers ------------------------------------===//
#include "dialects/attn/AttnOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

#include <cmath>

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::attn;

#include "dialects/attn/AttnEnums.cpp.inc"

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.cpp.inc"

namespace {
/// Two extents agree when equal or when either is dynamic.
/// Whether the static element count times 8 bytes fits in int64: beyond it
/// the strides that lowering computes overflow (an assertion in MLIR's
/// layout code, or a wrong size in release builds).
bool fitsInMemory(ShapedType t) {
  int64_t n = 8;
  for (int64_t d : t.getShape())
    if (!ShapedType::isDynamic(d) && llvm::MulOverflow(n, d, n))
      return false;
  return true;
}

bool compatible(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

std::string dimStr(int64_t d) {
  return ShapedType::isDynamic(d) ? std::string("?") : std::to_string(d);
}

/// `bias` broadcasts to `target` under torch rules (aligned from the right,
/// each bias extent 1 or equal).
LogicalResult verifyBroadcastable(Operation *op, RankedTensorType bias,
                                  RankedTensorType target) {
  if (bias.getRank() > target.getRank())
    return op->emitOpError("bias rank ") << bias.getRank()
           << " exceeds the scores' rank " << target.getRank();
  int64_t off = target.getRank() - bias.getRank();
  for (int64_t i = 0; i < bias.getRank(); ++i) {
    int64_t b = bias.getDimSize(i), t = target.getDimSize(i + off);
    if (b != 1 && !compatible(b, t))
      return op->emitOpError("bias dimension ")
             << i << " (" << dimStr(b) << ") does not broadcast to scores dimension "
             << i + off << " (" << dimStr(t) << ")";
  }
  return success();
}

LogicalResult verifyMaskAttrs(Operation *op, MaskKind kind, bool hasBias,
                              std::optional<int64_t> window) {
  if ((kind == MaskKind::bias) != hasBias)
    return op->emitOpError(hasBias ? "has a bias operand but mask kind is not 'bias'"
                                   : "mask kind 'bias' requires a bias operand");
  if (kind == MaskKind::sliding_window) {
    if (!window)
      return op->emitOpError("mask kind 'sliding_window' requires a window");
    if (*window < 1)
      return op->emitOpError("window must be at least 1, got ") << *window;
  } else if (window) {
    return op->emitOpError("window is only valid with mask kind 'sliding_window'");
  }
  return success();
}
/// The mask, its alignment and window, soft-capping, ALiBi slopes and sinks
/// of attn.attention.
LogicalResult verifyVariants(Operation *op, RankedTensorType q, MaskKind kind, bool hasBias,
                             std::optional<int64_t> window,
                             std::optional<ArrayRef<int64_t>> sides, MaskAlign align,
                             std::optional<APFloat> softcap, Value slopes, Value sinks) {
  if ((kind == MaskKind::bias) != hasBias)
    return op->emitOpError(hasBias ? "has a bias operand but mask kind is not 'bias'"
                                   : "mask kind 'bias' requires a bias operand");
  if (kind == MaskKind::sliding_window) {
    if (!window && !sides)
      return op->emitOpError("mask kind 'sliding_window' requires a window or window_sides");
    if (window && sides)
      return op->emitOpError("window and window_sides are exclusive");
    if (window && *window < 1)
      return op->emitOpError("window must be at least 1, got ") << *window;
    if (sides && sides->size() != 2)
      return op->emitOpError("window_sides must be [left, right], got ")
             << sides->size() << " values";
    if (sides && ((*sides)[0] < -1 || (*sides)[1] < -1))
      return op->emitOpError("window_sides must be >= -1 (-1: unbounded), got [")
             << (*sides)[0] << ", " << (*sides)[1] << "]";
  } else if (window || sides) {
    return op->emitOpError("window is only valid with mask kind 'sliding_window'");
  }
  if (align != MaskAlign::top_left && kind != MaskKind::causal &&
      kind != MaskKind::sliding_window)
    return op->emitOpError("align is only valid with mask kinds 'causal' and 'sliding_window'");
  if (softcap) {
    double c = softcap->convertToDouble();
    if (!(c > 0) || !std::isfinite(c))
      return op->emitOpError("softcap must be positive and finite, got ") << c;
  }
  for (auto [name, v] : {std::pair<StringRef, Value>{"alibi_slopes", slopes}, {"sinks", sinks}}) {
    if (!v)
      continue;
    auto t = cast<RankedTensorType>(v.getType());
    if (t.getRank() != 1 || !t.getElementType().isF32())
      return op->emitOpError() << name << " must be a rank-1 f32 tensor [query heads], got "
                               << t;
    int64_t hq = q.getDimSize(1), n = t.getDimSize(0);
    if (!compatible(hq, n))
      return op->emitOpError() << name << " has " << n << " elements, expected one per query head ("
                               << hq << ")";
  }
  return success();
}
} // namespace

LogicalResult MatmulOp::verify() {
  auto lhs = getLhs().getType(), rhs = getRhs().getType();
  auto res = getResult().getType();
  int64_t rank = lhs.getRank();
  if (rank < 2)
    return emitOpError("operands must have rank >= 2, got ") << rank;
  if (rhs.getRank() != rank || res.getRank() != rank)
    return emitOpError("operands and result must have the same rank, got ")
           << rank << ", " << rhs.getRank() << " and " << res.getRank();
  for (int64_t i = 0; i < rank - 2; ++i) {
    if (!compatible(lhs.getDimSize(i), rhs.getDimSize(i)) ||
        !compatible(lhs.getDimSize(i), res.getDimSize(i)))
      return emitOpError("batch dimension ") << i << " differs: "
             << dimStr(lhs.getDimSize(i)) << " vs " << dimStr(rhs.getDimSize(i))
             << " -> " << dimStr(res.getDimSize(i));
  }
  int64_t m = lhs.getDimSize(rank - 2), k = lhs.getDimSize(rank - 1);
  int64_t rk = getTransposeRhs() ? rhs.getDimSize(rank - 1) : rhs.getDimSize(rank - 2);
  int64_t n = getTransposeRhs() ? rhs.getDimSize(rank - 2) : rhs.getDimSize(rank - 1);
  if (!compatible(k, rk))
    return emitOpError("contraction dimensions differ: lhs has ")
           << dimStr(k) << ", rhs has " << dimStr(rk);
  if (!compatible(m, res.getDimSize(rank - 2)) ||
      !compatible(n, res.getDimSize(rank - 1)))
    return emitOpError("result shape must end in ")
           << dimStr(m) << "x" << dimStr(n);
  return success();
}

LogicalResult ScaleOp::verify() {
  if (!std::isfinite(getScale().convertToDouble()))
    return emitOpError("scale must be finite");
  return success();
}

LogicalResult MaskOp::verify() {
  auto in = getInput().getType();
  if (in.getRank() < 2)
    return emitOpError("scores must have rank >= 2, got ") << in.getRank();
  if (failed(verifyMaskAttrs(*this, getKind(), !!getBias(), getWindow())))
    return failure();
  if (getKind() == MaskKind::none)
    return emitOpError("mask kind 'none' is not a mask");
  if (getAlign() != MaskAlign::top_left && getKind() != MaskKind::causal &&
      getKind() != MaskKind::sliding_window)
    return emitOpError("align is only valid with mask kinds 'causal' and 'sliding_window'");
  if (getBias())
    return verifyBroadcastable(*this, getBias().getType(), in);
  return success();
}

LogicalResult SoftmaxOp::verify() {
  int64_t rank = getInput().getType().getRank();
  int64_t axis = getAxis();
  if (axis < -rank || axis >= rank)
    return emitOpError("axis ") << axis << " is out of range for rank " << rank;
  if (Value sinks = getSinks()) {
    if (rank != 4 || (axis != -1 && axis != rank - 1))
      return emitOpError("sinks need scores [batch, heads, Lq, Lk] and the last axis");
    auto t = cast<RankedTensorType>(sinks.getType());
    if (t.getRank() != 1 || !t.getElementType().isF32())
      return emitOpError("sinks must be a rank-1 f32 tensor [heads], got ") << t;
    int64_t h = getInput().getType().getDimSize(1), n = t.getDimSize(0);
    if (!compatible(h, n))
      return emitOpError("sinks has ") << n << " elements, expected one per head (" << h << ")";
  }
  return success();
}

LogicalResult CastOp::verify() {
  if (getInput().getType().getShape() != getResult().getType().getShape())
    return emitOpError("cast must keep the shape");
  return success();
}

LogicalResult RepeatHeadsOp::verify() {
  auto in = getInput().getType(), res = getResult().getType();
  if (in.getRank() != 4 || res.getRank() != 4)
    return emitOpError("operand and result must have rank 4 [batch, heads, seq, head_dim]");
  if (getRepeats() < 1)
    return emitOpError("repeats must be at least 1, got ") << getRepeats();
  for (int64_t i : {0, 2, 3})
    if (!compatible(in.getDimSize(i), res.getDimSize(i)))
      return emitOpError("dimension ") << i << " must be unchanged";
  int64_t h = in.getDimSize(1), rh = res.getDimSize(1);
  if (!ShapedType::isDynamic(h) && !ShapedType::isDynamic(rh) && h * getRepeats() != rh)
    return emitOpError("result heads must be ") << h << " x " << getRepeats() << " = "
                                                 << h * getRepeats() << ", got " << rh;
  if (in.getElementType() != res.getElementType())
    return emitOpError("element type must be unchanged");
  return success();
}

LogicalResult AttentionOp::verify() {
  auto q = getQuery().getType(), k = getKey().getType(), v = getValue().getType();
  auto r = getResult().getType();
  for (auto [name, t] : {std::pair<StringRef, RankedTensorType>{"query", q},
                         {"key", k}, {"value", v}, {"result", r}})
  {
    if (t.getRank() != 4)
      return emitOpError() << name << " must have rank 4 [batch, heads, seq, head_dim], got rank "
                           << t.getRank();
    if (!fitsInMemory(t))
      return emitOpError() << name << " has more elements than a 64-bit byte size can count: "
                           << t;
  }
  // fp8 (quantized KV caches) is an element type of K and V only: they are
  // dequantized as they are read; the query, scores and result are wider.
  for (auto [name, t] : {std::pair<StringRef, RankedTensorType>{"query", q}, {"result", r}})
    if (t.getElementType().getIntOrFloatBitWidth() < 16)
      return emitOpError() << name << " element type " << t.getElementType()
                           << " is too narrow: 8-bit floats are for key and value only";
  if (k.getElementType() != v.getElementType() &&
      (k.getElementType().getIntOrFloatBitWidth() < 16 ||
       v.getElementType().getIntOrFloatBitWidth() < 16))
    return emitOpError("key and value must share an 8-bit element type, got ")
           << k.getElementType() << " and " << v.getElementType();
  if (!compatible(q.getDimSize(0), k.getDimSize(0)) ||
      !compatible(q.getDimSize(0), v.getDimSize(0)) ||
      !compatible(q.getDimSize(0), r.getDimSize(0)))
    return emitOpError("batch sizes differ");
  if (!compatible(k.getDimSize(1), v.getDimSize(1)))
    return emitOpError("key and value head counts differ: ")
           << dimStr(k.getDimSize(1)) << " vs " << dimStr(v.getDimSize(1));
  if (!compatible(k.getDimSize(2), v.getDimSize(2)))
    return emitOpError("key and value sequence lengths differ: ")
           << dimStr(k.getDimSize(2)) << " vs " << dimStr(v.getDimSize(2));
  if (!compatible(q.getDimSize(3), k.getDimSize(3)))
    return emitOpError("query and key head_dim differ: ")
           << dimStr(q.getDimSize(3)) << " vs " << dimStr(k.getDimSize(3));
  if (!compatible(r.getDimSize(1), q.getDimSize(1)) ||
      !compatible(r.getDimSize(2), q.getDimSize(2)) ||
      !compatible(r.getDimSize(3), v.getDimSize(3)))
    return emitOpError("result must be [batch, query heads, query seq, value head_dim]");
  int64_t group = getKvGroup();
  if (group < 1)
    return emitOpError("kv_group must be at least 1, got ") << group;
  int64_t hq = q.getDimSize(1), hkv = k.getDimSize(1);
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv)) {
    if (hkv == 0 && hq != 0) // (hq % 0 would trap: SIGFPE)
      return emitOpError("query heads (") << hq << ") with no KV heads";
    if (hkv == 0)
      return success(); // no heads at all: an empty attention
    if (hq % hkv != 0)
      return emitOpError("query heads (") << hq << ") must be a multiple of KV heads ("
                                          << hkv << ")";
    if (hq / hkv != group)
      return emitOpError("kv_group ") << group << " does not match query heads / KV heads = "
                                      << hq / hkv;
  }
  if (!std::isfinite(getScale().convertToDouble()))
    return emitOpError("scale must be finite");
  if (failed(verifyVariants(*this, q, getMask(), !!getBias(), getWindow(), getWindowSides(),
                            getAlign(), getSoftcap(), getAlibiSlopes(), getSinks())))
    return failure();
  if (getBias()) {
    SmallVector<int64_t> scores{q.getDimSize(0), q.getDimSize(1), q.getDimSize(2),
                                k.getDimSize(2)};
    return verifyBroadcastable(*this, getBias().getType(),
                               RankedTensorType::get(scores, r.getElementType()));
  }
  return success();
}
