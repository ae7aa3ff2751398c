//===- CpuMatmul.cpp - attn-lower-to-cpu: the tile_matmul micro-kernel ----===//
//
// attn.tile_matmul on the CPU: c (+)= a b as register blocks of MR rows x NR
// vectors of c held in vector accumulators through the K loop, one broadcast
// of a[i, k] and NR loads of row k of b per step (see AttnLowerToCpu.cpp and
// the micro-rows / micro-vectors options in Passes.td).
//
// The transposed form (c = a b^T, b read row by row as K is stored: the
// kv-in-place decode form) is a block of dot products: MR' rows x NJ rows of b
// as W-lane partial sums over K, reduced across lanes at the end.
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "llvm/ADT/SmallBitVector.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

/// How far ahead rows of a K/V view are prefetched: kPrefetchBytes of rows,
/// at least kMinPrefetchRows rows. Measured on the AVX-512 + AMX host (Intel,
/// 2 threads, B8 Hq32/Hkv8 D128 decode, KV 4k/32k from DRAM, two rounds of
/// alternating processes): bf16 rows (256 B) 16 rows ahead read 7.9-8.8 /
/// 54.9-56.6 ms, 64 rows (16 KiB) 7.6-7.8 / 52.3-53.8, 128 rows no better;
/// fp32 rows (512 B) alike at 16, 32 and 64 rows. The 16 rows used before were
/// measured against no prefetch (AMD Zen 4, the AVX2 host), not against longer
/// distances.
constexpr int64_t kPrefetchBytes = 16384;
constexpr int64_t kMinPrefetchRows = 16;
/// ... and into which cache: locality 2 (x86 prefetcht1: L2, not L1). K/V
/// rows are a stream read once; measured on AMD Zen 4 (2 threads, B8
/// Hq32/Hkv8 D128 4k decode, alternating processes, 3 rounds), prefetcht0
/// made decode slower than no prefetch at all (bf16 7.1-7.2 ms against
/// 5.2-9.2, noisy), prefetcht1 fastest: bf16 contiguous 7.2-8.2 -> 5.0-6.2
/// ms, fp32 15.0-16.0 -> 11.2-12.3, paged HND page 16 bf16 8.7-10.1 ->
/// 5.4-6.5 (docs/cpu-backend.md). On the Intel host prefetcht0 was slower
/// too (bf16 32k 59-60 ms against 52-54), prefetcht2 the same as prefetcht1.
constexpr uint32_t kPrefetchLocality = 2;

/// Rows of `src` (rows of its last dim) that make kPrefetchBytes.
static int64_t prefetchDistance(MemRefType src) {
  int64_t d = src.getShape().back();
  if (ShapedType::isDynamic(d) || !src.getElementType().isIntOrFloat())
    return kMinPrefetchRows;
  int64_t rowBytes = d * src.getElementTypeBitWidth() / 8;
  return std::max(kMinPrefetchRows, kPrefetchBytes / std::max<int64_t>(rowBytes, 1));
}

