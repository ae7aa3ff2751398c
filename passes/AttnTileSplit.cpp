//===- AttnTileSplit.cpp - attn-tile's lse and split-KV forms -------------===//
//
// Split-KV (flash decoding): when batch x heads x query blocks cannot keep
// the cores busy (a decode step has one query block per head), the KV range
// of each row block is cut into P chunks that run as separate grid points.
// Each chunk ends with a normalized partial output and its log-sum-exp in
// workspace buffers; a second grid merges them (attn.tile_combine). P comes
// from the workspace's size at run time, never from the sequence length at
// compile time, so one kernel serves a whole decode loop.
//
//===----------------------------------------------------------------------===//
#include "passes/AttnTileSplit.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::attn::tile_split {

FormArgs addFormArguments(Block &body, MemRefType outType, bool lse, bool splitKv,
                          Location loc) {
  FormArgs a;
  if (!lse && !splitKv)
    return a;
  auto shape = outType.getShape();
  Type f32 = Float32Type::get(outType.getContext());
  int64_t dyn = ShapedType::kDynamic;
  a.lse = body.addArgument(MemRefType::get({shape[0], shape[1], shape[2]}, f32), loc);
  if (splitKv) {
    a.part = body.addArgument(MemRefType::get({dyn, shape[1], shape[2], shape[3]}, f32), loc);
    a.partLse = body.addArgument(MemRefType::get({dyn, shape[1], shape[2]}, f32), loc);
  }
  return a;
}

Value splitCount(OpBuilder &b, Location loc, Value part, Value batch) {
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  Value rows = memref::DimOp::create(b, loc, part, 0);
  return arith::DivUIOp::create(b, loc, rows, arith::MaxSIOp::create(b, loc, batch, c1));
}

std::pair<Value, Value> splitRange(OpBuilder &b, Location loc, Value lo, Value hi, Value split,
                                   Value numSplits, int64_t blockN) {
  auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
  Value cBN = idx(blockN);
  // blocks = ceil((hi - lo) / BN); per split: ceil(blocks / P) blocks.
  Value span = arith::SubIOp::create(b, loc, hi, lo);
  Value blocks = arith::CeilDivUIOp::create(b, loc, span, cBN);
  Value per = arith::CeilDivUIOp::create(b, loc, blocks, numSplits);
  Value chunk = arith::MulIOp::create(b, loc, per, cBN);
  Value start = arith::AddIOp::create(b, loc, lo, arith::MulIOp::create(b, loc, split, chunk));
  Value los = arith::MinSIOp::create(b, loc, start, hi);
  Value his = arith::MinSIOp::create(b, loc, arith::AddIOp::create(b, loc, los, chunk), hi);
  return {los, his};
}

void emitCombine(OpBuilder &b, Location loc, const FormArgs &args, Value out, Value sinks,
                 Value batch, Value heads, Value lq, Value numSplits, int64_t blockM) {
  auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
  Value c0 = idx(0), c1 = idx(1), cBM = idx(blockM);
  Value blocks = arith::CeilDivUIOp::create(b, loc, lq, cBM);
  auto grid = scf::ParallelOp::create(b, loc, ValueRange{c0, c0, c0},
                                      ValueRange{batch, heads, blocks}, ValueRange{c1, c1, c1});
  grid->setAttr("attn.combine", b.getUnitAttr());
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(grid.getBody());
  Value m0 = arith::MulIOp::create(b, loc, grid.getInductionVars()[2], cBM);
  Value valid = arith::MinSIOp::create(b, loc, arith::SubIOp::create(b, loc, lq, m0), cBM);
  TileCombineOp::create(b, loc, args.part, args.partLse, sinks, out, args.lse, numSplits,
                        grid.getInductionVars()[0], grid.getInductionVars()[1], m0, valid);
}

} // namespace mlir::attn::tile_split
