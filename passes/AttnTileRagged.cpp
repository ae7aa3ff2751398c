//===- AttnTileRagged.cpp - attn-tile: attn.ragged_attention --------------===//
//
// The tile program of a ragged batch / paged KV cache: a grid over (work
// item, head), where a work item is one query block of one sequence read from
// the `work` table (qb, qr, qn, kb, kr, kn, pos), and the same online-softmax
// KV loop as attn.attention's. Lengths and offsets are data, so one kernel
// serves every batch composition; the grid's first extent is the number of
// work items, i.e. work is split by query blocks (tokens), not by sequences.
// K/V copies are attn.copy_tile for packed K/V and attn.gather_tile (through
// the block table) for paged caches. With kv-in-place (small query blocks:
// decode) Q.K^T runs as dot products over K rows: packed K/V are read through
// views, a paged cache's K rows are gathered untransposed. With `lse`, each
// query row's log-sum-exp goes to a trailing strided argument (the API passes
// views of one [H, total_q] tensor, flash-attn varlen's layout). See
// docs/ragged-paged.md.
//
//===----------------------------------------------------------------------===//
#include "passes/AttnTileRagged.h"
#include "passes/IRBuild.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Software prefetch of rows [from, from + count) of the K and V caches
/// `srcs` (clamped to the sequence's last key row `last`), each row through
/// its own block-table lookup, shared by K and V: the next block's gathered
/// rows (decode at page sizes that are not read in place), as scattered as
/// the pages, whose loads stall the gather copies without it. Into L2
/// (prefetcht2), since the copies issue many loads at once (into L1, page 1
/// ran 10.7 ms against 5.4-5.7 on Zen 5, bf16 decode B8 Hq32/Hkv8 D128 4k;
/// slower on Emerald Rapids too). Pages read in place use tile_matmul's
/// `prefetch` instead.
void prefetchRows(OpBuilder &b, Location loc, ValueRange srcs, Value table, Value seq,
                  Value head, Value from, int64_t count, Value last, int64_t P) {
  IRBuild t{b, loc};
  int64_t D = cast<MemRefType>(srcs[0].getType()).getDimSize(3);
  int64_t locality = ShapedType::isDynamic(P) ? 1 : 3;
  PageRows pages(t, ShapedType::isDynamic(P) ? t.dim(srcs[0], 2) : t.idx(P));
  t.loop(t.idx(0), t.idx(count), t.idx(1), [&](Value r) {
    Value at = t.minsi(t.addi(from, r), last);
    auto [entry, slot] = pages.of(t, at);
    Value page = memref::LoadOp::create(b, loc, table, ValueRange{seq, entry});
    Value pageIdx = arith::IndexCastOp::create(b, loc, b.getIndexType(), page);
    for (Value src : srcs)
      t.prefetchLines(src, ValueRange{pageIdx, head, slot}, 0, D, locality);
  });
}

/// Rows gathered for the in-place form per prefetch step (AttnTileRagged's KV loop).
constexpr int64_t kGatherChunk = 16;