/// Software prefetch (IRBuild::prefetchLines) of the row prefetchDistance()
/// ahead of row `r` of b, when b is a view of K/V rows where they are stored
/// (kv-in-place: a memref.subview of the kernel's K/V argument, never a
/// packed tile buffer). The row is taken in the view's source and clamped
/// into the source's row dimension, so near the end of a block it reaches
/// into the next KV block (the next rows of the sequence; for a page, the
/// rest of the page: attn-tile prefetches the next page itself). Contiguous
/// [B, H, L, D] rows too: measured on the AVX2 host (fp32 decode, Hq32/Hkv8,
/// D128, KV 16k, 2 threads) the kernel read 15-16 GB/s without it and
/// 18-20 GB/s with it; the loads of each block's first rows stalled on memory
/// (perf), which the hardware prefetchers did not hide.
static void prefetchRowAhead(CpuEmitter &e, Value bm, Value r, Value col0, int64_t n) {
  auto sv = bm.getDefiningOp<memref::SubViewOp>();
  if (!sv || cast<MemRefType>(bm.getType()).getRank() != 2)
    return;
  MemRefType srcType = sv.getSourceType();
  int64_t rank = srcType.getRank();
  llvm::SmallBitVector dropped = sv.getDroppedDims();
  SmallVector<int64_t> kept;
  for (int64_t d = 0; d < rank; ++d)
    if (!dropped.test(d))
      kept.push_back(d);
  SmallVector<OpFoldResult> offsets = sv.getMixedOffsets(), strides = sv.getMixedStrides();
  // A view of whole rows: the row dim, then the source's last dim from 0, unit strides.
  if (kept.size() != 2 || kept[1] != rank - 1 || getConstantIntValue(offsets[rank - 1]) != 0 ||
      getConstantIntValue(strides[kept[0]]) != 1 || getConstantIntValue(strides[rank - 1]) != 1)
    return;
  // A source of a static number of rows (a page): of at most
  // kMinPrefetchRows rows it gains nothing (the row ahead is always clamped
  // to its last row); shorter than the distance, it keeps the shortest one.
  int64_t ahead = prefetchDistance(srcType);
  int64_t srcRows = srcType.getDimSize(kept[0]);
  if (!ShapedType::isDynamic(srcRows)) {
    if (srcRows <= kMinPrefetchRows)
      return;
    if (srcRows <= ahead)
      ahead = kMinPrefetchRows;
  }
  SmallVector<Value> lead;
  for (int64_t d = 0; d + 1 < rank; ++d) {
    Value off = getValueOrCreateConstantIndexOp(e.ib, e.loc, offsets[d]);
    if (d == kept[0])
      off = e.minsi(e.addi(off, e.addi(r, e.idx(ahead))),
                    e.subi(e.dim(sv.getSource(), d), e.idx(1)));
    lead.push_back(off);
  }
  e.prefetchLines(sv.getSource(), lead, col0, n, kPrefetchLocality);
}

/// The prefetch for key row `r` of b: row `r` of the op's `prefetch` view
/// (clamped to its rows; attn-tile's next-block rows of a paged cache) when
/// it has one, else b's own row prefetchDistance() ahead (prefetchRowAhead).
void prefetchKeyRow(CpuEmitter &e, TileMatmulOp op, Value r, Value col0, int64_t n) {
  Value pf = op.getPrefetch();
  if (!pf)
    return prefetchRowAhead(e, op.getB(), r, col0, n);
  Value at = e.minsi(r, e.subi(e.dim(pf, 0), e.idx(1)));
  e.prefetchLines(pf, ValueRange{at}, col0, n, kPrefetchLocality);
}
void prefetchKeyRow(CpuEmitter &e, TileMatmulOp op, Value r, int64_t col0, int64_t n) {
  prefetchKeyRow(e, op, r, e.idx(col0), n);
}

RegisterBlock registerBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, int64_t col0,
                            int64_t nv, int64_t w, Value lastRow) {
  return registerBlock(e, op, i0, mr, e.idx(col0), nv, w, lastRow);
}

RegisterBlock registerBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, Value col0,
                            int64_t nv, int64_t w, Value lastRow) {
  RegisterBlock blk;
  for (int64_t r = 0; r < mr; ++r) {
    Value row = r == 0 ? i0 : e.addi(i0, e.idx(r));
    blk.rows.push_back(lastRow && r > 0 ? e.minsi(row, lastRow) : row);
  }
  for (int64_t j = 0; j < nv; ++j)
    blk.cols.push_back(e.addIdx(col0, j * w));
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j)
      blk.init.push_back(op.getAccumulate() ? e.loadF32(op.getC(), {blk.rows[r], blk.cols[j]}, w)
                                            : e.splat(0.0, w));
  return blk;
}

