//===- AttnLowerToGpuSm90.cpp - attn-lower-to-gpu: the sm_90a kernel -----===//
//
// The Hopper parts of attn-lower-to-gpu (see Passes.td and docs/gpu.md): the
// Q.K^T and P.V products as warpgroup MMAs (wgmma) and the tile copies as TMA
// boxes completing on mbarriers. The rest of the kernel (grid, masks,
// softmax, stores, cp.async fallback) is AttnLowerToGpu.cpp's.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

//===-- sm_90a: warpgroup MMA ---------------------------------------------===//
// A warpgroup is 4 consecutive warps: warpgroup g owns query rows
// [64g, 64g + 64), and warp w of the block still owns rows [16w, 16w + 16).
// Per warp, the wgmma accumulator fragment (register i of the m64nN result)
// is the mma.sync m16n8 fragment of n-block i / 4, element i % 4, so the
// score and output registers keep the sFrag / accFrag layout of the sm_80
// kernel.

constexpr int64_t kWarpgroupThreads = 128;
constexpr int64_t kSwizzleRowBytes = 128; // 128-byte swizzle: 64 f16/bf16 per row
constexpr int64_t kAtomBytes = 8 * kSwizzleRowBytes;

/// Copies into shared memory (cp.async: generic proxy) become visible to
/// wgmma's operand reads (async proxy) only after a proxy fence by the
/// writing thread; the barrier that follows publishes them to the block.
void Lowering::fenceForWgmma() {
  if (p.wgmma)
    NVVM::FenceProxyOp::create(b, loc, NVVM::ProxyKind::async_shared,
                               NVVM::SharedSpaceAttr::get(ctx(), NVVM::SharedSpace::shared_cta));
}

/// Byte address of a shared-memory tile in the shared window.
Value Lowering::sharedAddress(Value tile) {
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, tile);
  auto md = memref::ExtractStridedMetadataOp::create(b, loc, tile);
  return addi(ptr, muli(md.getOffset(), 2));
}

/// The 64-bit wgmma matrix descriptor (PTX ISA "Matrix Descriptor Format")
/// of a 128-byte-swizzled operand at `address`: start address, leading and
/// stride byte offsets (all >> 4) and swizzle mode 1 (128 B) in bits 62-63.
/// A k-step inside the tile adds (byte offset >> 4) to it.
Value Lowering::wgmmaDescriptor(Value address, int64_t lbo, int64_t sbo) {
  Type i64 = b.getI64Type();
  auto c64 = [&](uint64_t v) { return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v)); };
  Value a = arith::IndexCastUIOp::create(b, loc, i64, address);
  Value start = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, a, c64(4)), c64(0x3FFF));
  uint64_t fixed = (uint64_t((lbo >> 4) & 0x3FFF) << 16) | (uint64_t((sbo >> 4) & 0x3FFF) << 32) |
                   (uint64_t(1) << 62);
  return arith::OrIOp::create(b, loc, start, c64(fixed));
}

static Value offsetDescriptor(OpBuilder &b, Location loc, Value desc, int64_t bytes) {
  if (bytes == 0)
    return desc;
  Value off = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(bytes >> 4));
  return arith::AddIOp::create(b, loc, desc, off);
}

/// The wgmma accumulator struct (n f32 registers) from a register tile.
Value Lowering::wgmmaAccumulator(Value frag, int64_t n) {
  auto t = LLVM::LLVMStructType::getLiteral(ctx(), SmallVector<Type>(n, b.getF32Type()));
  Value acc = LLVM::UndefOp::create(b, loc, t);
  for (int64_t i = 0; i < n; ++i)
    acc = LLVM::InsertValueOp::create(b, loc, acc, load(frag, i), ArrayRef<int64_t>{i});
  return acc;
}

void Lowering::storeWgmmaAccumulator(Value acc, Value frag, int64_t n, double scale) {
  Value s = scale != 1.0 ? f32(scale) : Value();
  for (int64_t i = 0; i < n; ++i) {
    Value x = LLVM::ExtractValueOp::create(b, loc, acc, ArrayRef<int64_t>{i});
    if (s)
      x = arith::MulFOp::create(b, loc, x, s);
    store(x, frag, i);
  }
}

static void commitAndWaitWgmma(OpBuilder &b, Location loc) {
  NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
  NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
}

