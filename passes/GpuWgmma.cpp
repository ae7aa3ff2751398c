//===- GpuWgmma.cpp - attn-lower-to-gpu: sm_90a warpgroup MMA -------------===//
//
// The Hopper matmuls of attn-lower-to-gpu (see Passes.td and docs/gpu.md):
// Q.K^T and P.V as warpgroup MMAs (wgmma) on 128-byte-swizzled shared-memory
// operands through matrix descriptors, with the proxy fence cp.async copies
// need before wgmma reads them. Masks, softmax and stores stay
// GpuSoftmax.cpp's; the TMA copies are GpuTma.cpp.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::gpu_lowering {

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

} // namespace mlir::attn::gpu_lowering