/// One register block: rows [i0, i0 + mr) x `nv` vectors of `w` lanes at
/// column `col0` of c, accumulated over k in [0, K); with `lastRow`, rows
/// past it are clamped to it.
static void emitMatmulBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, Value col0,
                            int64_t nv, int64_t w, Value K, Value lastRow = Value()) {
  ImplicitLocOpBuilder &b = e.ib;
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  auto [rows, cols, init] = registerBlock(e, op, i0, mr, col0, nv, w, lastRow);
  // E4M3 rows (an fp8 V read in place) are summed unscaled from zero; the
  // block's sums then take the factor once: c = init + factor * sums.
  double factor = CpuEmitter::unscaledFactor(bm);
  SmallVector<Value> start = factor == 1.0 ? init : SmallVector<Value>(init.size(), e.splat(0.0, w));
  SmallVector<Value> res =
      e.loop(e.idx(0), K, e.idx(1), start, [&](Value k, ValueRange acc) -> SmallVector<Value> {
        prefetchKeyRow(e, op, k, col0, nv * w);
        SmallVector<Value> bv;
        for (int64_t j = 0; j < nv; ++j)
          bv.push_back(e.loadF32Unscaled(bm, {k, cols[j]}, w));
        SmallVector<Value> next(acc.begin(), acc.end());
        for (int64_t r = 0; r < mr; ++r) {
          Value av = e.bcast(e.loadScalarF32(a, {rows[r], k}), w);
          for (int64_t j = 0; j < nv; ++j)
            next[r * nv + j] = vector::FMAOp::create(b, av, bv[j], next[r * nv + j]);
        }
        return next;
      });
  if (factor != 1.0)
    for (auto [x, i] : llvm::zip(res, init))
      x = vector::FMAOp::create(b, x, e.splat(factor, w), i);
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nv; ++j)
      e.storeF32(res[r * nv + j], c, {rows[r], cols[j]});
}

