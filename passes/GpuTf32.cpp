//===- GpuTf32.cpp - attn-lower-to-gpu: f32 inputs on TF32 tensor cores ---===//
//
// f32 Q/K/V run on tensor cores as TF32, what Triton does by default
// (`input_precision="tf32"`): mma.sync m16n8k8 .tf32 (sm_80, and sm_90a: the
// wgmma .tf32 form takes B K-major only, and V [keys, d] is MN-major for P.V).
//
//  * Operands are rounded with cvt.rna.tf32.f32 (nvvm.convert.float.to.tf32):
//    the MMA reads only the 19 TF32 bits of a register.
//  * input-precision=tf32x3 splits x = big + small (big = tf32(x), small =
//    tf32(x - big)) and computes a.b as a_small.b_big + a_big.b_small +
//    a_big.b_big (CUTLASS's / Triton's 3xTF32): the dropped a_small.b_small
//    and the rounding of the parts leave about 2^-21 relative error per
//    product, fp32 level, for three MMAs instead of one.
//  * Fragments are 32-bit elements: ldmatrix moves b16, so each element is a
//    plain shared-memory load (CUTLASS's and Triton's tf32 operand loads do
//    the same). The tiles keep the 16-byte-chunk swizzle (4 f32 per chunk),
//    which makes the A and K loads of a warp conflict-free.
//  * P.V reads P from the score accumulators with the keys of each 8-key
//    block permuted (gl::tf32KeyOfColumn), and V rows with the same
//    permutation: no shuffles.
// Fragment positions are those of passes/GpuLayout.h (tested against the
// PTX ISA tables in test_gpu_layout.py).
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

/// The TF32 parts of f32 values, as the i32 registers mma.sync takes:
/// [0] = tf32(x) and, for tf32x3, [1] = tf32(x - tf32(x)).
SmallVector<SmallVector<Value>> Lowering::tf32Split(ArrayRef<Value> xs) {
  Type i32 = b.getI32Type();
  auto cvt = [&](Value x) -> Value {
    return NVVM::ConvertFloatToTF32Op::create(b, loc, i32, x, NVVM::FPRoundingMode::RNA);
  };
  SmallVector<SmallVector<Value>> parts(p.tf32x3 ? 2 : 1);
  for (Value x : xs) {
    Value big = cvt(x);
    parts[0].push_back(big);
    if (p.tf32x3) {
      Value bigF = arith::BitcastOp::create(b, loc, b.getF32Type(), big);
      parts[1].push_back(cvt(arith::SubFOp::create(b, loc, x, bigF)));
    }
  }
  return parts;
}

/// c + a * b: one mma.sync.m16n8k8 .tf32 (4 A, 2 B registers of TF32 bits,
/// 4 f32 accumulators). nvvm.mma.sync directly: the operands are already
/// the i32 registers PTX takes.
SmallVector<Value> Lowering::mmaTf32(ArrayRef<Value> a, ArrayRef<Value> bFrag,
                                     ArrayRef<Value> c) {
  auto f32t = b.getF32Type();
  auto resType = LLVM::LLVMStructType::getLiteral(ctx(), {f32t, f32t, f32t, f32t});
  auto mmaOp = NVVM::MmaOp::create(
      b, loc, resType, a, bFrag, c, ArrayRef<int64_t>{16, 8, 8}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::tf32, NVVM::MMATypes::tf32},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  SmallVector<Value> out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(b, loc, mmaOp.getResult(), ArrayRef<int64_t>{i}));
  return out;
}

/// c + a * b with a and b given by their TF32 parts: one MMA (tf32), or the
/// two correction terms first, then big * big (tf32x3).
SmallVector<Value> Lowering::tf32Product(ArrayRef<SmallVector<Value>> a,
                                         ArrayRef<SmallVector<Value>> bFrag,
                                         SmallVector<Value> c) {
  if (p.tf32x3) {
    c = mmaTf32(a[1], bFrag[0], c);
    c = mmaTf32(a[0], bFrag[1], c);
  }
  return mmaTf32(a[0], bFrag[0], c);
}

