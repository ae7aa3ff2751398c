//===- CpuSplitKv.cpp - attn-lower-to-cpu: tile_lse, tile_combine ---------===//
//
// The log-sum-exp output and the combine step of split-KV attention. Both
// are per-row work outside the KV loop (a few hundred rows for a decode
// step): scalar code for the LSEs and weights, vectors of W lanes over the
// head dimension for the weighted sum of the partial outputs. log and exp
// are upstream's polynomial approximations, like the softmax's exp.
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

#include <limits>

namespace mlir::attn::cpu_lowering {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

Value logOf(CpuEmitter &e, Value v) {
  auto l = math::LogOp::create(e.ib, v);
  e.exps.push_back(l);
  return l;
}

Value maxf(CpuEmitter &e, Value x, Value y) {
  return arith::SelectOp::create(
      e.ib, arith::CmpFOp::create(e.ib, arith::CmpFPredicate::OGT, x, y), x, y);
}
} // namespace

void lowerLse(CpuEmitter &e, TileLseOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value n = e.clamp0(op.getValid(), e.dim(op.getMax(), 0));
  e.loop(e.idx(0), n, e.idx(1), [&](Value i) {
    Value m = memref::LoadOp::create(b, op.getMax(), ValueRange{i});
    Value l = memref::LoadOp::create(b, op.getSum(), ValueRange{i});
    Value empty = arith::CmpFOp::create(b, arith::CmpFPredicate::OLE, l, e.f32(0.0));
    Value lse = arith::AddFOp::create(b, m, logOf(e, l));
    Value v = arith::SelectOp::create(b, empty, e.f32(kNegInf), lse);
    memref::StoreOp::create(b, v, op.getDest(),
                            ValueRange{op.getBatch(), op.getHead(), e.addi(op.getRow(), i)});
  });
}

void lowerCombine(CpuEmitter &e, TileCombineOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value part = op.getPart(), plse = op.getPartLse(), dst = op.getDest();
  Value batches = e.dim(dst, 0), P = op.getSplits(), h = op.getHead();
  int64_t C = e.staticDim(part, 3);
  Value c0 = e.idx(0), c1 = e.idx(1);
  Value n = e.maxsi(op.getValid(), c0);
  Value sink = op.getSinks() ? memref::LoadOp::create(b, op.getSinks(), ValueRange{h}).getResult()
                             : Value();
  e.loop(c0, n, c1, [&](Value i) {
    Value r = e.addi(op.getRow(), i);
    auto lseOf = [&](Value s) {
      Value pb = e.addi(arith::MulIOp::create(b, s, batches), op.getBatch());
      return std::make_pair(pb, memref::LoadOp::create(b, plse, ValueRange{pb, h, r}).getResult());
    };
    // M = the largest LSE (the sink's logit included).
    Value m = e.loop(c0, P, c1, ValueRange{sink ? sink : e.f32(kNegInf)},
                     [&](Value s, ValueRange acc) -> SmallVector<Value> {
                       return {maxf(e, acc[0], lseOf(s).second)};
                     })[0];
    // Rows no key reached: M = -inf; a finite stand-in keeps exp(l - M) at 0.
    Value empty = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, m, e.f32(kNegInf));
    Value ms = arith::SelectOp::create(b, empty, e.f32(0.0), m);
    auto weight = [&](Value l) { return e.exp(arith::SubFOp::create(b, l, ms)); };
    Value w0 = sink ? weight(sink) : e.f32(0.0);
    Value total = e.loop(c0, P, c1, ValueRange{w0},
                         [&](Value s, ValueRange acc) -> SmallVector<Value> {
                           return {arith::AddFOp::create(b, acc[0], weight(lseOf(s).second))};
                         })[0];
    Value none = arith::CmpFOp::create(b, arith::CmpFPredicate::OLE, total, e.f32(0.0));
    Value inv = arith::SelectOp::create(b, none, e.f32(0.0),
                                        arith::DivFOp::create(b, e.f32(1.0), total));
    e.chunks(C, [&](Value col, int64_t w) {
      Value sum = e.loop(c0, P, c1, ValueRange{e.splat(0.0, w)},
                         [&](Value s, ValueRange acc) -> SmallVector<Value> {
                           auto [pb, l] = lseOf(s);
                           Value ws = arith::MulFOp::create(b, weight(l), inv);
                           Value row = e.loadF32(part, {pb, h, r, col}, w);
                           return {vector::FMAOp::create(b, row, e.bcast(ws, w), acc[0])};
                         })[0];
      e.storeF32(sum, dst, {op.getBatch(), h, r, col});
    });
    Value lse = arith::AddFOp::create(b, ms, logOf(e, total));
    memref::StoreOp::create(b, arith::SelectOp::create(b, none, e.f32(kNegInf), lse), op.getLse(),
                            ValueRange{op.getBatch(), h, r});
  });
}

} // namespace mlir::attn::cpu_lowering
