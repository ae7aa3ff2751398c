//===- IRBuild.h - the IR builder helpers both lowerings share -------------===//
//
// attn-lower-to-gpu and attn-lower-to-cpu emit many small ops: index
// constants and arithmetic, compares and selects, memref dims, loops and
// branches. IRBuild is the one place they are built from, so that the two
// lowerings spell them the same way and neither grows a private copy.
//
// Target-neutral only (arith, math, memref, scf); PageRows below is the paged
// caches' row -> (page, slot) that attn-tile and both lowerings share.
// Target-specific helpers build on
// it: the GPU lowering's state (GpuLowering.h, `Lowering`) derives from it,
// and the CPU's vector helpers (CpuLowering.h, `CpuEmitter`) too. IRBuild is
// also the "Ops" policy of the layout functions of GpuLayout.h (idx, addi,
// muli, divui, remui, xori), which IntOps evaluates on integers instead.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_IRBUILD_H
#define ATTNCC_PASSES_IRBUILD_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Builders.h"

namespace mlir::attn {

/// Builds ops at `b`'s insertion point with location `loc`. The builder is
/// borrowed (its insertion point is the caller's); `loc` is a plain member
/// that the user may move along (the GPU lowering sets it per lowered op).
struct IRBuild {
  OpBuilder &b;
  Location loc;

  using V = Value; // the value type of the GpuLayout.h policy

  //===-- Constants ---------------------------------------------------------===//
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f32(double v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); }

