//===- GpuMmaFragments.cpp - attn-lower-to-gpu: ldmatrix / mma.sync -------===//
//
// The sm_80 matmuls of attn-lower-to-gpu: Q.K^T and P.V as nvgpu.ldmatrix
// loads of swizzled shared-memory tiles and m16n8k16 mma.sync on register
// fragments (nvvm.mma.sync for bf16), and the fragment helpers the sm_90a
// wgmma kernel shares (the P operand built from the score accumulators,
// packing). The fragment layouts are those of passes/GpuLayout.h.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

/// Swizzled column of 16-byte chunk `chunk + 2 * step` (chunk < 2) of a row
/// with `row % 8`: the XOR only touches the chunk's low 3 bits, so steps 4..7
/// are steps 0..3 plus 8 chunks. Written that way, the lane-dependent part
/// takes 4 values per operand instead of 8 (LLVM hoists them out of the KV
/// loop as 64-bit registers: 24 fewer for the head-dim-128 kernel).
static Value swizzledColumn(IRBuild &o, Value row, Value chunk, int64_t step) {
  Value low = o.addi(chunk, o.idx(2 * (step % 4)));
  Value col = o.muli(gl::swizzleChunk(o, row, low), 8);
  return step >= 4 ? o.addi(col, o.idx(64 * (step / 4))) : col;
}

/// Q fragment (A operand) of k-step `ks` from shared memory.
Value Lowering::loadQFragment(int64_t ks) {
  IRBuild &o = *this;
  auto [r, c] = gl::ldmatrixRowMajorX4(o, lane);
  Value row = addi(warpRow, r);
  Value pcol = swizzledColumn(o, row, o.divui(c, 8), ks);
  return nvgpu::LdMatrixOp::create(b, loc, VectorType::get({4, 2}, p.elt), qSmem,
                                   ValueRange{row, pcol}, /*transpose=*/false, /*numTiles=*/4);
}

/// Head dim 64: Q fragments (16 registers) are loaded once and stay in
/// registers. Head dim 128: they would take 32 registers for the whole loop,
/// which pushes the 3-stage, 128 x 64 kernel over 255 registers; there Q.K^T
/// reloads each k-step's fragment from shared memory instead (one more
/// ldmatrix per k-step and warp, the way FlashAttention-2 trades registers for
/// shared-memory traffic).
bool Lowering::qInRegisters() const { return !p.wgmma && !p.tf32 && p.D <= 64; }

void Lowering::emitQFragmentLoad() {
  if (!qInRegisters())
    return;
  for (int64_t ks = 0; ks < p.D / 16; ++ks)
    store(loadQFragment(ks), qFrag, ks);
}

Value Lowering::qFragment(int64_t ks) {
  return qInRegisters() ? load(qFrag, ks) : loadQFragment(ks);
}

/// vector<Nx2xT> from N vector<2xT> rows.
Value Lowering::stack(ArrayRef<Value> rows) {
  auto rowType = cast<VectorType>(rows[0].getType());
  auto t = VectorType::get({(int64_t)rows.size(), rowType.getDimSize(0)}, rowType.getElementType());
  Value acc = arith::ConstantOp::create(b, loc, t, b.getZeroAttr(t));
  for (auto [i, r] : llvm::enumerate(rows))
    acc = vector::InsertOp::create(b, loc, r, acc, ArrayRef<int64_t>{(int64_t)i});
  return acc;
}

/// The A fragment of P for k-step `kk` (keys 16 kk .. 16 kk + 15) as 4
/// f16/bf16 pairs, converted from the score accumulators in place (see
/// gl::probabilityFragmentSource): the operand of both mma.sync and wgmma.
SmallVector<Value> Lowering::probabilityFragment(int64_t kk) {
  auto pairType = VectorType::get({2}, b.getF32Type());
  auto eltPairType = VectorType::get({2}, p.elt);
  SmallVector<Value> regs;
  for (int64_t reg = 0; reg < 4; ++reg) {
    auto [dnb, crow] = gl::probabilityFragmentSource(reg);
    int64_t base = (2 * kk + dnb) * 4 + crow * 2;
    Value pair = vector::FromElementsOp::create(
        b, loc, pairType, ValueRange{load(sFrag, base), load(sFrag, base + 1)});
    regs.push_back(arith::TruncFOp::create(b, loc, eltPairType, pair));
  }
  return regs;
}

/// A vector<2xf16/bf16> as the packed i32 register PTX takes it.
Value Lowering::packPair(Value pair) {
  Value w = vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, loc, w, ArrayRef<int64_t>{0});
}

