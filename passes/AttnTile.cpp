//===- AttnTile.cpp - attn-tile: attn.attention -> tile program -----------===//
//
// Turns a function computing one attn.attention on its arguments into a
// destination-passing kernel on memrefs: a grid over (batch, head, query
// block) and a loop over KV blocks doing an online softmax on tile buffers.
//
// Why the function boundary changes here: the tile program writes its result
// in place (the GPU kernel and the CPU JIT both take an output buffer), and
// the graph-level functions attncc builds are exactly "args -> attention ->
// return", so a full one-shot bufferization would buy nothing.
//
//===----------------------------------------------------------------------===//
#include "passes/AttnTileRagged.h"
#include "passes/AttnTileSplit.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

#include <limits>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTILE
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

/// The rows [n0, n0 + rows) of head `h` of batch `b` of a [B, H, L, D] memref
/// as a 2-D [?, D] view (kv-in-place).
Value mlir::attn::kvRowsView(OpBuilder &b, Location loc, Value src, Value bIdx, Value h,
                             Value n0, Value rows) {
  auto st = cast<MemRefType>(src.getType());
  int64_t D = st.getDimSize(3);
  SmallVector<OpFoldResult> offsets{bIdx, h, n0, b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(1), rows, b.getIndexAttr(D)};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  auto type = memref::SubViewOp::inferRankReducedResultType({ShapedType::kDynamic, D}, st,
                                                            offsets, sizes, strides);
  return memref::SubViewOp::create(b, loc, cast<MemRefType>(type), src, offsets, sizes, strides);
}

/// A view of rows [r0, end) of a 1-D or 2-D tile buffer (null stays null).
static Value rowsFrom(OpBuilder &b, Location loc, Value buf, Value r0) {
  if (!buf)
    return buf;
  auto type = cast<MemRefType>(buf.getType());
  Value all = arith::ConstantIndexOp::create(b, loc, type.getDimSize(0));
  Value rows = arith::SubIOp::create(b, loc, all, r0);
  SmallVector<OpFoldResult> offsets{r0}, sizes{rows}, strides{b.getIndexAttr(1)};
  if (type.getRank() == 2) {
    offsets.push_back(b.getIndexAttr(0));
    sizes.push_back(b.getIndexAttr(type.getDimSize(1)));
    strides.push_back(b.getIndexAttr(1));
  }
  return memref::SubViewOp::create(b, loc, buf, offsets, sizes, strides);
}

RowTiles mlir::attn::skipMaskedRowTiles(OpBuilder &b, Location loc, const RowTiles &whole,
                                        Value n0, Value firstRow, int64_t right, Value rowBase) {
  auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
  int64_t BM = cast<MemRefType>(whole.s.getType()).getDimSize(0);
  Value diag = right == 0 ? firstRow : arith::AddIOp::create(b, loc, firstRow, idx(right));
  Value seen = arith::SubIOp::create(b, loc, n0, diag);
  Value r0 = arith::MaxSIOp::create(b, loc, seen, idx(0));
  r0 = arith::MinSIOp::create(b, loc, r0, idx(BM - kSkipRowGranule));
  r0 = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, r0, idx(kSkipRowGranule)),
                             idx(kSkipRowGranule));
  return {rowsFrom(b, loc, whole.q, r0),  rowsFrom(b, loc, whole.s, r0),
          rowsFrom(b, loc, whole.acc, r0), rowsFrom(b, loc, whole.mx, r0),
          rowsFrom(b, loc, whole.sm, r0), rowsFrom(b, loc, whole.p, r0),
          arith::AddIOp::create(b, loc, rowBase, r0)};
}

bool mlir::attn::canSkipMaskedRows(bool enabled, int64_t right, bool perRowTerm, bool pairs,
                                   bool kvInPlace, int64_t BM) {
  return enabled && right >= 0 && !perRowTerm && !pairs && !kvInPlace && BM > kSkipRowGranule;
}