/// One block of the transposed form: rows [i0, i0 + mr) of a against rows
/// [j0, j0 + nj) of b: c[i, j] (+)= sum_k a[i, k] b[j, k]. K is static.
/// `pairs` (bf16 a and b, AVX-512-BF16): each partial-sum vector takes 32
/// bf16 of a row of a and of b per vdpbf16ps (no widening, half the
/// instructions of the f32 FMAs), K a multiple of 32 (checkBf16DotMatmul);
/// fp8 rows of b are widened to bf16 64 at a time (fp8ToBf16); `scale`
/// multiplies the sums.
static void emitDotBlock(CpuEmitter &e, TileMatmulOp op, Value i0, int64_t mr, Value j0,
                         int64_t nj, int64_t K) {
  ImplicitLocOpBuilder &b = e.ib;
  int64_t W = std::min(e.W, K);
  Value a = op.getA(), bm = op.getB(), c = op.getC();
  bool pairs = op.getPairs();
  // E4M3 rows of b (an fp8 K read in place) are loaded unscaled; their
  // factor joins the sums' scale.
  double factor = CpuEmitter::unscaledFactor(bm);
  std::optional<double> scale;
  if (auto s = op.getScale(); s && s->convertToDouble() * factor != 1.0)
    scale = s->convertToDouble() * factor;
  else if (!s && factor != 1.0)
    scale = factor;
  auto scaled = [&](Value v) -> Value {
    if (!scale)
      return v;
    Value f = isa<VectorType>(v.getType())
                  ? e.splat(*scale, cast<VectorType>(v.getType()).getNumElements())
                  : Value(arith::ConstantOp::create(b, b.getF32FloatAttr(*scale)));
    return arith::MulFOp::create(b, v, f);
  };
  SmallVector<Value> rows, cols;
  for (int64_t r = 0; r < mr; ++r)
    rows.push_back(r == 0 ? i0 : e.addi(i0, e.idx(r)));
  for (int64_t j = 0; j < nj; ++j)
    cols.push_back(j == 0 ? j0 : e.addi(j0, e.idx(j)));
  // Partial sums over the full W-lane chunks of K, then the K % W tail as a
  // narrower vector of its own.
  auto step = [&](Value k, int64_t w, ValueRange acc) {
    SmallVector<Value> bv;
    for (int64_t j = 0; j < nj; ++j)
      bv.push_back(e.loadF32Unscaled(bm, {cols[j], k}, w));
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t r = 0; r < mr; ++r) {
      Value av = e.loadF32(a, {rows[r], k}, w);
      for (int64_t j = 0; j < nj; ++j)
        next[r * nj + j] = vector::FMAOp::create(b, av, bv[j], next[r * nj + j]);
    }
    return next;
  };
  // fp8 rows of b (pairs: a bf16 query over an fp8 cache) widen to bf16 64
  // values at a time (fp8ToBf16; a contraction not a multiple of 64 in
  // 32-value steps, each padded to 64).
  Type bElt = cast<MemRefType>(bm.getType()).getElementType();
  bool fp8Pairs = pairs && !bElt.isBF16();
  int64_t pairChunk = fp8Pairs && K % (4 * W) == 0 ? 4 * W : 2 * W;
  auto pairStep = [&](Value k, ValueRange acc) {
    auto v32 = VectorType::get({2 * W}, b.getBF16Type());
    SmallVector<SmallVector<Value>> bv(nj);
    for (int64_t j = 0; j < nj; ++j) {
      if (!fp8Pairs) {
        bv[j].push_back(vector::LoadOp::create(b, v32, bm, ValueRange{cols[j], k}));
        continue;
      }
      auto [w0, w1] = fp8ToBf16(e, vector::LoadOp::create(b, VectorType::get({pairChunk}, bElt),
                                                          bm, ValueRange{cols[j], k}));
      bv[j].push_back(w0);
      if (pairChunk == 64)
        bv[j].push_back(w1);
    }
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t r = 0; r < mr; ++r)
      for (size_t h = 0; h < bv[0].size(); ++h) {
        Value av = vector::LoadOp::create(
            b, v32, a, ValueRange{rows[r], h ? e.addi(k, e.idx(2 * W)) : k});
        for (int64_t j = 0; j < nj; ++j)
          next[r * nj + j] = dotBf16(e, next[r * nj + j], av, bv[j][h]);
      }
    return next;
  };
  int64_t full = pairs ? K : K - K % W;
  SmallVector<Value> init(mr * nj, e.splat(0.0, W));
  SmallVector<Value> acc =
      e.loop(e.idx(0), e.idx(full), e.idx(pairs ? pairChunk : W), init,
             [&](Value k, ValueRange carried) {
               return pairs ? pairStep(k, carried) : step(k, W, carried);
             });
  // The mr x nj products reduce as shuffle trees (CpuEmitter::transposeReduce),
  // one per group of cj columns (cj a power of two, mr x cj <= W): 4 x 3 on
  // 8 lanes (AVX2) is a tree of 4 x 2 and one of 4 x 1, each row then stored
  // as 2 + 1 columns (a group of one product is a lane reduction). The trees
  // need W and mr powers of two (query tiles are: block_m is one) and no
  // K % W tail; a head dim below the vector width that is not one (3, 5-7,
  // 9-15) keeps a reduction per dot product. On Zen 3 (AVX2) the 4 x 3
  // block's reductions went from 96 instructions to 40; decode time did not
  // move beyond +-3% (interleaved in-process A/B, KV in L3 and from DRAM;
  // docs/cpu-backend.md).
  if (K % W == 0 && llvm::isPowerOf2_64(W) && llvm::isPowerOf2_64(mr) && mr <= W) {
    for (int64_t jb = 0; jb < nj;) {
      int64_t cj = static_cast<int64_t>(
          llvm::bit_floor(static_cast<uint64_t>(std::min(nj - jb, W / mr))));
      SmallVector<Value> group;
      for (int64_t r = 0; r < mr; ++r)
        for (int64_t jj = 0; jj < cj; ++jj)
          group.push_back(acc[r * nj + jb + jj]);
      // Lane r * cj + jj of `all`: row r, column jb + jj.
      Value all = group.size() == 1
                      ? e.reduce(vector::CombiningKind::ADD, group[0])
                      : e.transposeReduce(group, [&](Value x, Value y) -> Value {
                          return arith::AddFOp::create(b, x, y, arith::FastMathFlags::reassoc);
                        });
      all = scaled(all);
      for (int64_t r = 0; r < mr; ++r) {
        if (cj == 1) {
          Value v = isa<VectorType>(all.getType())
                        ? Value(vector::ExtractOp::create(b, all, ArrayRef<int64_t>{r}))
                        : all;
          if (op.getAccumulate())
            v = arith::AddFOp::create(b, v, e.loadScalarF32(c, {rows[r], cols[jb]}));
          e.storeScalarF32(v, c, {rows[r], cols[jb]});
          continue;
        }
        Value v = mr == 1 ? all
                          : vector::ExtractStridedSliceOp::create(
                                b, all, ArrayRef<int64_t>{r * cj}, ArrayRef<int64_t>{cj},
                                ArrayRef<int64_t>{1});
        if (op.getAccumulate())
          v = arith::AddFOp::create(b, v, e.loadF32(c, {rows[r], cols[jb]}, cj));
        e.storeF32(v, c, {rows[r], cols[jb]});
      }
      jb += cj;
    }
    return;
  }
  SmallVector<Value> sums;
  for (Value v : acc)
    sums.push_back(e.reduce(vector::CombiningKind::ADD, v));
  if (K % W) {
    SmallVector<Value> tailInit(mr * nj, e.splat(0.0, K % W));
    SmallVector<Value> tail = step(e.idx(full), K % W, tailInit);
    for (auto [s, t] : llvm::zip(sums, tail))
      s = arith::AddFOp::create(b, s, e.reduce(vector::CombiningKind::ADD, t));
  }
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nj; ++j) {
      Value v = scaled(sums[r * nj + j]);
      if (op.getAccumulate())
        v = arith::AddFOp::create(b, v, e.loadScalarF32(c, {rows[r], cols[j]}));
      e.storeScalarF32(v, c, {rows[r], cols[j]});
    }
}

