//===- AttnFuse.cpp - attn-fuse: graph chain -> attn.attention ------------===//
//
// Anchors on the final `P @ V` matmul and walks up through the chain users
// write. Scales may sit on Q, on K, or on the scores, before or after the
// mask; a bias applied before a scale is scaled with it so that the fused
// form `softmax(QK^T * scale + bias) V` stays exact. A tanh between scales
// before the mask (`c * tanh(s / c)`) becomes the `softcap` attribute; the
// mask's alignment and the softmax's sinks move to the fused op unchanged.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNFUSE
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Strips `attn.cast` ops (softmax upcast/downcast) between two stages.
Value skipCasts(Value v) {
  while (auto cast = v.getDefiningOp<CastOp>())
    v = cast.getInput();
  return v;
}

/// Strips casts and scales on a matmul operand, folding scales into `scale`.
Value skipCastsAndScales(Value v, double &scale) {
  while (true) {
    v = skipCasts(v);
    auto s = v.getDefiningOp<ScaleOp>();
    if (!s)
      return v;
    scale *= s.getScale().convertToDouble();
    v = s.getInput();
  }
}

/// True when every cast between `from` (an operand) and `to` (what it was
/// traced back to) widens, so that computing from `to` directly is exact.
bool isWidening(Value from, Value to) {
  unsigned width = getElementTypeOrSelf(to.getType()).getIntOrFloatBitWidth();
  for (Value v = from; v != to;) {
    Operation *def = v.getDefiningOp();
    if (!def || def->getNumOperands() == 0)
      return true;
    if (auto cast = dyn_cast<CastOp>(def)) {
      unsigned w = getElementTypeOrSelf(cast.getType()).getIntOrFloatBitWidth();
      if (w < width)
        return false;
    }
    v = def->getOperand(0);
  }
  return true;
}

struct FuseAttentionChain : OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MatmulOp pv, PatternRewriter &rewriter) const override {
    if (pv.getTransposeRhs() || pv.getLhs().getType().getRank() != 4)
      return rewriter.notifyMatchFailure(pv, "not a rank-4 P @ V");
    auto softmax = skipCasts(pv.getLhs()).getDefiningOp<SoftmaxOp>();
    if (!softmax)
      return rewriter.notifyMatchFailure(pv, "lhs is not a softmax");
    int64_t rank = softmax.getInput().getType().getRank();
    if (softmax.getAxis() != -1 && softmax.getAxis() != rank - 1)
      return rewriter.notifyMatchFailure(pv, "softmax is not over the key axis");

    // Walk up from the softmax input. `above` is the product of the scales
    // applied after the current point.
    double scale = 1.0, above = 1.0;
    MaskOp mask;
    double maskScale = 1.0;
    // Soft-capping: P * tanh(S * QK) with P the scales above the tanh, S those
    // below, is softcap P on the scores scaled by S * P (= the final `scale`).
    std::optional<double> softcap;
    Value s = skipCasts(softmax.getInput());
    while (true) {
      if (auto sc = s.getDefiningOp<ScaleOp>()) {
        double f = sc.getScale().convertToDouble();
        scale *= f;
        above *= f;
        s = skipCasts(sc.getInput());
        continue;
      }
      if (auto m = s.getDefiningOp<MaskOp>()) {
        if (mask)
          return rewriter.notifyMatchFailure(pv, "more than one mask");
        if (softcap)
          return rewriter.notifyMatchFailure(pv, "a mask before the soft-cap tanh");
        if (m.getKind() != MaskKind::bias && above <= 0.0)
          return rewriter.notifyMatchFailure(pv, "non-positive scale after a structured mask");
        mask = m;
        maskScale = above;
        s = skipCasts(m.getInput());
        continue;
      }
      if (auto th = s.getDefiningOp<TanhOp>()) {
        if (softcap)
          return rewriter.notifyMatchFailure(pv, "more than one tanh");
        if (!(above > 0.0) || !std::isfinite(above))
          return rewriter.notifyMatchFailure(pv, "the soft-cap tanh is not scaled by a c > 0");
        softcap = above;
        s = skipCasts(th.getInput());
        continue;
      }
      break;
    }
    auto qk = s.getDefiningOp<MatmulOp>();
    if (!qk || !qk.getTransposeRhs())
      return rewriter.notifyMatchFailure(pv, "scores are not Q @ K^T");

    // Casts on Q/K/V are dropped: the fused op computes in f32 from the
    // inputs' own precision. A cast that narrows would change the result.
    Value q = skipCastsAndScales(qk.getLhs(), scale);
    Value k = skipCastsAndScales(qk.getRhs(), scale);
    Value v = skipCasts(pv.getRhs());
    int64_t group = 1;
    auto kRep = k.getDefiningOp<RepeatHeadsOp>();
    auto vRep = v.getDefiningOp<RepeatHeadsOp>();
    if (kRep && vRep && kRep.getRepeats() == vRep.getRepeats()) {
      group = kRep.getRepeats();
      k = skipCasts(kRep.getInput());
      v = skipCasts(vRep.getInput());
    }
    if (!isWidening(qk.getLhs(), q) || !isWidening(qk.getRhs(), k) || !isWidening(pv.getRhs(), v))
      return rewriter.notifyMatchFailure(pv, "a cast on Q, K or V narrows the precision");

    Location loc = pv.getLoc();
    Value bias;
    MaskKind kind = MaskKind::none;
    IntegerAttr window;
    MaskAlignAttr align;
    if (mask) {
      kind = mask.getKind();
      window = mask.getWindowAttr();
      if (mask.getAlign() != MaskAlign::top_left)
        align = mask.getAlignAttr();
      bias = mask.getBias();
      if (bias && maskScale != 1.0)
        bias = ScaleOp::create(rewriter, loc, bias, rewriter.getF64FloatAttr(maskScale));
    }
    auto fused = AttentionOp::create(
        rewriter, loc, pv.getType(), q, k, v, bias, /*alibi_slopes=*/Value(), softmax.getSinks(),
        rewriter.getF64FloatAttr(scale), MaskKindAttr::get(rewriter.getContext(), kind),
        align, window, /*window_sides=*/DenseI64ArrayAttr(),
        softcap ? rewriter.getF64FloatAttr(*softcap) : FloatAttr(),
        rewriter.getI64IntegerAttr(group));
    rewriter.replaceOp(pv, fused.getResult());
    return success();
  }
};

/// `cast(attention)` -> `attention` producing the cast's type directly.
struct FoldCastIntoAttention : OpRewritePattern<CastOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(CastOp cast, PatternRewriter &rewriter) const override {
    auto att = cast.getInput().getDefiningOp<AttentionOp>();
    if (!att || !att->hasOneUse())
      return failure();
    rewriter.modifyOpInPlace(att, [&] { att.getResult().setType(cast.getType()); });
    rewriter.replaceOp(cast, att.getResult());
    return success();
  }
};

struct AttnFusePass : mlir::attn::impl::AttnFuseBase<AttnFusePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAttentionChain, FoldCastIntoAttention>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