/// c + a * b on tensor cores (m16n8k16, f32 accumulators).
Value Lowering::mma(Value a, Value bFrag, Value c) {
  if (!p.elt.isBF16())
    return nvgpu::MmaSyncOp::create(b, loc, a, bFrag, c, ArrayRef<int64_t>{16, 8, 16});
  // bf16: nvvm.mma.sync on packed i32 registers (the nvgpu lowering of this
  // MLIR cannot deduce PTX types for bf16).
  SmallVector<Value> A, B, C;
  for (int64_t i = 0; i < 4; ++i)
    A.push_back(packPair(vector::ExtractOp::create(b, loc, a, ArrayRef<int64_t>{i})));
  for (int64_t i = 0; i < 2; ++i)
    B.push_back(packPair(vector::ExtractOp::create(b, loc, bFrag, ArrayRef<int64_t>{i})));
  for (int64_t i = 0; i < 4; ++i)
    C.push_back(vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i / 2, i % 2}));
  auto f32t = b.getF32Type();
  auto resType = LLVM::LLVMStructType::getLiteral(ctx(), {f32t, f32t, f32t, f32t});
  auto mmaOp = NVVM::MmaOp::create(
      b, loc, resType, A, B, C, ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  Value out = c;
  for (int64_t i = 0; i < 4; ++i) {
    Value x = LLVM::ExtractValueOp::create(b, loc, mmaOp.getResult(), ArrayRef<int64_t>{i});
    out = vector::InsertOp::create(b, loc, x, out, ArrayRef<int64_t>{i / 2, i % 2});
  }
  return out;
}

void Lowering::lowerQK(TileMatmulOp op) {
  IRBuild &o = *this;
  Value kTile = op.getB();
  auto [r, c] = gl::ldmatrixNMajorX4(o, lane);
  Value colChunk = o.divui(c, 8);
  auto x4Type = VectorType::get({4, 2}, p.elt);
  auto accType = VectorType::get({2, 2}, b.getF32Type());
  Value zero = arith::ConstantOp::create(b, loc, accType, b.getZeroAttr(accType));
  Value scale = f32(qScale);
  // k-steps outside, n-blocks inside: one Q fragment live at a time (the score
  // accumulators are live through the softmax anyway).
  SmallVector<Value> acc(p.BN / 8, zero);
  for (int64_t ks = 0; ks < p.D / 16; ++ks) {
    Value a = qFragment(ks);
    for (int64_t nb2 = 0; nb2 < p.BN / 16; ++nb2) {
      Value row = addi(r, idx(16 * nb2));
      // (r + 16 nb2) % 8 == r % 8: the swizzled column depends on ks only.
      Value pcol = swizzledColumn(o, r, colChunk, ks);
      Value bx4 = nvgpu::LdMatrixOp::create(b, loc, x4Type, kTile, ValueRange{row, pcol},
                                            /*transpose=*/false, /*numTiles=*/4);
      for (int64_t h = 0; h < 2; ++h) {
        Value b0 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h});
        Value b1 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h + 1});
        acc[2 * nb2 + h] = mma(a, stack({b0, b1}), acc[2 * nb2 + h]);
      }
    }
  }
  for (int64_t nb = 0; nb < p.BN / 8; ++nb)
    for (int64_t i = 0; i < 4; ++i) {
      Value x = vector::ExtractOp::create(b, loc, acc[nb], ArrayRef<int64_t>{i / 2, i % 2});
      if (qScale != 1.0)
        x = arith::MulFOp::create(b, loc, x, scale);
      store(x, sFrag, nb * 4 + i);
    }
}

void Lowering::lowerPV(TileMatmulOp op) {
  IRBuild &o = *this;
  Value vTile = op.getB();
  auto x4Type = VectorType::get({4, 2}, p.elt);
  auto accType = VectorType::get({2, 2}, b.getF32Type());
  auto [r, c] = gl::ldmatrixRowMajorX4(o, lane);
  Value colChunk = o.divui(c, 8);
  SmallVector<Value> acc;
  for (int64_t db = 0; db < p.Dv / 8; ++db) {
    SmallVector<Value> e;
    for (int64_t i = 0; i < 4; ++i)
      e.push_back(load(accFrag, db * 4 + i));
    acc.push_back(vector::FromElementsOp::create(b, loc, accType, e));
  }
  // k-steps (16 keys) outside: the probabilities of one k-step are built from
  // the score accumulators right before use (P as A fragments, no data
  // movement), so the scores die progressively.
  for (int64_t kk = 0; kk < p.BN / 16; ++kk) {
    Value a = stack(probabilityFragment(kk));
    Value row = addi(r, idx(16 * kk));
    for (int64_t db2 = 0; db2 < p.Dv / 16; ++db2) {
      // (r + 16 kk) % 8 == r % 8: the swizzled column depends on db2 only.
      Value pcol = swizzledColumn(o, r, colChunk, db2);
      Value bx4 = nvgpu::LdMatrixOp::create(b, loc, x4Type, vTile, ValueRange{row, pcol},
                                            /*transpose=*/true, /*numTiles=*/4);
      for (int64_t h = 0; h < 2; ++h) {
        Value b0 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h});
        Value b1 = vector::ExtractOp::create(b, loc, bx4, ArrayRef<int64_t>{2 * h + 1});
        acc[2 * db2 + h] = mma(a, stack({b0, b1}), acc[2 * db2 + h]);
      }
    }
  }
  for (int64_t db = 0; db < p.Dv / 8; ++db)
    for (int64_t i = 0; i < 4; ++i)
      store(vector::ExtractOp::create(b, loc, acc[db], ArrayRef<int64_t>{i / 2, i % 2}), accFrag,
            db * 4 + i);
}

} // namespace mlir::attn::gpu_lowering