/// c (+)= a b^T: for each block of NJ rows of b (each K row is read from
/// memory once), every block of rows of a. The rows of b may be fewer than
/// c's columns (a view of the keys that exist): only those columns are written.
static void lowerMatmulTransposed(CpuEmitter &e, TileMatmulOp op) {
  Value c = op.getC(), bm = op.getB();
  int64_t K = e.staticDim(op.getA(), 1);
  auto cType = cast<MemRefType>(c.getType());
  Value M = e.dim(c, 0), N = e.dim(bm, 0);
  // Accumulators: the matmul budget MR x NR vectors, as mr rows x nj keys.
  int64_t budget = e.MR * e.NR;
  int64_t mr = std::min<int64_t>(4, budget);
  if (!cType.isDynamicDim(0))
    mr = std::max<int64_t>(1, std::min(mr, cType.getDimSize(0)));
  int64_t nj = std::max<int64_t>(1, std::min<int64_t>(8, budget / mr));
  // Where emitDotBlock can reduce its mr x nj dot products as one shuffle
  // tree (K a multiple of the lanes, mr x nj a power of two up to the lanes),
  // nj is sized for it on 16 lanes: 4 rows x 4 keys. Measured on Zen 5
  // (decode, Hq32/Hkv8, D128): the per-product reductions were a quarter of
  // the kernel's time; 4 x 4 with the tree ran 14-25% faster than 4 x 6
  // (fp32 and bf16, KV in cache and from memory). On 8 lanes (AVX2) 4 x 2
  // with the tree was not faster than 4 x 3 without (fp32 5% slower, bf16
  // 8% faster), so AVX2 keeps 4 x 3, reduced as two trees (emitDotBlock).
  int64_t W = std::min(e.W, K);
  if (W >= 16 && K % W == 0 && llvm::isPowerOf2_64(mr) && mr < W) {
    nj = 1;
    while (mr * nj * 2 <= std::min(budget, W) && nj < 16)
      nj *= 2;
  }
  auto rowBlocks = [&](Value j0, int64_t width) {
    Value mFull = arith::MulIOp::create(e.ib, arith::DivUIOp::create(e.ib, M, e.idx(mr)),
                                        e.idx(mr));
    e.loop(e.idx(0), mFull, e.idx(mr),
           [&](Value i0) { emitDotBlock(e, op, i0, mr, j0, width, K); });
    if (mr > 1)
      e.loop(mFull, M, e.idx(1), [&](Value i) { emitDotBlock(e, op, i, 1, j0, width, K); });
  };
  Value nFull = arith::MulIOp::create(e.ib, arith::DivUIOp::create(e.ib, N, e.idx(nj)),
                                      e.idx(nj));
  e.loop(e.idx(0), nFull, e.idx(nj), [&](Value j0) {
    for (int64_t t = 0; t < nj; ++t)
      prefetchKeyRow(e, op, e.addi(j0, e.idx(t)), 0, K);
    rowBlocks(j0, nj);
  });
  e.loop(nFull, N, e.idx(1), [&](Value j) { rowBlocks(j, 1); });
}

