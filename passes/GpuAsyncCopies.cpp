//===- GpuAsyncCopies.cpp - attn-lower-to-gpu: cp.async copies and groups -===//
//
// The copy phase of attn-lower-to-gpu when tiles arrive by cp.async (sm_80,
// and sm_90a with tma=false): lowers attn.copy_tile and attn.gather_tile (a
// paged cache's rows, each from its page through the block table) to 16-byte
// nvgpu.device_async_copy chunks (zero-filled past the valid rows, swizzled
// in shared memory) and places the async groups, waits and barriers from the
// pipelined structure attn-pipeline left. The TMA variant is GpuTma.cpp.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

LogicalResult Lowering::collectCopies(KernelCopies &copies) {
  SmallVector<CopyTileOp> qCopies;
  launch.getBody().walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (auto cp = dyn_cast<CopyTileOp>(op)) {
      Value r = rootOf(cp.getDest());
      if (r == kSmem || r == vSmem)
        copies.kv.push_back(cp);
      else
        qCopies.push_back(cp);
    } else if (isa<GatherTileOp>(op)) {
      copies.kv.push_back(op); // GpuPlan checked that it fills K or V
    } else if (auto mm = dyn_cast<TileMatmulOp>(op); mm && !mm.getAccumulate()) {
      copies.qk.push_back(mm);
    }
  });
  if (qCopies.size() != 1 || qCopies[0]->getBlock() != &launch.getBody().front())
    return p.func.emitError("attn-lower-to-gpu: expected one Q copy_tile at the top of the kernel");
  if (copies.qk.empty())
    return p.func.emitError("attn-lower-to-gpu: no Q.K^T tile_matmul");
  copies.q = qCopies[0];
  return success();
}

/// Lowers the copies to cp.async and places the groups, waits and barriers
/// from the pipelined structure:
///   * the Q copy is one group;
///   * the K/V copies of one pipelined iteration (same attn.part,
///     attn.iteration, attn.unrolled_copy, same block) are one group,
///     committed after the last of them (after the scf.if that predicates
///     them, so that every thread commits the same number of groups);
///   * a copy group in a loop body overwrites a slot that the compute of an
///     earlier iteration read: a gpu.barrier goes before it;
///   * before the Q.K^T of iteration i, `device_async_wait` lets the groups
///     of later iterations stay in flight: num_stages - 1 in the steady state,
///     num_stages - 2 - e in epilogue iteration e, 0 without pipelining; then
///     a gpu.barrier makes every thread's copies visible;
///   * Q fragments are loaded into registers once, before the first op that
///     runs Q.K^T, after waiting for the Q group.
LogicalResult Lowering::placeAsyncGroups() {
  Block &body = launch.getBody().front();
  KernelCopies copies;
  if (failed(collectCopies(copies)))
    return failure();
  SmallVector<Operation *> &kvCopies = copies.kv;
  SmallVector<TileMatmulOp> &qkMatmuls = copies.qk;
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(ctx());
  // Commits take the tokens of their copies where those dominate them;
  // copies under an scf.if (predicated iterations, partial rounds) are
  // committed outside it, unconditionally, so that every thread commits the
  // same number of groups, and the commit names the Q group's token instead
  // (the operands only document the dependence: cp.async.commit_group
  // commits every copy issued before it).
  auto commitAfter = [&](Operation *after, ArrayRef<Value> tokens) {
    b.setInsertionPointAfter(after);
    SmallVector<Value> inputs;
    for (Value t : tokens)
      if (t.getParentBlock() == after->getBlock())
        inputs.push_back(t);
    if (inputs.size() != tokens.size() || inputs.empty())
      inputs.assign({qToken});
    return nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType, inputs);
  };

  // Q group.
  {
    CopyTileOp q = copies.q;
    b.setInsertionPoint(q);
    SmallVector<Value> tokens = emitTileCopy(q, qSmem, p.BM, p.D);
    if (auto sc = q.getScale())
      qScale = sc->convertToDouble();
    b.setInsertionPointAfter(q);
    SmallVector<Value> inputs;
    for (Value t : tokens)
      if (t.getParentBlock() == q->getBlock())
        inputs.push_back(t);
    auto qc = nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType, inputs);
    qToken = qc.getResult();
    qCommit = qc;
    q->erase();
  }

  // K/V groups.
  for (size_t i = 0; i < kvCopies.size();) {
    size_t j = endOfCopyGroup(kvCopies, i);
    Operation *first = anchorOf(kvCopies[i]), *last = anchorOf(kvCopies[j - 1]);
    if (isa<scf::ForOp>(first->getParentOp())) {
      b.setInsertionPoint(first);
      gpu::BarrierOp::create(b, loc);
    }
    SmallVector<Value> tokens;
    for (size_t c = i; c < j; ++c) {
      Operation *cp = kvCopies[c];
      Value r = rootOf(kvCopyDest(cp));
      b.setInsertionPoint(cp);
      llvm::append_range(tokens, emitTileCopy(cp, kvCopyDest(cp), p.BN, r == kSmem ? p.D : p.Dv));
    }
    // The anchor of a copy that is not under an scf.if is the copy itself.
    Operation *after = last == kvCopies[j - 1] ? last->getPrevNode() : last;
    Operation *commit = commitAfter(after, tokens);
    (void)commit;
    for (size_t c = i; c < j; ++c)
      kvCopies[c]->erase();
    i = j;
  }

  // Q fragments, before the first top-level op that runs Q.K^T.
  Operation *firstTop = qkMatmuls.front();
  while (firstTop->getBlock() != &body)
    firstTop = firstTop->getParentOp();
  int64_t newer = 0;
  for (Operation *op = qCommit->getNextNode(); op && op != firstTop; op = op->getNextNode())
    if (isa<nvgpu::DeviceAsyncCreateGroupOp>(op))
      ++newer;
  b.setInsertionPoint(firstTop);
  nvgpu::DeviceAsyncWaitOp::create(b, loc, qToken, b.getI32IntegerAttr(newer));
  fenceForWgmma();
  gpu::BarrierOp::create(b, loc);
  emitQFragmentLoad();

  // Waits before each Q.K^T.
  for (TileMatmulOp mm : qkMatmuls) {
    int64_t pending = 0;
    auto part = mm->getAttrOfType<StringAttr>("attn.part");
    auto iter = mm->getAttrOfType<IntegerAttr>("attn.iteration");
    if (part && part.getValue() == "kernel")
      pending = p.S - 1;
    else if (part && part.getValue() == "epilogue")
      pending = p.S - 2 - (iter ? iter.getInt() : 0);
    pending = std::max<int64_t>(pending, 0);
    b.setInsertionPoint(anchorOf(mm));
    nvgpu::DeviceAsyncWaitOp::create(b, loc, qToken, b.getI32IntegerAttr(pending));
    fenceForWgmma();
    gpu::BarrierOp::create(b, loc);
  }
  return success();
}