/// Rows [r0, r0 + n) of a 2-D tile buffer, as a static-size view.
Value chunkRows(OpBuilder &b, Location loc, Value buf, int64_t r0, int64_t n) {
  auto type = cast<MemRefType>(buf.getType());
  if (r0 == 0 && n == type.getDimSize(0))
    return buf;
  SmallVector<OpFoldResult> offsets{b.getIndexAttr(r0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes{b.getIndexAttr(n), b.getIndexAttr(type.getDimSize(1))};
  SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
  return memref::SubViewOp::create(b, loc, buf, offsets, sizes, strides);
}

} // namespace

RaggedAttentionOp mlir::attn::findRaggedAttention(func::FuncOp func) {
  RaggedAttentionOp found;
  func.walk([&](RaggedAttentionOp op) { found = op; });
  return found;
}

LogicalResult mlir::attn::tileRaggedFunction(func::FuncOp func, RaggedAttentionOp att,
                                             const RaggedTileOptions &o) {
  int64_t BM = o.blockM, BN = o.blockN;
  bool kvInPlace = o.kvInPlace;
  Block &body = func.getBody().front();
  for (Operation &op : body.without_terminator())
    if (&op != att.getOperation())
      return op.emitError("attn-tile: function '")
             << func.getSymName() << "' must compute one attn.ragged_attention on its "
             << "arguments; cannot tile '" << op.getName() << "'";
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  if (ret.getNumOperands() != 1 || ret.getOperand(0) != att.getResult())
    return att.emitError("attn-tile: the function must return the attention result");
  for (Value v : att->getOperands())
    if (!isa<BlockArgument>(v))
      return att.emitError("attn-tile: the operands of attn.ragged_attention must be function "
                           "arguments");

  MLIRContext *ctx = func.getContext();
  Value q = att.getQuery(), k = att.getKey(), v = att.getValue(), work = att.getWork();
  Value table = att.getBlockTable(), slopes = att.getAlibiSlopes(), sinks = att.getSinks();
  int64_t D = att.getQuery().getType().getDimSize(3);
  int64_t Dv = att.getValue().getType().getDimSize(3);
  // heads-inner: every head's row tiles live through the KV loop, so the
  // head count must be static (it is: kernels are specialized on heads).
  int64_t numHeads = att.getQuery().getType().getDimSize(1);
  bool headsInner = o.headsInner;
  if (headsInner && !kvInPlace)
    return att.emitError("attn-tile: heads-inner needs kv-in-place (the decode form)");
  if (headsInner && ShapedType::isDynamic(numHeads))
    return att.emitError("attn-tile: heads-inner needs a static head count");
  for (BlockArgument arg : body.getArguments())
    // q, k, v and the result are strided views (packed [T, H, D] tensors and
    // NHD caches are permuted views).
    arg.setType(arg == q || arg == k || arg == v ? stridedMemRef(arg.getType())
                                                 : denseMemRef(arg.getType()));
  Value out = body.addArgument(stridedMemRef(att.getType()), func.getLoc());
  Value lse;
  if (o.withLse) {
    auto outType = cast<RankedTensorType>(att.getType());
    int64_t dyn = ShapedType::kDynamic;
    auto layout = StridedLayoutAttr::get(ctx, 0, {dyn, dyn, dyn});
    lse = body.addArgument(MemRefType::get(outType.getShape().drop_back(),
                                           Float32Type::get(ctx), layout),
                           func.getLoc());
  }
  func.setFunctionType(FunctionType::get(ctx, body.getArgumentTypes(), {}));
  // attn-lower-to-gpu: no TMA for these (docs/ragged-paged.md, "GPU").
  func->setAttr("attn.ragged", UnitAttr::get(ctx));

  int64_t left = -1, right = -1;
  bool masked = false;
  if (auto sides = att.getWindowSides()) {
    left = (*sides)[0];
    right = (*sides)[1];
    masked = left >= 0 || right >= 0;
  }
  int64_t group = att.getKvGroup();

  // kv-in-place: packed K/V are read through views. So are a paged cache's
  // pages when their size P is static and a power of two: KV blocks of
  // min(BN, P) keys from page-aligned starts (the op's contract) each lie in
  // one page. With any other page size, K rows are gathered untransposed (a
  // row copy each, no transpose) for the dot-product form of Q.K^T.
  int64_t P = cast<ShapedType>(k.getType()).getDimSize(2);
  bool pageViews =
      kvInPlace && table && !ShapedType::isDynamic(P) && P > 0 && (P & (P - 1)) == 0;
  // Pages smaller than a KV block: one block is BN / P page views (each
  // product and P V per page, one online-softmax step per block).
  int64_t pagesPerBlock = 1;
  if (pageViews) {
    pagesPerBlock = std::max<int64_t>(1, BN / P);
    BN = pagesPerBlock > 1 ? BN : std::min(BN, P);
  }

  OpBuilder builder(att);
  IRBuild t{builder, att.getLoc()};
  Location loc = att.getLoc();
  Value c0 = t.idx(0), c1 = t.idx(1), cBN = t.idx(BN);
  Value numWork = t.dim(work, 0), H = t.dim(q, 1);
  // heads-inner: one grid point per work item (heads looped inside).
  Value gridHeads = headsInner ? c1 : H;
  auto grid = scf::ParallelOp::create(builder, loc, ValueRange{c0, c0},
                                      ValueRange{numWork, gridHeads}, ValueRange{c1, c1});
  grid->setAttr("attn.grid", builder.getUnitAttr());
  builder.setInsertionPointToStart(grid.getBody());
  Value w = grid.getInductionVars()[0], h = grid.getInductionVars()[1];
  auto field = [&](int64_t c) -> Value {
    Value x = memref::LoadOp::create(builder, loc, work, ValueRange{w, t.idx(c)});
    return arith::IndexCastOp::create(builder, loc, builder.getIndexType(), x);
  };
  Value qb = field(0), qr = field(1), qn = field(2), kb = field(3), kr = field(4),
        kn = field(5), pos = field(6);

  auto alloc = [&](ArrayRef<int64_t> shape) -> Value {
    return memref::AllocOp::create(builder, loc, MemRefType::get(shape, builder.getF32Type()));
  };
  auto fill = [&](Value buf, Value x) {
    linalg::FillOp::create(builder, loc, ValueRange{x}, ValueRange{buf});
  };
  // bf16-pairs (AttnTile.cpp): bf16 tiles, K/V copied or gathered pair-packed.
  bool pairs = o.bf16Pairs && usePairs(q, k, v, BM, BN, kvInPlace);
  auto allocBf16 = [&](ArrayRef<int64_t> shape) -> Value {
    return memref::AllocOp::create(builder, loc, MemRefType::get(shape, builder.getBF16Type()));
  };
  bool views = kvInPlace && (!table || pageViews);
  // kv-in-place-pairs (AttnTile.cpp) on views of K/V rows, or on the rows
  // gathered from pages of a run-time size (bf16 tiles, zero past the valid
  // rows); page views of at least 2 rows (P V takes the keys in pairs, a page
  // part's columns even).
  bool inPlacePairs =
      kvInPlace && o.kvInPlacePairs && (!pageViews || P >= 2) && useInPlacePairs(q, k, v);
  bool bf16Tiles = pairs || inPlacePairs;
  // The row tiles that live through the KV loop (Q, the accumulator, the
  // running max and sum): one set per head with heads-inner, [numHeads, ...],
  // each head's a view (headTile). Scores, P and K/V buffers are reused.
  auto state = [&](SmallVector<int64_t> shape, bool bf16) -> Value {
    if (headsInner)
      shape.insert(shape.begin(), numHeads);
    return bf16 ? allocBf16(shape) : alloc(shape);
  };
  auto headTile = [&](Value buf, Value head) -> Value {
    if (!headsInner)
      return buf;
    auto type = cast<MemRefType>(buf.getType());
    int64_t rank = type.getRank();
    SmallVector<OpFoldResult> offsets(rank, builder.getIndexAttr(0)), sizes, strides;
    offsets[0] = head;
    sizes.push_back(builder.getIndexAttr(1));
    for (int64_t d = 1; d < rank; ++d)
      sizes.push_back(builder.getIndexAttr(type.getDimSize(d)));
    strides.assign(rank, builder.getIndexAttr(1));
    auto viewType = memref::SubViewOp::inferRankReducedResultType(
        type.getShape().drop_front(), type, offsets, sizes, strides);
    return memref::SubViewOp::create(builder, loc, cast<MemRefType>(viewType), buf, offsets,
                                     sizes, strides);
  };
  auto kvHead = [&](Value head) -> Value {
    return arith::DivUIOp::create(builder, loc, head, t.idx(group));
  };
  Value hKv = headsInner ? Value() : kvHead(h);
  // `body(head, kvHead)` for the grid point's head, or for every head in a loop.
  auto forHeads = [&](function_ref<void(Value, Value)> body) {
    if (headsInner)
      t.loop(c0, t.idx(numHeads), c1, [&](Value head) { body(head, kvHead(head)); });
    else
      body(h, hKv);
  };
  Value qtAll = state({BM, D}, bf16Tiles), accAll = state({BM, Dv}, false);
  Value mxAll = state({BM}, false), smAll = state({BM}, false);
  Value s = alloc({BM, BN});
  // Rows gathered for the in-place form keep the cache's element type: the
  // copy is then a plain move of the rows (half the bytes of f32 for 16-bit
  // caches) and the dot products read them as they read a page in place.
  Type kvType = cast<MemRefType>(k.getType()).getElementType();
  auto allocKv = [&](ArrayRef<int64_t> shape) -> Value {
    return memref::AllocOp::create(builder, loc, MemRefType::get(shape, kvType));
  };
  Value kt = views        ? Value()
             : pairs      ? allocBf16({D / 2, 2 * BN})
             : kvInPlace  ? allocKv({BN, D})
                          : alloc({D, BN});
  Value vt = views       ? Value()
             : pairs     ? allocBf16({BN / 2, 2 * Dv})
             : kvInPlace ? allocKv({BN, Dv})
                         : alloc({BN, Dv});
  Value p = bf16Tiles ? allocBf16({BM, BN}) : Value();
  fill(accAll, t.f32(0.0));
  if (!sinks) {
    fill(mxAll, t.f32(-std::numeric_limits<double>::infinity()));
    fill(smAll, t.f32(0.0));
  }
  // Pairs: Q as it is, the scale on the f32 scores (AttnTile.cpp).
  FloatAttr scaleAttr = builder.getF64FloatAttr(att.getScale().convertToDouble());
  forHeads([&](Value head, Value) {
    if (sinks) {
      fill(headTile(mxAll, head), memref::LoadOp::create(builder, loc, sinks, ValueRange{head}));
      fill(headTile(smAll, head), t.f32(1.0));
    }
    CopyTileOp::create(builder, loc, q, qb, head, qr, qn, headTile(qtAll, head),
                       /*transposed=*/false, bf16Tiles ? FloatAttr() : scaleAttr);
  });

  // Only KV blocks the window reaches (query rows pos .. pos + BM - 1).
  Value lo = c0, hi = kn;
  if (right >= 0)
    hi = t.minsi(kn, t.addi(pos, t.idx(BM + right)));
  if (left >= 0) {
    Value first = t.maxsi(c0, t.subi(pos, t.idx(left)));
    lo = t.muli(t.divui(first, BN), BN);
  }
  hi = t.maxsi(hi, lo); // an empty range stays empty (lo <= hi for the pipeliner)
  // skip-masked-rows (AttnTile.cpp): the prefill form only (decode items and
  // page views are kv-in-place with blocks of at most 16 rows).
  bool skipRows =
      canSkipMaskedRows(o.skipMaskedRows, right, bool(slopes), pairs, kvInPlace, BM);
  auto kvLoop = scf::ForOp::create(builder, loc, lo, hi, cBN);
  kvLoop->setAttr(kKvLoopAttr, builder.getUnitAttr());
  {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPointToStart(kvLoop.getBody());
    Value n0 = kvLoop.getInductionVar();
    Value validN = t.subi(kn, n0);
    Value row = t.addi(kr, n0);
    Value lastKey = t.addi(kr, t.subi(kn, c1));
    // Element masks only on blocks that straddle the end of the keys or an
    // edge of the window.
    Value blockEnd = t.addi(n0, cBN);
    Value needsMask = t.cmpi(arith::CmpIPredicate::sgt, blockEnd, kn);
    if (right >= 0) {
      Value diag = t.cmpi(arith::CmpIPredicate::sgt, t.subi(blockEnd, c1),
                          t.addi(pos, t.idx(right)));
      needsMask = arith::OrIOp::create(builder, loc, needsMask, diag);
    }
    if (left >= 0) {
      Value edge = t.cmpi(arith::CmpIPredicate::sle, n0,
                          t.subi(t.addi(pos, t.idx(BM - 1)), t.idx(left + 1)));
      needsMask = arith::OrIOp::create(builder, loc, needsMask, edge);
    }
    // The page table entries of the block's page parts (and of the next
    // block's, for the prefetch) do not depend on the head: looked up once.
    int64_t partRows = pageViews ? std::min(BN, P) : BN;
    struct PagePart {
      Value page, slot, rows;
    };
    SmallVector<PagePart> parts, nextParts;
    if (pageViews) {
      Value cP = t.idx(P);
      for (int64_t j = 0; j < pagesPerBlock; ++j) {
        // Keys start page-aligned (the op's contract), so page j of the block
        // starts at its first slot; a page past the sequence's last key has no
        // rows, and its table entry (clamped to the last page's) is not read.
        Value first = j == 0 ? row : t.addi(row, t.idx(j * P));
        Value pageRow = t.minsi(first, lastKey);
        Value page = memref::LoadOp::create(builder, loc, table,
                                            ValueRange{kb, t.divui(pageRow, P)});
        Value pageIdx = arith::IndexCastOp::create(builder, loc, builder.getIndexType(), page);
        Value slot = arith::RemUIOp::create(builder, loc, first, cP);
        Value rows = t.maxsi(c0, t.minsi(t.subi(validN, t.idx(j * P)),
                                         pagesPerBlock > 1 ? cP : t.subi(cP, slot)));
        if (pagesPerBlock == 1)
          rows = t.minsi(rows, cBN);
        parts.push_back({pageIdx, slot, rows});
        // Page views: the matmul of page part j (one page, or the block when
        // pages are larger) prefetches, row by row as it reads its own rows,
        // the same part of the next block (tile_matmul's `prefetch` view: rows
        // on other pages, or further on in a large page), i.e. one block ahead,
        // spread over the compute. A part past the sequence's last key is
        // clamped to that key (one row). Measured against a burst of prefetches
        // of the next block's rows before each part (bf16 B8 Hq32/Hkv8 D128 4k
        // decode, Zen 5, docs/ragged-paged.md): HND page 16 5.7 ms against
        // 7.6-8.2, page 128 4.1-4.5 against 5.2-5.5.
        Value next = t.minsi(t.addi(row, t.idx(BN + j * partRows)), lastKey);
        Value nextPage = memref::LoadOp::create(builder, loc, table,
                                                ValueRange{kb, t.divui(next, P)});
        Value nextRows =
            t.maxsi(c1, t.minsi(t.idx(partRows), t.subi(t.addi(lastKey, c1), next)));
        Value nextIdx = arith::IndexCastOp::create(builder, loc, builder.getIndexType(), nextPage);
        Value nextSlot = arith::RemUIOp::create(builder, loc, next, cP);
        nextParts.push_back({nextIdx, nextSlot, nextRows});
      }
    }
    // Page part j's columns of a [BM, BN] tile (the scores, or P rounded).
    auto pageColumns = [&](Value tile, int64_t j) -> Value {
      if (pagesPerBlock == 1)
        return tile;
      auto attr = [&](int64_t x) -> OpFoldResult { return builder.getIndexAttr(x); };
      return memref::SubViewOp::create(builder, loc, tile,
                                       ArrayRef<OpFoldResult>{t.idx(0), t.idx(j * P)},
                                       ArrayRef<OpFoldResult>{attr(BM), attr(P)},
                                       ArrayRef<OpFoldResult>{attr(1), attr(1)});
    };
    forHeads([&](Value head, Value kvH) {
      Value qt = headTile(qtAll, head), acc = headTile(accAll, head);
      RowTiles rt{qt, s, acc, headTile(mxAll, head), headTile(smAll, head), p, pos};
      if (skipRows)
        rt = skipMaskedRowTiles(builder, loc, rt, n0, pos, right, pos);
      Value kOperand = kt, vOperand = vt;
      // Decode, rows gathered one by one (any page size): in chunks of
      // kGatherChunk rows, each gathered after prefetching the same chunk of
      // the next block, so the prefetches run alongside the gathers one
      // block ahead instead of in one burst before them.
      auto gatherChunks = [&](ValueRange srcs, ValueRange dsts) {
        for (int64_t c0 = 0; c0 < BN; c0 += kGatherChunk) {
          int64_t n = std::min(kGatherChunk, BN - c0);
          Value at = t.addi(row, t.idx(c0));
          prefetchRows(builder, loc, srcs, table, kb, kvH, t.addi(at, cBN), n, lastKey,
                       ShapedType::kDynamic);
          Value valid = t.subi(validN, t.idx(c0));
          for (auto [src, dst] : llvm::zip(srcs, dsts))
            GatherTileOp::create(builder, loc, src, table, kb, kvH, at, valid,
                                 chunkRows(builder, loc, dst, c0, n), /*transposed=*/false,
                                 pairs);
        }
      };
      auto partView = [&](Value src, const PagePart &part) {
        return kvRowsView(builder, loc, src, part.page, kvH, part.slot, part.rows);
      };
      // What page part j's products prefetch (tile_matmul's `prefetch`
      // view). One head: the same part of the next block. heads-inner: the
      // next head's rows of the same part, and after the last head the first
      // head's of the next block: one head's block ahead, not a block of
      // every head (BN x Hkv rows of K and of V, 512 KiB at fp32 Hkv 8 D128:
      // all of Zen 3's L2). bf16 B8 Hq32/Hkv8 D128 4k NHD decode on Zen 3,
      // four rounds of alternating processes: page 16 19.4 -> 17.5 ms, page
      // 128 18.9 -> 14.6 ms (means; docs/ragged-paged.md).
      auto aheadView = [&](Value src, size_t j, Value head) -> Value {
        if (!headsInner)
          return kvRowsView(builder, loc, src, nextParts[j].page, kvH, nextParts[j].slot,
                            nextParts[j].rows);
        Value next = t.addi(head, c1);
        Value wrap = t.cmpi(arith::CmpIPredicate::eq, next, t.idx(numHeads));
        auto pick = [&](Value a, Value b) {
          return arith::SelectOp::create(builder, loc, wrap, a, b).getResult();
        };
        return kvRowsView(builder, loc, src, pick(nextParts[j].page, parts[j].page),
                          kvHead(pick(c0, next)), pick(nextParts[j].slot, parts[j].slot),
                          pick(nextParts[j].rows, parts[j].rows));
      };
      if (views && !pageViews) {
        Value rows = t.minsi(validN, cBN);
        kOperand = kvRowsView(builder, loc, k, kb, kvH, row, rows);
        vOperand = kvRowsView(builder, loc, v, kb, kvH, row, rows);
      } else if (!views && table && kvInPlace) {
        gatherChunks(ValueRange{k, v}, ValueRange{kt, vt});
      } else if (!views) {
        for (auto [src, dst, transposed] :
             {std::tuple{k, kt, !kvInPlace}, std::tuple{v, vt, false}}) {
          if (table)
            GatherTileOp::create(builder, loc, src, table, kb, kvH, row, validN, dst,
                                 transposed, pairs);
          else
            CopyTileOp::create(builder, loc, src, kb, kvH, row, validN, dst, transposed,
                               FloatAttr(), pairs);
        }
      }
      if (parts.empty())
        TileMatmulOp::create(builder, loc, rt.q, kOperand, rt.s, /*accumulate=*/false,
                             /*transposed=*/kvInPlace, bf16Tiles,
                             bf16Tiles ? scaleAttr : FloatAttr(), /*prefetch=*/Value());
      // (Views made one per statement: the IR's order is then the source's.)
      for (auto [j, part] : llvm::enumerate(parts)) {
        Value cols = pageColumns(s, j);
        Value keys = partView(k, part);
        Value ahead = aheadView(k, j, head);
        TileMatmulOp::create(builder, loc, qt, keys, cols, /*accumulate=*/false,
                             /*transposed=*/true, inPlacePairs,
                             inPlacePairs ? scaleAttr : FloatAttr(), ahead);
      }
      if (auto cap = att.getSoftcapAttr())
        TileSoftcapOp::create(builder, loc, rt.s, cap);
      if (slopes)
        TileAlibiOp::create(builder, loc, s, slopes, head, pos, n0, c0);
      t.ifThen(needsMask, [&] {
        TileMaskOp::create(builder, loc, rt.s, rt.row, n0, validN, Value(),
                           MaskKindAttr::get(ctx, masked ? MaskKind::sliding_window
                                                         : MaskKind::none),
                           IntegerAttr(),
                           masked ? att.getWindowSidesAttr() : DenseI64ArrayAttr());
      });
      TileSoftmaxOp::create(builder, loc, rt.s, rt.mx, rt.sm, rt.acc);
      if (bf16Tiles)
        TileConvertOp::create(builder, loc, rt.s, rt.p);
      if (parts.empty())
        TileMatmulOp::create(builder, loc, bf16Tiles ? rt.p : rt.s, vOperand, rt.acc,
                             /*accumulate=*/true, /*transposed=*/false, bf16Tiles, FloatAttr(),
                             /*prefetch=*/Value());
      for (auto [j, part] : llvm::enumerate(parts)) {
        // P's columns of this page part (s's, or rounded into p).
        Value cols = pageColumns(inPlacePairs ? p : s, j);
        Value values = partView(v, part);
        Value ahead = aheadView(v, j, head);
        TileMatmulOp::create(builder, loc, cols, values, acc, /*accumulate=*/true,
                             /*transposed=*/false, inPlacePairs, FloatAttr(), ahead);
      }
    });
  }
  forHeads([&](Value head, Value) {
    TileStoreOp::create(builder, loc, headTile(accAll, head), headTile(smAll, head), out, qb,
                        head, qr, qn);
    if (lse)
      TileLseOp::create(builder, loc, headTile(mxAll, head), headTile(smAll, head), lse, qb,
                        head, qr, qn);
  });
  for (Value buf : {qtAll, s, accAll, mxAll, smAll, kt, vt, p})
    if (buf)
      memref::DeallocOp::create(builder, loc, buf);

  builder.setInsertionPoint(ret);
  func::ReturnOp::create(builder, ret->getLoc());
  ret->erase();
  att->erase();
  return success();
}