void lowerMatmul(CpuEmitter &e, TileMatmulOp op) {
  if (op.getTransposed())
    return lowerMatmulTransposed(e, op);
  int64_t W = e.W;
  Value c = op.getC();
  int64_t N = e.staticDim(c, 1);
  // The contraction runs over b's rows: with kv-in-place they are the keys
  // that exist, possibly fewer than a's columns.
  Value M = e.dim(c, 0), K = e.dim(op.getB(), 0);
  auto cType = cast<MemRefType>(c.getType());

  // Column groups: up to NR full vectors each, then the N % W tail.
  struct Group { int64_t col, nv, w; };
  SmallVector<Group> groups;
  int64_t full = N / W;
  // Fewer static rows than MR (decode: the GQA group, or 1): wider groups
  // keep the accumulator budget, so b (V) is swept fewer times.
  int64_t groupWidth = e.NR;
  if (!cType.isDynamicDim(0) && cType.getDimSize(0) < e.MR)
    groupWidth = std::max<int64_t>(e.NR, e.MR * e.NR / std::max<int64_t>(1, cType.getDimSize(0)));
  for (int64_t j = 0; j < full;) {
    int64_t nv = std::min<int64_t>(groupWidth, full - j);
    groups.push_back({j * W, nv, W});
    j += nv;
  }
  if (N % W)
    groups.push_back({full * W, 1, N % W});

  // Groups of the same width run as one scf.for over their first column
  // (one copy of the block's code, not one per group): on AVX2 a 64-key
  // block is 4 groups of 2 vectors for Q.K^T and D128's P.V 8, and the copies
  // made most of the kernel's LLVM IR, i.e. of its cold compile time. Kernel
  // time was unchanged (the column offset is one add per block; docs/cpu-backend.md).
  struct Run { int64_t col, count, nv, w; };
  SmallVector<Run> runs;
  for (const Group &g : groups) {
    if (!runs.empty() && runs.back().nv == g.nv && runs.back().w == g.w &&
        runs.back().col + runs.back().count * g.nv * g.w == g.col)
      ++runs.back().count;
    else
      runs.push_back({g.col, 1, g.nv, g.w});
  }
  for (const Run &run : runs) {
    auto each = [&](function_ref<void(Value)> body) {
      if (run.count == 1)
        return body(e.idx(run.col));
      int64_t step = run.nv * run.w;
      e.loop(e.idx(run.col), e.idx(run.col + run.count * step), e.idx(step), body);
    };
    Group g{0, run.nv, run.w};
    // Rows per block: as many as the accumulator budget MR x NR allows (on
    // AVX-512, 6 rows x 4 vectors for 64 columns: 24 accumulators, 10 loads
    // per 24 FMAs; measured ~5% faster than 4 x 4, 7 or 8 rows spill). A
    // narrower group gets more rows, at most 8.
    int64_t mr = std::max<int64_t>(1, std::min<int64_t>(8, e.MR * e.NR / g.nv));
    if (!cType.isDynamicDim(0))
      mr = std::min(mr, std::max<int64_t>(1, cType.getDimSize(0)));
    // Static M: full row blocks, then the remaining rows as one block.
    // Dynamic M (a tile viewed from a row, skip-masked-rows): blocks of mr
    // rows up to M, the rows of the last one past M clamped to row M - 1: a
    // repeated row loads the same c and adds the same products, so its
    // stores write the same values. One block of code (a tail of smaller
    // blocks added a third to the kernel and to its cold compile), at the
    // cost of up to mr - 1 rows computed twice.
    each([&](Value col) {
      if (!cType.isDynamicDim(0)) {
        int64_t m = cType.getDimSize(0);
        Value mFull = e.idx(m - m % mr);
        e.loop(e.idx(0), mFull, e.idx(mr),
               [&](Value i0) { emitMatmulBlock(e, op, i0, mr, col, g.nv, g.w, K); });
        if (m % mr)
          emitMatmulBlock(e, op, mFull, m % mr, col, g.nv, g.w, K);
      } else {
        Value last = e.subi(M, e.idx(1));
        e.loop(e.idx(0), M, e.idx(mr),
               [&](Value i0) { emitMatmulBlock(e, op, i0, mr, col, g.nv, g.w, K, last); });
      }
    });
  }
}

} // namespace mlir::attn::cpu_lowering
