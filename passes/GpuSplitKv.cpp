//===- GpuSplitKv.cpp - attn-lower-to-gpu: attn-tile's split-KV form -------===//
//
// Split-KV (flash decoding, AttnTileSplit.cpp) on the GPU: two kernels in
// one gpu.module, launched one after the other on the same stream.
//
// * The splits: attn-tile's grid is (batch, head, query block, split), four
//   dimensions; a launch has three. foldSplitGrid folds split and batch into
//   one (z = split * B + batch, the row of the split's partial output), so
//   the kernel is the ordinary attention kernel whose KV loop covers one
//   split's range and whose tile_store / tile_lse write the workspaces (or,
//   with one split, the output and lse directly).
// * The combine: tile_combine's grid becomes its own launch
//   (buildCombineLaunch), one thread block per output row (blocks x = row,
//   y = head, z = batch), threads over the value head dim: per row, the
//   splits' LSEs give M and the weights (ex2 / lg2, no libdevice), each
//   thread merges its columns. Everything is recomputed from the kernel's
//   buffer arguments (memref.dim), so the kernel takes no index arguments
//   and the launch is unconditional: with one split, the kernel returns at
//   once (the split kernel wrote the output), instead of the host branch
//   attn-tile emits (the runtime reads the launches in the host function's
//   top block, so they must not sit under an scf.if).
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

#include "mlir/Dialect/GPU/Utils/GPUUtils.h"
#include "mlir/IR/SymbolTable.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn;