  //===-- Integer (index) arithmetic ----------------------------------------===//
  Value addi(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  /// x + c, folded when x is a constant.
  Value addIdx(Value x, int64_t c) {
    if (c == 0)
      return x;
    if (std::optional<int64_t> k = getConstantIntValue(x))
      return idx(*k + c);
    return addi(x, idx(c));
  }
  Value subi(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value xori(Value x, Value y) { return arith::XOrIOp::create(b, loc, x, y); }
  Value minsi(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value maxsi(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  /// x * k, x / k, x % k (unsigned) for a constant k.
  Value muli(Value x, int64_t k) { return arith::MulIOp::create(b, loc, x, idx(k)); }
  Value divui(Value x, int64_t k) { return arith::DivUIOp::create(b, loc, x, idx(k)); }
  Value remui(Value x, int64_t k) { return arith::RemUIOp::create(b, loc, x, idx(k)); }
  /// clamp(v, 0, hi) = min(max(v, 0), hi)
  Value clamp0(Value v, Value hi) { return minsi(maxsi(v, idx(0)), hi); }

  //===-- Compare and select ------------------------------------------------===//
  Value cmpi(arith::CmpIPredicate pred, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, pred, x, y);
  }
  /// x < y (signed)
  Value lt(Value x, Value y) { return cmpi(arith::CmpIPredicate::slt, x, y); }
  Value sel(Value cond, Value x, Value y) { return arith::SelectOp::create(b, loc, cond, x, y); }

  //===-- Memrefs -----------------------------------------------------------===//
  /// Dimension `d` of `memref`: a constant when static, else memref.dim.
  Value dim(Value memref, int64_t d) {
    auto t = cast<MemRefType>(memref.getType());
    if (!t.isDynamicDim(d))
      return idx(t.getDimSize(d));
    return memref::DimOp::create(b, loc, memref, d);
  }
  int64_t staticDim(Value memref, int64_t d) {
    return cast<MemRefType>(memref.getType()).getDimSize(d);
  }
  /// memref[i] / memref[i] = v on a rank-1 memref at a constant index.
  Value load(Value memref, int64_t i) {
    return memref::LoadOp::create(b, loc, memref, ValueRange{idx(i)});
  }
  void store(Value v, Value memref, int64_t i) {
    memref::StoreOp::create(b, loc, v, memref, ValueRange{idx(i)});
  }

  /// Software prefetch (read) of the elements
  /// [col0, col0 + n) of the innermost dimension of `memref` at the outer
  /// indices `lead`: one memref.prefetch per 64-byte line. `col0` may be
  /// known only at run time (a loop's column).
  /// `locality`: memref.prefetch's hint (3: into L1, prefetcht0; 1: into L2,
  /// prefetcht2, for lines needed a whole block later).
  void prefetchLines(Value memref, ValueRange lead, Value col0, int64_t n,
                     uint32_t locality = 3) {
    auto t = cast<MemRefType>(memref.getType());
    int64_t perLine = std::max<int64_t>(1, 512 / t.getElementTypeBitWidth());
    SmallVector<Value> at(lead.begin(), lead.end());
    at.push_back(Value());
    for (int64_t c = 0; c < n; c += perLine) {
      at.back() = addIdx(col0, c);
      memref::PrefetchOp::create(b, loc, memref, at, /*isWrite=*/false, /*localityHint=*/locality,
                                 /*isDataCache=*/true);
    }
  }
  void prefetchLines(Value memref, ValueRange lead, int64_t col0, int64_t n,
                     uint32_t locality = 3) {
    prefetchLines(memref, lead, idx(col0), n, locality);
  }

  //===-- Control flow ------------------------------------------------------===//
  /// scf.for without results; `body(iv)` emits at the end of the body.
  void loop(Value lb, Value ub, Value step, function_ref<void(Value)> body) {
    auto f = scf::ForOp::create(b, loc, lb, ub, step);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPoint(f.getBody()->getTerminator());
    body(f.getInductionVar());
  }
  /// scf.for carrying `init`; `body(iv, carried)` returns the next values.
  SmallVector<Value> loop(Value lb, Value ub, Value step, ValueRange init,
                          function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    if (init.empty()) {
      loop(lb, ub, step, [&](Value iv) { body(iv, {}); });
      return {};
    }
    auto f = scf::ForOp::create(b, loc, lb, ub, step, init);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(f.getBody());
      SmallVector<Value> next = body(f.getInductionVar(), f.getRegionIterArgs());
      scf::YieldOp::create(b, loc, next);
    }
    return SmallVector<Value>(f.getResults().begin(), f.getResults().end());
  }

  /// scf.if without results or else branch; `thenBody()` emits inside it.
  void ifThen(Value cond, function_ref<void()> thenBody) {
    auto ifOp = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    thenBody();
  }
  /// scf.if / else without results.
  void ifElse(Value cond, function_ref<void()> thenBody, function_ref<void()> elseBody) {
    auto ifOp = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    thenBody();
    b.setInsertionPoint(ifOp.elseBlock()->getTerminator());
    elseBody();
  }
  /// scf.if / else yielding one value of type `t`.
  Value ifElse(Value cond, Type t, function_ref<Value()> thenBody,
               function_ref<Value()> elseBody) {
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{t}, cond, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    scf::YieldOp::create(b, loc, thenBody());
    b.setInsertionPointToStart(ifOp.elseBlock());
    scf::YieldOp::create(b, loc, elseBody());
    return ifOp.getResult(0);
  }
};

/// Key row `t` of a paged cache as (t / P, t % P), P the page size read at
/// run time. A power-of-two P (every size engines use: 1, 16, 128, ...) takes
/// a shift and a mask, other sizes a division, behind one branch per row that
/// always goes the same way. Built once where the loops that use it start
/// (its values are loop-invariant, and decode's light LLVM pipeline has no
/// LICM). Why: a 64-bit `udiv` per row (four per key row of paged decode,
/// K and V gathered and prefetched) was most of what page size 1 cost over
/// contiguous decode with the K/V rows in cache.
struct PageRows {
  Value P, mask, shift, pow2;

  PageRows(IRBuild &t, Value pageSize) : P(pageSize) {
    mask = t.subi(P, t.idx(1));
    pow2 = t.cmpi(arith::CmpIPredicate::eq, arith::AndIOp::create(t.b, t.loc, P, mask),
                  t.idx(0));
    Value p64 = arith::IndexCastUIOp::create(t.b, t.loc, t.b.getI64Type(), P);
    shift = arith::IndexCastUIOp::create(
        t.b, t.loc, t.b.getIndexType(), math::CountTrailingZerosOp::create(t.b, t.loc, p64));
  }

  /// (page entry of the block table, slot in the page) of row `row`.
  std::pair<Value, Value> of(IRBuild &t, Value row) const {
    Type index = t.b.getIndexType();
    auto ifOp = scf::IfOp::create(t.b, t.loc, TypeRange{index, index}, pow2,
                                  /*withElseRegion=*/true);
    OpBuilder::InsertionGuard g(t.b);
    t.b.setInsertionPointToStart(ifOp.thenBlock());
    scf::YieldOp::create(t.b, t.loc,
                         ValueRange{arith::ShRUIOp::create(t.b, t.loc, row, shift),
                                    arith::AndIOp::create(t.b, t.loc, row, mask)});
    t.b.setInsertionPointToStart(ifOp.elseBlock());
    scf::YieldOp::create(t.b, t.loc,
                         ValueRange{arith::DivUIOp::create(t.b, t.loc, row, P),
                                    arith::RemUIOp::create(t.b, t.loc, row, P)});
    return {ifOp.getResult(0), ifOp.getResult(1)};
  }
};

} // namespace mlir::attn

#endif // ATTNCC_PASSES_IRBUILD_H
