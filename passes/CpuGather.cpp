//===- CpuGather.cpp - attn-lower-to-cpu: gather_tile ---------------------===//
//
// attn.gather_tile on the CPU: the packing copy of copy_tile (CpuCopies.cpp)
// with each source row located through the block table: row t of sequence s
// is cache[table[s, t / P], head, t % P, :], P the cache's page size read at
// run time (dimension 2), so one kernel serves every page size (a shift and a
// mask where P is a power of two: PageRows, IRBuild.h). The row
// copy computes each row's address once per row (per block of W rows for
// the transposed K copy), not once per vector. `pairs` (bf16 on AMX) uses
// the pair-packed copy of CpuCopies.cpp with the same row addresses.
//
//===----------------------------------------------------------------------===//
#include "passes/CpuLowering.h"

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::cpu_lowering {

void lowerGather(CpuEmitter &e, GatherTileOp op) {
  ImplicitLocOpBuilder &b = e.ib;
  Value src = op.getSource(), table = op.getBlockTable();
  Value seq = op.getSeq(), head = op.getHead();
  PageRows pages(e, e.dim(src, 2));
  auto address = [&](Value row) -> SmallVector<Value> {
    auto [slotOfTable, slot] = pages.of(e, row);
    Value page = memref::LoadOp::create(b, table, ValueRange{seq, slotOfTable});
    Value pageIdx = arith::IndexCastOp::create(b, b.getIndexType(), page);
    return {pageIdx, head, slot};
  };
  if (op.getPairs())
    copyPairs(e, src, op.getDest(), op.getRow(), op.getValid(), op.getTransposed(), address);
  else
    copyRows(e, src, op.getDest(), op.getRow(), op.getValid(), op.getTransposed(), std::nullopt,
             address);
}

} // namespace mlir::attn::cpu_lowering