/// S = Q.K^T: one m64nBNk16 wgmma per 16 of the head dim, Q (this
/// warpgroup's 64 rows) and K both K-major in shared memory.
void Lowering::lowerQKWgmma(TileMatmulOp op) {
  IRBuild &o = *this;
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  Value wg = o.divui(tid, kWarpgroupThreads);
  Value qAddr = addi(sharedAddress(qSmem), o.muli(wg, 64 * kSwizzleRowBytes));
  Value qDesc = wgmmaDescriptor(qAddr, 16, kAtomBytes);
  Value kDesc = wgmmaDescriptor(sharedAddress(op.getB()), 16, kAtomBytes);
  auto wt = p.elt.isBF16() ? NVVM::WGMMATypes::bf16 : NVVM::WGMMATypes::f16;
  int64_t n = p.BN / 2;
  auto structType = LLVM::LLVMStructType::getLiteral(ctx(), SmallVector<Type>(n, b.getF32Type()));
  Value acc = LLVM::UndefOp::create(b, loc, structType);
  for (int64_t ks = 0; ks < p.D / 16; ++ks) {
    // 4 k-steps of 32 bytes per 128-byte row, then the next 64-column panel.
    int64_t inPanel = (ks % 4) * 32, panel = ks / 4;
    Value a = offsetDescriptor(b, loc, qDesc, panel * p.BM * kSwizzleRowBytes + inPanel);
    Value bd = offsetDescriptor(b, loc, kDesc, panel * p.BN * kSwizzleRowBytes + inPanel);
    acc = NVVM::WgmmaMmaAsyncOp::create(
        b, loc, structType, acc, a, bd, NVVM::MMAShapeAttr::get(ctx(), 64, p.BN, 16), wt, wt,
        NVVM::WGMMATypes::f32, ks == 0 ? NVVM::WGMMAScaleOut::zero : NVVM::WGMMAScaleOut::one,
        NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row,
        NVVM::MMALayout::col, /*satfinite=*/nullptr);
  }
  commitAndWaitWgmma(b, loc);
  storeWgmmaAccumulator(acc, sFrag, n, qScale);
}

/// O += P.V: one m64nDk16 wgmma per 16 keys, P from registers (the score
/// fragments, as for mma.sync) and V [keys, d] through an MN-major
/// (transposed) descriptor: 64-column panels LBO apart, 8-key atoms SBO
/// apart. Upstream's nvvm.wgmma.mma_async only takes A from shared memory,
/// so this wgmma is inline PTX.
void Lowering::lowerPVWgmma(TileMatmulOp op) {
  int64_t n = p.Dv / 2;
  Value vDesc = wgmmaDescriptor(sharedAddress(op.getB()), p.BN * kSwizzleRowBytes, kAtomBytes);
  // Every register a wgmma reads (accumulators, P) is written before the
  // wgmma.fence; a write between the fence and the wgmma would make ptxas
  // insert waits and serialize the chain.
  Value acc = wgmmaAccumulator(accFrag, n);
  SmallVector<SmallVector<Value>> aRegs;
  for (int64_t kk = 0; kk < p.BN / 16; ++kk) {
    SmallVector<Value> regs;
    for (Value pair : probabilityFragment(kk))
      regs.push_back(packPair(pair));
    aRegs.push_back(regs);
  }
  SmallVector<Value> descs;
  for (int64_t kk = 0; kk < p.BN / 16; ++kk)
    descs.push_back(offsetDescriptor(b, loc, vDesc, kk * 2 * kAtomBytes)); // 16 keys = 2 atoms
  std::string asmText;
  {
    llvm::raw_string_ostream os(asmText);
    const char *t = p.elt.isBF16() ? "bf16" : "f16";
    os << "wgmma.mma_async.sync.aligned.m64n" << p.Dv << "k16.f32." << t << "." << t << " {";
    for (int64_t i = 0; i < n; ++i)
      os << (i ? ", " : "") << "$" << i;
    // Operands: n outputs, n tied accumulator inputs, 4 A registers, B.
    os << "}, {$" << 2 * n << ", $" << 2 * n + 1 << ", $" << 2 * n + 2 << ", $" << 2 * n + 3
       << "}, $" << 2 * n + 4 << ", 1, 1, 1, 1;";
  }
  std::string constraints;
  for (int64_t i = 0; i < n; ++i)
    constraints += "=f,";
  for (int64_t i = 0; i < n; ++i)
    constraints += std::to_string(i) + ",";
  constraints += "r,r,r,r,l";
  NVVM::WgmmaFenceAlignedOp::create(b, loc);
  for (int64_t kk = 0; kk < p.BN / 16; ++kk) {
    SmallVector<Value> operands;
    for (int64_t i = 0; i < n; ++i)
      operands.push_back(LLVM::ExtractValueOp::create(b, loc, acc, ArrayRef<int64_t>{i}));
    llvm::append_range(operands, aRegs[kk]);
    operands.push_back(descs[kk]);
    acc = LLVM::InlineAsmOp::create(b, loc, acc.getType(), operands, asmText, constraints,
                                    /*has_side_effects=*/true, /*is_align_stack=*/false,
                                    LLVM::tailcallkind::TailCallKind::None,
                                    LLVM::AsmDialectAttr::get(ctx(), LLVM::AsmDialect::AD_ATT),
                                    /*operand_attrs=*/ArrayAttr())
              .getResult(0);
  }
  commitAndWaitWgmma(b, loc);
  storeWgmmaAccumulator(acc, accFrag, n, 1.0);
}

//===-- sm_90a: TMA loads on mbarriers -------------------------------------===//

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
  SmallVector<CopyTileOp> &kvCopies = copies.kv;
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
    size_t j = endOfCopyGroup(kvCopies, i);
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