/// A copy_tile reads rows `row + r` of source[batch, head]; a gather_tile
/// (paged cache [pages, heads, page_size, D]) reads key row t = row + r of
/// sequence `seq` from slot t % page_size of page block_table[seq, t /
/// page_size], so each row's chunks take their own base address; the page
/// size is the source's dimension 2, read at run time (one kernel for every
/// page size). Rows at or past `valid` copy 0 bytes (zero-fill) from the
/// block's first row, whose table entry is valid whenever the copy runs
/// (the KV loop only runs blocks with a valid first row).
SmallVector<Value> Lowering::emitTileCopy(Operation *op, Value dst, int64_t rows,
                                          int64_t cols) {
  IRBuild &o = *this;
  auto gather = dyn_cast<GatherTileOp>(op);
  auto copy = dyn_cast<CopyTileOp>(op);
  Value source = gather ? gather.getSource() : copy.getSource();
  Value row0 = gather ? gather.getRow() : copy.getRow();
  Value valid = gather ? gather.getValid() : copy.getValid();
  // A row's page and slot: a shift and a mask for power-of-two page sizes (a
  // 64-bit division per chunk otherwise: ~70 instructions on the GPU).
  std::optional<PageRows> pages;
  if (gather)
    pages.emplace(o, o.dim(source, 2));
  SmallVector<Value> tokens;
  // 16-byte chunks: 8 f16/bf16 or 4 f32 elements.
  int64_t perChunk = 16 / p.eltBytes;
  int64_t cpr = cols / perChunk, chunks = rows * cpr, T = threads();
  int64_t perThread = (chunks + T - 1) / T;
  for (int64_t j = 0; j < perThread; ++j) {
    auto copyChunk = [&] {
      auto [r, ch] = gl::copyChunk(o, tid, j, T, cpr);
      Value inRange = lt(r, valid);
      Value srcRow = addi(row0, sel(inRange, r, idx(0)));
      Value n = sel(inRange, idx(perChunk), idx(0));
      Value dRow = r, dCol;
      if (p.wgmma)
        std::tie(dRow, dCol) = gl::panelSwizzle(o, r, ch, rows);
      else
        dCol = o.muli(gl::swizzleChunk(o, r, ch), perChunk);
      SmallVector<Value> srcIdx;
      if (gather) {
        auto [entry, slot] = pages->of(o, srcRow);
        Value page = memref::LoadOp::create(b, loc, gather.getBlockTable(),
                                            ValueRange{gather.getSeq(), entry});
        Value pageIdx = arith::IndexCastOp::create(b, loc, b.getIndexType(), page);
        srcIdx = {pageIdx, gather.getHead(), slot, o.muli(ch, perChunk)};
      } else {
        srcIdx = {copy.getBatch(), copy.getHead(), srcRow, o.muli(ch, perChunk)};
      }
      tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
          b, loc, nvgpu::DeviceAsyncTokenType::get(ctx()), dst, ValueRange{dRow, dCol}, source,
          srcIdx, b.getIndexAttr(perChunk), n, b.getUnitAttr()));
    };
    if ((j + 1) * T > chunks)
      ifThen(lt(addi(tid, idx(j * T)), idx(chunks)), copyChunk); // some threads have no chunk
    else
      copyChunk();
  }
  return tokens;
}

} // namespace mlir::attn::gpu_lowering