namespace mlir::attn::gpu_lowering {

namespace {
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.69314718055994531;
} // namespace

LogicalResult foldSplitGrid(func::FuncOp func) {
  // The grid of the attention tile ops. Canonicalization drops unit
  // dimensions (and the grid's attributes with them): four loops are
  // attn-tile's (batch, head, query block, split); fewer fit a launch as
  // they are (buildLaunch maps any order of dimensions to block ids).
  scf::ParallelOp grid;
  func.walk([&](TileSoftmaxOp sm) {
    if (!grid)
      grid = sm->getParentOfType<scf::ParallelOp>();
  });
  if (!grid || grid.getNumLoops() < 4)
    return success();
  OpBuilder b(grid);
  Location loc = grid.getLoc();
  IRBuild t{b, loc};
  auto ubs = llvm::to_vector(grid.getUpperBound());
  Value c0 = t.idx(0), c1 = t.idx(1);
  Value folded = arith::MulIOp::create(b, loc, ubs[3], ubs[0]);
  auto par = scf::ParallelOp::create(b, loc, ValueRange{c0, c0, c0},
                                     ValueRange{folded, ubs[1], ubs[2]},
                                     ValueRange{c1, c1, c1});
  par->setDiscardableAttrs(grid->getDiscardableAttrDictionary());
  Block *body = par.getBody();
  body->getOperations().splice(std::prev(body->end()), grid.getBody()->getOperations(),
                               grid.getBody()->begin(), std::prev(grid.getBody()->end()));
  // The folded index z = split * B + batch (B >= 1 when the grid runs).
  b.setInsertionPointToStart(body);
  Value z = par.getInductionVars()[0];
  Value batch = arith::RemUIOp::create(b, loc, z, ubs[0]);
  Value split = arith::DivUIOp::create(b, loc, z, ubs[0]);
  auto ivs = grid.getInductionVars();
  ivs[0].replaceAllUsesWith(batch);
  ivs[1].replaceAllUsesWith(par.getInductionVars()[1]);
  ivs[2].replaceAllUsesWith(par.getInductionVars()[2]);
  ivs[3].replaceAllUsesWith(split);
  grid.erase();
  return success();
}

FailureOr<gpu::LaunchOp> buildCombineLaunch(TileCombineOp op) {
  auto func = op->getParentOfType<func::FuncOp>();
  for (Value v : {op.getPart(), op.getPartLse(), op.getDest(), op.getLse()})
    if (!isa<BlockArgument>(v))
      return op.emitError("attn-lower-to-gpu: tile_combine's buffers must be function arguments");
  if (op.getSinks() && !isa<BlockArgument>(op.getSinks()))
    return op.emitError("attn-lower-to-gpu: tile_combine's sinks must be a function argument");
  // attn-tile's combine grid (or what canonicalization left of it) and the
  // host branch around it (splits > 1) go: the kernel covers every row from
  // the buffers' shapes and checks the split count itself.
  Operation *anchor = op;
  while (anchor->getParentOp() != func.getOperation())
    anchor = anchor->getParentOp();
  if (!isa<scf::IfOp, scf::ParallelOp, TileCombineOp>(anchor) ||
      anchor->walk([&](Operation *o) {
              return isa_and_nonnull<AttnDialect>(o->getDialect()) && o != op.getOperation()
                         ? WalkResult::interrupt()
                         : WalkResult::advance();
            }).wasInterrupted())
    return op.emitError("attn-lower-to-gpu: tile_combine must be alone in attn-tile's combine "
                        "grid");
  Value part = op.getPart(), plse = op.getPartLse(), dest = op.getDest(), lse = op.getLse();
  Value sinks = op.getSinks();
  auto destType = cast<MemRefType>(dest.getType());
  int64_t Dv = destType.getDimSize(3);
  if (ShapedType::isDynamic(Dv))
    return op.emitError("attn-lower-to-gpu: the value head dim must be static");
  int64_t threads = std::min<int64_t>(128, llvm::alignTo(Dv, kWarpSize));

  OpBuilder b(anchor);
  Location loc = op.getLoc();
  IRBuild t{b, loc};
  Value one = t.idx(1);
  // Grid: one block per output row.
  Value gx = t.dim(dest, 2), gy = t.dim(dest, 1), gz = t.dim(dest, 0);
  Value noSmem = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
  auto launch = gpu::LaunchOp::create(b, loc, gx, gy, gz, t.idx(threads), one, one, noSmem);
  Block &body = launch.getBody().front();
  b.setInsertionPointToStart(&body);
  Value row = launch.getBlockIds().x, head = launch.getBlockIds().y,
        batch = launch.getBlockIds().z, tid = launch.getThreadIds().x;
  Value c0 = t.idx(0), c1 = t.idx(1);
  Value batches = t.dim(dest, 0);
  Value splits = arith::DivUIOp::create(b, loc, t.dim(part, 0), t.maxsi(batches, c1));
  Value negInf = t.f32(-std::numeric_limits<double>::infinity());
  auto exp = [&](Value x) {
    return nvvmApprox(b, loc, "llvm.nvvm.ex2.approx.ftz.f",
                         arith::MulFOp::create(b, loc, x, t.f32(kLog2e)));
  };
  t.ifThen(t.cmpi(arith::CmpIPredicate::ugt, splits, c1), [&] {
    auto lseOf = [&](Value s) {
      Value pb = t.addi(arith::MulIOp::create(b, loc, s, batches), batch);
      return std::make_pair(pb, memref::LoadOp::create(b, loc, plse, ValueRange{pb, head, row})
                                    .getResult());
    };
    Value sink = sinks ? memref::LoadOp::create(b, loc, sinks, ValueRange{head}).getResult()
                       : Value();
    Value m = t.loop(c0, splits, c1, ValueRange{sink ? sink : negInf},
                     [&](Value s, ValueRange acc) -> SmallVector<Value> {
                       return {arith::MaximumFOp::create(b, loc, acc[0], lseOf(s).second)};
                     })[0];
    // A row no key reached (M = -inf): a finite stand-in keeps the weights 0.
    Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, m, negInf);
    Value ms = t.sel(empty, t.f32(0.0), m);
    auto weight = [&](Value l) { return exp(arith::SubFOp::create(b, loc, l, ms)); };
    Value w0 = sink ? weight(sink) : t.f32(0.0);
    Value total = t.loop(c0, splits, c1, ValueRange{w0},
                         [&](Value s, ValueRange acc) -> SmallVector<Value> {
                           return {arith::AddFOp::create(b, loc, acc[0],
                                                         weight(lseOf(s).second))};
                         })[0];
    Value none = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, total, t.f32(0.0));
    Value inv = t.sel(none, t.f32(0.0), arith::DivFOp::create(b, loc, t.f32(1.0), total));
    Type outElt = destType.getElementType();
    // Column base + tid per step (uniform loop bounds, a guarded tail).
    t.loop(c0, t.idx(Dv), t.idx(threads), [&](Value base) {
      Value col = t.addi(base, tid);
      t.ifThen(t.lt(col, t.idx(Dv)), [&] {
        Value sum = t.loop(c0, splits, c1, ValueRange{t.f32(0.0)},
                           [&](Value s, ValueRange acc) -> SmallVector<Value> {
                             auto [pb, l] = lseOf(s);
                             Value x = memref::LoadOp::create(b, loc, part,
                                                              ValueRange{pb, head, row, col});
                             Value wx = arith::MulFOp::create(b, loc, weight(l), x);
                             return {arith::AddFOp::create(b, loc, acc[0], wx)};
                           })[0];
        Value o = arith::MulFOp::create(b, loc, sum, inv);
        if (!outElt.isF32())
          o = arith::TruncFOp::create(b, loc, outElt, o);
        memref::StoreOp::create(b, loc, o, dest, ValueRange{batch, head, row, col});
      });
    });
    t.ifThen(t.cmpi(arith::CmpIPredicate::eq, tid, c0), [&] {
      Value ln = arith::MulFOp::create(
          b, loc, nvvmApprox(b, loc, "llvm.nvvm.lg2.approx.ftz.f", total), t.f32(kLn2));
      Value l = t.sel(none, negInf, arith::AddFOp::create(b, loc, ms, ln));
      memref::StoreOp::create(b, loc, l, lse, ValueRange{batch, head, row});
    });
  });
  b.setInsertionPointToEnd(&body);
  gpu::TerminatorOp::create(b, loc);
  anchor->erase();
  return launch;
}

LogicalResult outlineCombine(gpu::LaunchOp launch, func::FuncOp func) {
  // Into the attention kernel's gpu.module: one module, one PTX, one cubin.
  gpu::LaunchFuncOp main;
  func.walk([&](gpu::LaunchFuncOp lf) {
    if (!main)
      main = lf;
  });
  if (!main)
    return launch.emitError("attn-lower-to-gpu: the split-KV form has no attention kernel");
  auto module = SymbolTable::lookupNearestSymbolFrom<gpu::GPUModuleOp>(
      func, main.getKernelModuleName());
  if (!module)
    return launch.emitError("attn-lower-to-gpu: the attention kernel's gpu.module is missing");
  SmallVector<Value> operands;
  std::string name = (func.getSymName() + "_combine").str();
  gpu::GPUFuncOp kernel = outlineKernelFunc(launch, name, operands);
  for (Value v : operands)
    if (!isa<BlockArgument>(v))
      return launch.emitError("attn-lower-to-gpu: the combine kernel uses a host value");
  SymbolTable(module).insert(kernel);
  replaceByLaunchFunc(launch, kernel, operands);
  return success();
}

} // namespace mlir::attn::gpu_lowering