bool mlir::attn::useInPlacePairs(Value q, Value k, Value v) {
  int64_t D = cast<ShapedType>(q.getType()).getDimSize(3);
  int64_t Dv = cast<ShapedType>(v.getType()).getDimSize(3);
  auto elt = [](Value x) { return cast<ShapedType>(x.getType()).getElementType(); };
  // A bf16 query over bf16 K/V, or over an fp8 cache (rows widened to bf16
  // exactly as they are loaded).
  bool kvOk = elt(k).isBF16() || isa<Float8E4M3FNType, Float8E5M2Type>(elt(k));
  if (!elt(q).isBF16() || !kvOk || elt(v) != elt(k))
    return false;
  return D > 0 && Dv > 0 && D % 32 == 0 && Dv % 16 == 0;
}

bool mlir::attn::usePairs(Value q, Value k, Value v, int64_t BM, int64_t BN, bool kvInPlace) {
  int64_t D = cast<ShapedType>(q.getType()).getDimSize(3);
  int64_t Dv = cast<ShapedType>(v.getType()).getDimSize(3);
  for (Value x : {q, k, v})
    if (!cast<ShapedType>(x.getType()).getElementType().isBF16())
      return false;
  return !kvInPlace && D % 32 == 0 && Dv % 16 == 0 && D > 0 && Dv > 0 && BM % 16 == 0 &&
         BN % 32 == 0;
}

MemRefType mlir::attn::denseMemRef(Type t) {
  auto rt = cast<RankedTensorType>(t);
  return MemRefType::get(rt.getShape(), rt.getElementType());
}

MemRefType mlir::attn::stridedMemRef(Type t) {
  auto rt = cast<RankedTensorType>(t);
  SmallVector<int64_t> strides(rt.getRank(), ShapedType::kDynamic);
  strides.back() = 1;
  auto layout = StridedLayoutAttr::get(t.getContext(), 0, strides);
  return MemRefType::get(rt.getShape(), rt.getElementType(), layout);
}

