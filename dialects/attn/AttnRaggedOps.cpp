//===- AttnRaggedOps.cpp - verifiers of the ragged / paged ops ------------===//
#include "dialects/attn/AttnOps.h"

#include <cmath>

using namespace mlir;
using namespace mlir::attn;

namespace {
bool compatible(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}
} // namespace

LogicalResult RaggedAttentionOp::verify() {
  auto q = getQuery().getType(), k = getKey().getType(), v = getValue().getType();
  auto r = getResult().getType();
  for (auto [name, t] : {std::pair<StringRef, RankedTensorType>{"query", q},
                         {"key", k}, {"value", v}, {"result", r}})
    if (t.getRank() != 4)
      return emitOpError() << name << " must have rank 4, got rank " << t.getRank();
  auto w = getWork().getType();
  if (w.getRank() != 2 || !compatible(w.getDimSize(1), 7))
    return emitOpError("work must be [blocks, 7] (qb, qr, qn, kb, kr, kn, pos), got ") << w;
  if (Value bt = getBlockTable()) {
    if (cast<RankedTensorType>(bt.getType()).getRank() != 2)
      return emitOpError("block_table must be [sequences, max_pages], got ") << bt.getType();
  }
  if (!compatible(k.getDimSize(0), v.getDimSize(0)) ||
      !compatible(k.getDimSize(1), v.getDimSize(1)) ||
      !compatible(k.getDimSize(2), v.getDimSize(2)))
    return emitOpError("key and value must have the same [batch or pages, heads, rows]");
  if (!compatible(q.getDimSize(3), k.getDimSize(3)))
    return emitOpError("query and key head_dim differ");
  if (ShapedType::isDynamic(q.getDimSize(3)) || ShapedType::isDynamic(v.getDimSize(3)))
    return emitOpError("head_dim must be static");
  for (int d : {0, 1, 2})
    if (!compatible(r.getDimSize(d), q.getDimSize(d)))
      return emitOpError("result must be [Bq, H, Lq, value head_dim] of the query");
  if (!compatible(r.getDimSize(3), v.getDimSize(3)))
    return emitOpError("result head_dim must be the value's");
  int64_t group = getKvGroup();
  if (group < 1)
    return emitOpError("kv_group must be at least 1, got ") << group;
  int64_t hq = q.getDimSize(1), hkv = k.getDimSize(1);
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv) && hkv * group != hq)
    return emitOpError("query heads (") << hq << ") must be kv_group (" << group
                                        << ") x KV heads (" << hkv << ")";
  if (!std::isfinite(getScale().convertToDouble()))
    return emitOpError("scale must be finite");
  if (auto c = getSoftcap(); c && !(c->convertToDouble() > 0 && std::isfinite(c->convertToDouble())))
    return emitOpError("softcap must be positive and finite");
  if (auto sides = getWindowSides()) {
    if (sides->size() != 2 || (*sides)[0] < -1 || (*sides)[1] < -1)
      return emitOpError("window_sides must be [left, right], each >= -1 (-1: unbounded)");
  }
  for (auto [name, val] :
       {std::pair<StringRef, Value>{"alibi_slopes", getAlibiSlopes()}, {"sinks", getSinks()}}) {
    if (!val)
      continue;
    auto t = cast<RankedTensorType>(val.getType());
    if (t.getRank() != 1 || !t.getElementType().isF32() || !compatible(t.getDimSize(0), hq))
      return emitOpError() << name << " must be an f32 tensor with one element per query head, got "
                           << t;
  }
  return success();
}

LogicalResult GatherTileOp::verify() {
  auto src = getSource().getType(), dst = getDest().getType();
  if (getPairs())
    return verifyPairsTile(*this, src, dst, getTransposed());
  int64_t d = src.getDimSize(3);
  int64_t cols = getTransposed() ? dst.getDimSize(0) : dst.getDimSize(1);
  if (!compatible(d, cols))
    return emitOpError("tile ") << (getTransposed() ? "rows" : "columns") << " (" << cols
                                << ") must equal the source head_dim (" << d << ")";
  return success();
}