/// Column of logical element `col + off` (col < 8, `off` a multiple of 8) of
/// `row` in a swizzled f32 tile: 16-byte chunks of 4 elements XORed with
/// row % 8. The XOR only touches the low 3 bits of the chunk, so the chunks
/// past 8 are added as a constant (fewer lane-dependent values to hoist).
Value Lowering::tf32Column(Value row, Value col, int64_t off) {
  IRBuild &o = *this;
  int64_t chunk = off / 4;
  Value low = addi(o.divui(col, 4), idx(chunk % 8));
  Value c = addi(o.muli(gl::swizzleChunk(o, row, low), 4), o.remui(col, 4));
  return chunk >= 8 ? addi(c, idx(4 * 8 * (chunk / 8))) : c;
}

void Lowering::lowerQKTf32(TileMatmulOp op) {
  IRBuild &o = *this;
  Value kTile = op.getB();
  SmallVector<std::pair<Value, Value>> aPos, bPos;
  for (int64_t i = 0; i < 4; ++i)
    aPos.push_back(gl::tf32AElement(o, lane, i));
  for (int64_t i = 0; i < 2; ++i)
    bPos.push_back(gl::tf32BElement(o, lane, i));
  Value zero = f32(0.0);
  SmallVector<SmallVector<Value>> acc(p.BN / 8, SmallVector<Value>(4, zero));
  // k-steps (8 of the head dim) outside: one Q fragment live at a time.
  for (int64_t ks = 0; ks < p.D / 8; ++ks) {
    SmallVector<Value> a;
    for (auto [r, c] : aPos)
      a.push_back(memref::LoadOp::create(b, loc, qSmem,
                                         ValueRange{addi(warpRow, r), tf32Column(r, c, 8 * ks)}));
    auto aParts = tf32Split(a);
    for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
      SmallVector<Value> bv;
      for (auto [k, n] : bPos) // B (k = head dim, n = key) is K[key][d]
        bv.push_back(memref::LoadOp::create(
            b, loc, kTile, ValueRange{addi(n, idx(8 * nb)), tf32Column(n, k, 8 * ks)}));
      acc[nb] = tf32Product(aParts, tf32Split(bv), acc[nb]);
    }
  }
  Value scale = f32(qScale);
  for (int64_t nb = 0; nb < p.BN / 8; ++nb)
    for (int64_t i = 0; i < 4; ++i) {
      Value x = acc[nb][i];
      if (qScale != 1.0)
        x = arith::MulFOp::create(b, loc, x, scale);
      store(x, sFrag, nb * 4 + i);
    }
}

void Lowering::lowerPVTf32(TileMatmulOp op) {
  IRBuild &o = *this;
  Value vTile = op.getB();
  // B (k = key, n = head dim) is V[key][d], with the keys of each 8-key block
  // permuted the way P's accumulator elements are (gl::tf32KeyOfColumn).
  SmallVector<std::pair<Value, Value>> bPos;
  for (int64_t i = 0; i < 2; ++i) {
    auto [k, n] = gl::tf32BElement(o, lane, i);
    bPos.push_back({gl::tf32KeyOfColumn(o, k), n});
  }
  SmallVector<SmallVector<Value>> acc;
  for (int64_t db = 0; db < p.Dv / 8; ++db) {
    SmallVector<Value> e;
    for (int64_t i = 0; i < 4; ++i)
      e.push_back(load(accFrag, db * 4 + i));
    acc.push_back(e);
  }
  for (int64_t nb = 0; nb < p.BN / 8; ++nb) {
    SmallVector<Value> a;
    for (int64_t i = 0; i < 4; ++i)
      a.push_back(load(sFrag, nb * 4 + gl::tf32ProbabilitySource(i)));
    auto aParts = tf32Split(a);
    for (int64_t db = 0; db < p.Dv / 8; ++db) {
      SmallVector<Value> bv;
      for (auto [key, n] : bPos) // (8 nb + key) % 8 == key: the swizzle row
        bv.push_back(memref::LoadOp::create(
            b, loc, vTile, ValueRange{addi(key, idx(8 * nb)), tf32Column(key, n, 8 * db)}));
      acc[db] = tf32Product(aParts, tf32Split(bv), acc[db]);
    }
  }
  for (int64_t db = 0; db < p.Dv / 8; ++db)
    for (int64_t i = 0; i < 4; ++i)
      store(acc[db][i], accFrag, db * 4 + i);
}

} // namespace mlir::attn::gpu_lowering
