//===- GpuTma.cpp - attn-lower-to-gpu: sm_90a TMA loads on mbarriers ------===//
//
// The copy phase of attn-lower-to-gpu on sm_90a with tma=true: Q and the K/V
// tiles arrive as TMA boxes (nvgpu.tma.async.load, 128-byte swizzle, from
// descriptors made in the host function) completing on one mbarrier per
// pipeline slot plus one for Q. The cp.async variant is GpuAsyncCopies.cpp.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::gpu_lowering {

/// The TMA descriptor of `source` ([batch, heads, seq, d] in global memory)
/// for boxes of `rows` x 64 elements written with the 128-byte swizzle: one
/// `nvgpu.tma.create.descriptor` in the host function (it becomes a kernel
/// argument; the runtime encodes the tensor map, see gpu.py / runtime/cuda.py).
Value Lowering::tensorMap(Value source, int64_t rows) {
  auto key = std::make_pair(source, rows);
  if (Value d = tensorMaps.lookup(key))
    return d;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(launch);
  auto srcType = cast<MemRefType>(source.getType());
  auto box = MemRefType::get({1, 1, rows, 64}, p.elt, MemRefLayoutAttrInterface{}, workgroup());
  auto descType = nvgpu::TensorMapDescriptorType::get(
      ctx(), box, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_128B, nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  Value unranked = memref::CastOp::create(
      b, loc, UnrankedMemRefType::get(srcType.getElementType(), srcType.getMemorySpace()), source);
  SmallVector<Value> dims;
  for (int64_t d : box.getShape())
    dims.push_back(idx(d));
  Value desc = nvgpu::TmaCreateDescriptorOp::create(b, loc, descType, unranked, dims);
  tensorMaps[key] = desc;
  return desc;
}

/// The TMA loads of one copy_tile: one [rows, 64] box per 64-column panel,
/// into the panel's [1, 1, rows, 64] view; coordinates innermost first
/// (column, row, head, batch); rows past the end of the tensor arrive as
/// zeros, which is copy_tile's `valid` as attn-tile builds it (the rows left
/// in the tensor).
void Lowering::emitTmaCopy(CopyTileOp op, Value dst, Value desc, int64_t rows, int64_t cols,
                           Value slot, Value pred) {
  auto dstType = cast<MemRefType>(dst.getType());
  for (int64_t pc = 0; pc < cols / 64; ++pc) {
    SmallVector<OpFoldResult> off{b.getIndexAttr(pc * rows), b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes{b.getIndexAttr(rows), b.getIndexAttr(64)};
    SmallVector<OpFoldResult> strides{b.getIndexAttr(1), b.getIndexAttr(1)};
    auto panelType = cast<MemRefType>(
        memref::SubViewOp::inferResultType(dstType, off, sizes, strides));
    Value panel = memref::SubViewOp::create(b, loc, panelType, dst, off, sizes, strides);
    Value box = memref::ExpandShapeOp::create(
        b, loc, SmallVector<int64_t>{1, 1, rows, 64}, panel,
        SmallVector<ReassociationIndices>{{0, 1, 2}, {3}});
    nvgpu::TmaAsyncLoadOp::create(b, loc, box, mbarriers, desc,
                                  ValueRange{idx(pc * 64), op.getRow(), op.getHead(), op.getBatch()},
                                  slot, /*multicastMask=*/Value(), pred);
  }
}

/// TMA version of placeAsyncGroups: thread 0 issues each pipelined
/// iteration's K and V boxes on the mbarrier of the slot they fill (after
/// arrive.expect_tx with their byte count), Q on its own mbarrier; before
/// the Q.K^T that reads a slot, every thread waits for the barrier's phase
/// of that fill. Fills and reads go through the slots in the same order, so
/// read number c waits on barrier c % S with parity (c / S) % 2 (a counter
/// in a register). The gpu.barrier before a slot is refilled (all warps done
/// reading it) stays; no proxy fence is needed (TMA writes and wgmma reads
/// both go through the async proxy).
LogicalResult Lowering::placeTmaLoads() {
  Block &body = launch.getBody().front();
  KernelCopies copies;
  if (failed(collectCopies(copies)))
    return failure();
  // TMA is off for programs with gather_tile (GpuPlan.cpp): copy_tile only.
  SmallVector<CopyTileOp> kvCopies;
  for (Operation *op : copies.kv)
    kvCopies.push_back(cast<CopyTileOp>(op));
  SmallVector<TileMatmulOp> &qkMatmuls = copies.qk;
  CopyTileOp q = copies.q;
  if (auto sc = q.getScale())
    qScale = sc->convertToDouble();

  // Barriers and the read counter, before the Q copy.
  b.setInsertionPoint(q);
  auto groupType = nvgpu::MBarrierGroupType::get(ctx(), workgroup(), p.S + 1);
  mbarriers = nvgpu::MBarrierCreateOp::create(b, loc, groupType);
  Value isLeader = cmpi(arith::CmpIPredicate::eq, tid, idx(0));
  for (int64_t i = 0; i <= p.S; ++i)
    nvgpu::MBarrierInitOp::create(b, loc, mbarriers, idx(1), idx(i), isLeader);
  // The inits (generic proxy) must be visible to the TMA completions (async
  // proxy) and to every thread before anyone uses a barrier (CUDA
  // Programming Guide, TMA).
  fenceForWgmma();
  gpu::BarrierOp::create(b, loc);
  Value reads = memref::AllocaOp::create(b, loc, MemRefType::get({1}, b.getIndexType()));
  store(idx(0), reads, 0);

  // Q.
  Value qSlot = idx(p.S);
  nvgpu::MBarrierArriveExpectTxOp::create(b, loc, mbarriers, idx(p.qBytes), qSlot, isLeader);
  emitTmaCopy(q, qSmem, tensorMap(q.getSource(), p.BM), p.BM, p.D, qSlot, isLeader);
  q->erase();

  // K/V: one expect_tx per pipelined iteration, at its first copy (under
  // the scf.if that predicates the iteration, if any).
  auto slotOf = [&](CopyTileOp cp) -> Value {
    Value d = cp.getDest();
    while (auto c = d.getDefiningOp<memref::CastOp>())
      d = c.getSource();
    if (auto sv = d.getDefiningOp<memref::SubViewOp>())
      if (rootOf(sv.getSource()) == kSmem || rootOf(sv.getSource()) == vSmem)
        return getValueOrCreateConstantIndexOp(b, loc, sv.getMixedOffsets()[0]);
    return Value();
  };
  for (size_t i = 0; i < kvCopies.size();) {
    size_t j = endOfCopyGroup(copies.kv, i);
    Operation *first = anchorOf(kvCopies[i]);
    if (isa<scf::ForOp>(first->getParentOp())) {
      b.setInsertionPoint(first);
      gpu::BarrierOp::create(b, loc); // every warp is done with the slot
    }
    b.setInsertionPoint(kvCopies[i]);
    Value slot = slotOf(kvCopies[i]);
    if (!slot) {
      if (p.S != 1)
        return kvCopies[i].emitError("attn-lower-to-gpu: cannot tell which pipeline slot this "
                                     "copy fills");
      slot = idx(0);
    }
    int64_t bytes = 0;
    for (size_t c = i; c < j; ++c) {
      bool isK = rootOf(kvCopies[c].getDest()) == kSmem;
      bytes += p.BN * (isK ? p.D : p.Dv) * 2;
    }
    Value leader = cmpi(arith::CmpIPredicate::eq, tid, idx(0));
    nvgpu::MBarrierArriveExpectTxOp::create(b, loc, mbarriers, idx(bytes), slot, leader);
    for (size_t c = i; c < j; ++c) {
      CopyTileOp cp = kvCopies[c];
      bool isK = rootOf(cp.getDest()) == kSmem;
      b.setInsertionPoint(cp);
      Value lead = cmpi(arith::CmpIPredicate::eq, tid, idx(0));
      emitTmaCopy(cp, cp.getDest(), tensorMap(cp.getSource(), p.BN), p.BN, isK ? p.D : p.Dv,
                  slot, lead);
      cp->erase();
    }
    i = j;
  }

  // Waits: Q before the first top-level op that runs Q.K^T; K/V right before
  // each Q.K^T, under the same predicate as the matmul (a wait for a fill
  // that a predicated-off iteration never issued would hang).
  Operation *firstTop = qkMatmuls.front();
  while (firstTop->getBlock() != &body)
    firstTop = firstTop->getParentOp();
  b.setInsertionPoint(firstTop);
  Value ticks = idx(10000000);
  Value falseBit = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
  nvgpu::MBarrierTryWaitParityOp::create(b, loc, mbarriers, falseBit, ticks, qSlot);
  for (TileMatmulOp mm : qkMatmuls) {
    b.setInsertionPoint(mm);
    IRBuild &o = *this;
    Value c = load(reads, 0);
    Value slot = o.remui(c, p.S);
    Value phase = o.remui(o.divui(c, p.S), 2);
    Value parity = cmpi(arith::CmpIPredicate::ne, phase, idx(0));
    nvgpu::MBarrierTryWaitParityOp::create(b, loc, mbarriers, parity, ticks, slot);
    store(addi(c, idx(1)), reads, 0);
  }
  return success();
}

} // namespace mlir::attn::gpu_lowering