namespace {

/// The pieces of a function that attn-tile can lower.
struct AttentionFunc {
  AttentionOp attention;
  BlockArgument bias;     // null without a bias
  double biasScale = 1.0; // from an attn.scale between the argument and the op
};

/// Matches "args -> [attn.scale(bias arg)] -> attn.attention -> return".
FailureOr<AttentionFunc> matchAttentionFunc(func::FuncOp func) {
  AttentionFunc m;
  Block &body = func.getBody().front();
  for (Operation &op : body.without_terminator()) {
    if (auto att = dyn_cast<AttentionOp>(op)) {
      if (m.attention)
        return func.emitError("attn-tile: function '")
               << func.getSymName() << "' has more than one attn.attention";
      m.attention = att;
      continue;
    }
    if (auto sc = dyn_cast<ScaleOp>(op); sc && isa<BlockArgument>(sc.getInput()) &&
                                          sc->hasOneUse() &&
                                          isa<AttentionOp>(*sc->getUsers().begin()))
      continue;
    return op.emitError("attn-tile: function '")
           << func.getSymName() << "' must compute one attn.attention on its arguments "
           << "(run attn-fuse first); cannot tile '" << op.getName() << "'";
  }
  if (!m.attention)
    return func.emitError("attn-tile: function '")
           << func.getSymName() << "' has attn ops but no attn.attention (run attn-fuse first)";
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  if (ret.getNumOperands() != 1 || ret.getOperand(0) != m.attention.getResult())
    return m.attention.emitError("attn-tile: the function must return the attention result");
  for (Value v : {m.attention.getQuery(), m.attention.getKey(), m.attention.getValue()})
    if (!isa<BlockArgument>(v))
      return m.attention.emitError("attn-tile: query, key and value must be function arguments");
  for (Value v : {m.attention.getAlibiSlopes(), m.attention.getSinks()})
    if (v && !isa<BlockArgument>(v))
      return m.attention.emitError("attn-tile: alibi_slopes and sinks must be function arguments");
  if (Value b = m.attention.getBias()) {
    if (auto sc = b.getDefiningOp<ScaleOp>()) {
      m.biasScale = sc.getScale().convertToDouble();
      b = sc.getInput();
    }
    m.bias = cast<BlockArgument>(b);
  }
  return m;
}

/// Graph-level attn ops are those on tensors.
bool hasGraphLevelOps(func::FuncOp func) {
  bool found = false;
  func.walk([&](Operation *op) {
    if (isa_and_nonnull<AttnDialect>(op->getDialect()) &&
        llvm::any_of(op->getOperandTypes(), llvm::IsaPred<RankedTensorType>))
      found = true;
  });
  return found;
}

struct TileBuilder {
  OpBuilder &b;
  Location loc;
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f32(double v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivUIOp::create(b, loc, x, y); }
  Value minI(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value maxI(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value dim(Value m, int64_t d) { return memref::DimOp::create(b, loc, m, d); }
  Value alloc(ArrayRef<int64_t> shape) {
    return memref::AllocOp::create(b, loc, MemRefType::get(shape, b.getF32Type()));
  }
  void fill(Value buf, double v) {
    linalg::FillOp::create(b, loc, ValueRange{f32(v)}, ValueRange{buf});
  }
};

/// The grid as one scf.parallel point per (batch, head, query block[, split]);
/// the builder is left in its body, `ivs` are its induction variables.
Operation *emitGrid(OpBuilder &b, Location loc, ValueRange lbs, ValueRange ubs, ValueRange steps,
                    SmallVectorImpl<Value> &ivs) {
  auto grid = scf::ParallelOp::create(b, loc, lbs, ubs, steps);
  grid->setAttr("attn.grid", b.getUnitAttr());
  b.setInsertionPointToStart(grid.getBody());
  ivs.assign(grid.getInductionVars().begin(), grid.getInductionVars().end());
  return grid;
}

/// The K/V work of the whole grid in "K elements read" units: points x keys
/// per point x head_dim, times BM / 4 for query blocks of more rows (their
/// compute per key grows with the rows; a 4-row decode block costs about
/// what its loads do).
Value taskWork(TileBuilder &t, Value Lk, Value numSplits, int64_t BM, int64_t D) {
  Value keys = numSplits ? arith::CeilDivUIOp::create(t.b, t.loc, Lk, numSplits).getResult() : Lk;
  return t.mul(keys, t.idx(D * std::max<int64_t>(1, BM / 4)));
}

/// The grid as T tasks (cpu-tasks): an scf.parallel over T, each task an
/// scf.for over its share of the grid points in row-major order, the point
/// delinearized into (batch, head, query block[, split]). T is chosen at run
/// time: ceil(points x work per point / min-task-work), at least 1, at most
/// `maxTasks` and the point count. With T = 1 upstream async-parallel-for
/// calls the body inline, so a small call (a short decode step) never wakes
/// the thread pool.
Operation *emitTaskGrid(OpBuilder &b, Location loc, ValueRange ubs, Value workPerPoint,
                        int64_t maxTasks, int64_t minTaskWork, SmallVectorImpl<Value> &ivs) {
  TileBuilder t{b, loc};
  Value c0 = t.idx(0), c1 = t.idx(1);
  Value points = ubs[0];
  for (Value u : ubs.drop_front())
    points = t.mul(points, u);
  Value wanted = arith::CeilDivUIOp::create(b, loc, t.mul(points, workPerPoint),
                                            t.idx(std::max<int64_t>(1, minTaskWork)));
  Value T = t.minI(t.minI(t.maxI(wanted, c1), t.idx(maxTasks)), points);
  auto grid = scf::ParallelOp::create(b, loc, ValueRange{c0}, ValueRange{T}, ValueRange{c1});
  grid->setAttr("attn.grid", b.getUnitAttr());
  b.setInsertionPointToStart(grid.getBody());
  Value per = arith::CeilDivUIOp::create(b, loc, points, T);
  Value lo = t.mul(grid.getInductionVars()[0], per);
  Value hi = t.minI(t.add(lo, per), points);
  auto loop = scf::ForOp::create(b, loc, lo, hi, c1);
  b.setInsertionPointToStart(loop.getBody());
  ivs.assign(ubs.size(), Value());
  Value rest = loop.getInductionVar();
  for (int64_t d = static_cast<int64_t>(ubs.size()) - 1; d >= 0; --d) {
    ivs[d] = d == 0 ? rest : arith::RemUIOp::create(b, loc, rest, ubs[d]).getResult();
    if (d > 0)
      rest = t.div(rest, ubs[d]);
  }
  return grid;
}

LogicalResult tileFunction(func::FuncOp func, const AttentionFunc &m, int64_t BM,
                           int64_t BN, bool withLse, bool splitKv, bool kvInPlace,
                           int64_t tasks, int64_t minTaskWork, bool bf16Pairs,
                           bool skipMaskedRows, bool kvInPlacePairs, bool stridedKv) {
  AttentionOp att = m.attention;
  Block &body = func.getBody().front();
  MLIRContext *ctx = func.getContext();
  int64_t D = att.getQuery().getType().getDimSize(3);
  int64_t Dv = att.getValue().getType().getDimSize(3);
  if (ShapedType::isDynamic(D) || ShapedType::isDynamic(Dv))
    return att.emitError("attn-tile: head_dim must be static (tile buffers are sized by it)");

  // Function boundary: tensors -> memrefs, result -> trailing `out` argument.
  // With strided-kv (the CPU) K and V may be any view of rows of unit inner
  // stride (every other stride dynamic): MLA's latent cache passes V as
  // K[..., :Dv] (rows of Dk elements) and a [B, L, H, D] projection viewed
  // as [B, H, L, D] runs without a copy. The GPU's copies keep dense K/V.
  for (BlockArgument arg : body.getArguments()) {
    bool kv = stridedKv && (arg == att.getKey() || arg == att.getValue());
    arg.setType(kv ? stridedMemRef(arg.getType()) : denseMemRef(arg.getType()));
  }
  MemRefType outType = denseMemRef(att.getType());
  Value out = body.addArgument(outType, func.getLoc());
  tile_split::FormArgs form =
      tile_split::addFormArguments(body, outType, withLse, splitKv, func.getLoc());
  func.setFunctionType(FunctionType::get(ctx, body.getArgumentTypes(), {}));

  Value q = att.getQuery(), k = att.getKey(), v = att.getValue();
  double scale = att.getScale().convertToDouble();
  MaskKind kind = att.getMask();
  int64_t group = att.getKvGroup();
  std::optional<int64_t> window = att.getWindow();
  bool structured = kind == MaskKind::causal || kind == MaskKind::sliding_window;
  // The structured mask as flash-attn's window_size (left, right), -1 = unbounded.
  int64_t left = -1, right = -1;
  if (kind == MaskKind::causal) {
    right = 0;
  } else if (kind == MaskKind::sliding_window && window) {
    left = *window - 1;
    right = 0;
  } else if (kind == MaskKind::sliding_window) {
    left = (*att.getWindowSides())[0];
    right = (*att.getWindowSides())[1];
  }
  bool bottomRight = structured && att.getAlign() == MaskAlign::bottom_right;
  Value slopes = att.getAlibiSlopes(), sinks = att.getSinks();

  OpBuilder builder(att);
  Location loc = att.getLoc();
  TileBuilder t{builder, loc};
  Value c0 = t.idx(0), c1 = t.idx(1), cBM = t.idx(BM), cBN = t.idx(BN);
  Value B = t.dim(q, 0), Hq = t.dim(q, 1), Lq = t.dim(q, 2), Lk = t.dim(k, 2);
  Value numMBlocks = t.div(t.add(Lq, t.idx(BM - 1)), cBM);
  // Lk - Lq: the row offset of bottom-right masks and of ALiBi (run time when
  // the lengths are dynamic).
  Value lenOffset = (bottomRight || slopes) ? t.sub(Lk, Lq) : Value();
  Value maskOffset = bottomRight ? lenOffset : Value();
  Value cGroup = t.idx(group);

  // Split-KV: a fourth grid dimension over the P splits of the KV range.
  Value numSplits = splitKv ? tile_split::splitCount(builder, loc, form.part, B) : Value();
  SmallVector<Value> lbs{c0, c0, c0}, ubs{B, Hq, numMBlocks}, steps{c1, c1, c1};
  if (splitKv) {
    lbs.push_back(c0);
    ubs.push_back(numSplits);
    steps.push_back(c1);
  }
  SmallVector<Value> ivs;
  Operation *grid = tasks > 0 ? emitTaskGrid(builder, loc, ubs, taskWork(t, Lk, numSplits, BM, D),
                                             tasks, minTaskWork, ivs)
                              : emitGrid(builder, loc, lbs, ubs, steps, ivs);
  Value bIdx = ivs[0], hIdx = ivs[1];
  Value hKv = t.div(hIdx, cGroup);
  Value m0 = t.mul(ivs[2], cBM);
  Value validM = t.sub(Lq, m0);

  bool pairs = bf16Pairs && usePairs(q, k, v, BM, BN, kvInPlace);
  // kv-in-place-pairs: bf16 Q and P tiles, both matmuls `pairs` on the K/V
  // rows as stored (vdpbf16ps on the CPU's AVX-512-BF16 class).
  bool inPlacePairs = kvInPlace && kvInPlacePairs && useInPlacePairs(q, k, v);
  bool bf16Tiles = pairs || inPlacePairs;
  Type bf16 = builder.getBF16Type();
  auto allocBf16 = [&](ArrayRef<int64_t> shape) -> Value {
    return memref::AllocOp::create(builder, loc, MemRefType::get(shape, bf16));
  };
  Value qt = bf16Tiles ? allocBf16({BM, D}) : t.alloc({BM, D});
  Value s = t.alloc({BM, BN}), acc = t.alloc({BM, Dv});
  Value mx = t.alloc({BM}), sm = t.alloc({BM});
  // kv-in-place: no K/V tile buffers; the matmuls read views of K and V.
  // Pairs: K^T as [D / 2, 2 BN], V as [BN / 2, 2 Dv], P rounded into %p.
  Value kt = kvInPlace ? Value() : pairs ? allocBf16({D / 2, 2 * BN}) : t.alloc({D, BN});
  Value vt = kvInPlace ? Value() : pairs ? allocBf16({BN / 2, 2 * Dv}) : t.alloc({BN, Dv});
  Value p = bf16Tiles ? allocBf16({BM, BN}) : Value();
  t.fill(acc, 0.0);
  // Split-KV with P = 1 at run time: the one split writes the output (and
  // LSE) itself and the combine grid is skipped (a decode loop keeps the
  // split kernel at every length; at short lengths P is 1).
  Value oneSplit = splitKv ? t.cmp(arith::CmpIPredicate::eq, numSplits, c1) : Value();
  if (sinks) {
    // The sink joins the softmax as a column of logit sinks[h]: the running
    // max starts at it and the running sum at exp(sink - max) = 1. Split
    // partials leave it to the combine.
    Value sink = memref::LoadOp::create(builder, loc, sinks, ValueRange{hIdx});
    Value sum = t.f32(1.0);
    if (splitKv) {
      sink = arith::SelectOp::create(builder, loc, oneSplit, sink,
                                     t.f32(-std::numeric_limits<double>::infinity()));
      sum = arith::SelectOp::create(builder, loc, oneSplit, sum, t.f32(0.0));
    }
    linalg::FillOp::create(builder, loc, ValueRange{sink}, ValueRange{mx});
    linalg::FillOp::create(builder, loc, ValueRange{sum}, ValueRange{sm});
  } else {
    t.fill(mx, -std::numeric_limits<double>::infinity());
    t.fill(sm, 0.0);
  }
  // Pairs: Q copied as it is (bf16, exact), the scale applied to the f32
  // scores by the Q K^T matmul.
  FloatAttr scaleAttr = builder.getF64FloatAttr(scale);
  auto copyQ = CopyTileOp::create(builder, loc, q, bIdx, hIdx, m0, validM, qt,
                                  /*transposed=*/false, bf16Tiles ? FloatAttr() : scaleAttr);
  (void)copyQ;

  // KV range: blocks entirely right of the window (above the diagonal for
  // causal) or entirely left of it are never visited. m0a is the block's
  // first query row after alignment.
  Value m0a = maskOffset ? t.add(m0, maskOffset) : m0;
  Value lo = c0, hi = Lk;
  if (right >= 0)
    hi = t.minI(Lk, t.add(m0a, right == 0 ? cBM : t.idx(BM + right)));
  if (left >= 0) {
    Value first = t.maxI(c0, left == 0 ? m0a : t.sub(m0a, t.idx(left)));
    lo = t.mul(t.div(first, cBN), cBN);
  }
  if (bottomRight || att.getWindowSides() || splitKv)
    hi = t.maxI(hi, lo); // an empty range stays empty (lo <= hi for the pipeliner)
  if (splitKv)
    std::tie(lo, hi) = tile_split::splitRange(builder, loc, lo, hi, ivs[3],
                                              numSplits, BN);
  bool skipRows = canSkipMaskedRows(skipMaskedRows, right, slopes || m.bias, pairs, kvInPlace,
                                    BM);
  auto kvLoop = scf::ForOp::create(builder, loc, lo, hi, cBN);
  kvLoop->setAttr(kKvLoopAttr, builder.getUnitAttr());
  {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPointToStart(kvLoop.getBody());
    Value n0 = kvLoop.getInductionVar();
    Value validN = t.sub(Lk, n0);
    // skip-masked-rows: on and above the diagonal, the block's first rows see
    // no key of this KV block; its ops run on the rows from the first that does.
    RowTiles rt{qt, s, acc, mx, sm, p, m0};
    if (skipRows)
      rt = skipMaskedRowTiles(builder, loc, rt, n0, m0a, right, m0);
    Value kOperand = kt, vOperand = vt;
    if (kvInPlace) {
      Value rows = t.minI(validN, cBN);
      kOperand = kvRowsView(builder, loc, k, bIdx, hKv, n0, rows);
      vOperand = kvRowsView(builder, loc, v, bIdx, hKv, n0, rows);
    } else {
      CopyTileOp::create(builder, loc, k, bIdx, hKv, n0, validN, kt, /*transposed=*/true,
                         FloatAttr(), pairs);
      CopyTileOp::create(builder, loc, v, bIdx, hKv, n0, validN, vt, /*transposed=*/false,
                         FloatAttr(), pairs);
    }
    TileMatmulOp::create(builder, loc, rt.q, kOperand, rt.s, /*accumulate=*/false,
                         /*transposed=*/kvInPlace, bf16Tiles,
                         bf16Tiles ? scaleAttr : FloatAttr(), /*prefetch=*/Value());
    if (auto cap = att.getSoftcapAttr())
      TileSoftcapOp::create(builder, loc, rt.s, cap);
    if (slopes)
      TileAlibiOp::create(builder, loc, s, slopes, hIdx, m0, n0, lenOffset);
    if (m.bias)
      TileBiasOp::create(builder, loc, s, m.bias, bIdx, hIdx, m0, n0, validM, validN,
                         builder.getF64FloatAttr(m.biasScale));
    // Element masks only where the block straddles the end of the keys, the
    // diagonal, or the window's left edge.
    Value blockEnd = t.add(n0, cBN);
    Value needsMask = t.cmp(arith::CmpIPredicate::sgt, blockEnd, Lk);
    if (right >= 0) {
      Value diag = t.cmp(arith::CmpIPredicate::sgt, t.sub(blockEnd, c1),
                         right == 0 ? m0a : t.add(m0a, t.idx(right)));
      needsMask = arith::OrIOp::create(builder, loc, needsMask, diag);
    }
    if (left >= 0) {
      Value leftEdge = t.cmp(arith::CmpIPredicate::sle, n0,
                             t.sub(t.add(m0a, t.idx(BM - 1)), t.idx(left + 1)));
      needsMask = arith::OrIOp::create(builder, loc, needsMask, leftEdge);
    }
    auto ifMask = scf::IfOp::create(builder, loc, needsMask, /*withElseRegion=*/false);
    {
      OpBuilder::InsertionGuard g2(builder);
      builder.setInsertionPointToStart(ifMask.thenBlock());
      TileMaskOp::create(builder, loc, rt.s, rt.row, n0, validN, maskOffset,
                         MaskKindAttr::get(ctx, structured ? kind : MaskKind::none),
                         window ? builder.getI64IntegerAttr(*window) : IntegerAttr(),
                         att.getWindowSidesAttr());
    }
    TileSoftmaxOp::create(builder, loc, rt.s, rt.mx, rt.sm, rt.acc);
    if (bf16Tiles)
      TileConvertOp::create(builder, loc, rt.s, rt.p);
    TileMatmulOp::create(builder, loc, bf16Tiles ? rt.p : rt.s, vOperand, rt.acc,
                         /*accumulate=*/true, /*transposed=*/false, bf16Tiles, FloatAttr(),
                         /*prefetch=*/Value());
  }
  auto storeFinal = [&] {
    TileStoreOp::create(builder, loc, acc, sm, out, bIdx, hIdx, m0, validM);
    if (form.lse)
      TileLseOp::create(builder, loc, mx, sm, form.lse, bIdx, hIdx, m0, validM);
  };
  if (splitKv) {
    auto ifOne = scf::IfOp::create(builder, loc, oneSplit, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard g(builder);
    builder.setInsertionPointToStart(ifOne.thenBlock());
    storeFinal();
    // Otherwise this split's normalized partial output and LSE, at batch s * B + b.
    builder.setInsertionPointToStart(ifOne.elseBlock());
    Value pb = t.add(t.mul(ivs[3], B), bIdx);
    TileStoreOp::create(builder, loc, acc, sm, form.part, pb, hIdx, m0, validM);
    TileLseOp::create(builder, loc, mx, sm, form.partLse, pb, hIdx, m0, validM);
  } else {
    storeFinal();
  }
  for (Value buf : {qt, s, acc, mx, sm, kt, vt, p})
    if (buf)
      memref::DeallocOp::create(builder, loc, buf);
  if (splitKv) {
    builder.setInsertionPointAfter(grid);
    auto ifMany = scf::IfOp::create(builder, loc, t.cmp(arith::CmpIPredicate::ugt, numSplits, c1),
                                    /*withElseRegion=*/false);
    builder.setInsertionPointToStart(ifMany.thenBlock());
    tile_split::emitCombine(builder, loc, form, out, sinks, B, Hq, Lq, numSplits, BM);
  }

  // Drop the graph-level ops and return nothing.
  Operation *ret = body.getTerminator();
  builder.setInsertionPoint(ret);
  func::ReturnOp::create(builder, ret->getLoc());
  ret->erase();
  Operation *biasScale = att.getBias() ? att.getBias().getDefiningOp() : nullptr;
  att->erase();
  if (biasScale)
    biasScale->erase();
  return success();
}

/// The largest block size attn-tile accepts (the Python API allows 256).
constexpr int64_t kMaxBlock = 4096;

struct AttnTilePass : mlir::attn::impl::AttnTileBase<AttnTilePass> {
  using AttnTileBase::AttnTileBase;

  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      if (!hasGraphLevelOps(func))
        continue; // nothing of ours to tile
      for (auto [name, v] :
           {std::pair<StringRef, int64_t>{"block-m", blockM}, {"block-n", blockN}})
        if (v < 1 || (v & (v - 1)) != 0) {
          func.emitError("attn-tile: ") << name << " must be a power of two, got " << v;
          return signalPassFailure();
        } else if (v > kMaxBlock) {
          // Tile buffers are block-m x block-n x head_dim floats: larger blocks
          // overflow size computations downstream (and allocate terabytes).
          func.emitError("attn-tile: ")
              << name << " must be at most " << kMaxBlock << ", got " << v;
          return signalPassFailure();
        }
      if (RaggedAttentionOp ragged = findRaggedAttention(func)) {
        if (splitKv) {
          // Work items are query blocks with their own KV ranges; splitting
          // them needs a per-item split count (docs/ragged-paged.md).
          ragged.emitError("attn-tile: split-kv is not supported for attn.ragged_attention");
          return signalPassFailure();
        }
        RaggedTileOptions o;
        o.blockM = blockM;
        o.blockN = blockN;
        o.kvInPlace = kvInPlace;
        o.withLse = lse;
        o.bf16Pairs = bf16Pairs;
        o.skipMaskedRows = skipMaskedRows;
        o.kvInPlacePairs = kvInPlacePairs;
        o.headsInner = headsInner;
        if (failed(tileRaggedFunction(func, ragged, o)))
          return signalPassFailure();
        continue;
      }
      if (headsInner) {
        func.emitError("attn-tile: heads-inner applies to attn.ragged_attention only");
        return signalPassFailure();
      }
      FailureOr<AttentionFunc> m = matchAttentionFunc(func);
      if (failed(m))
        return signalPassFailure();
      if (cpuTasks < 0 || minTaskWork < 1) {
        func.emitError("attn-tile: cpu-tasks must be >= 0 and min-task-work >= 1, got ")
            << static_cast<int64_t>(cpuTasks) << " and " << static_cast<int64_t>(minTaskWork);
        return signalPassFailure();
      }
      if (failed(tileFunction(func, *m, blockM, blockN, lse || splitKv, splitKv, kvInPlace,
                              cpuTasks, minTaskWork, bf16Pairs, skipMaskedRows,
                              kvInPlacePairs, stridedKv)))
        return signalPassFailure();
    }
  }
};
} // namespace
