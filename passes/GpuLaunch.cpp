//===- GpuLaunch.cpp - attn-lower-to-gpu: launch, prelude, outlining -------===//
//
// The phases of attn-lower-to-gpu that build the kernel's frame rather than
// its math: the gpu.launch that replaces the grid (buildLaunch), the index
// values recomputed inside it (internalizeValues), the per-thread prelude
// (thread ids, dynamic shared memory views, private register tiles), the
// retyping of the K/V tile buffers to their f16/bf16 shared-memory slots,
// and, last, the outlining into a gpu.module with NVVM attributes.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLowering.h"

#include "mlir/Dialect/GPU/Utils/GPUUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/DenseSet.h"

#include <functional>

using namespace mlir;
using namespace mlir::attn;
namespace gl = mlir::attn::gpu_layout;

namespace mlir::attn::gpu_lowering {

LogicalResult Lowering::buildLaunch() {
  func::FuncOp func = p.func;
  SmallVector<Value> ubs;
  if (p.grid) {
    b.setInsertionPoint(p.grid);
    loc = p.grid.getLoc();
    ubs = llvm::to_vector(p.grid.getUpperBound());
  } else {
    b.setInsertionPointToStart(&func.getBody().front());
  }
  Value one = idx(1);
  size_t n = ubs.size();
  Value gx = n >= 1 ? ubs[n - 1] : one, gy = n >= 2 ? ubs[n - 2] : one,
        gz = n >= 3 ? ubs[n - 3] : one;
  Value smem = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(p.smemBytes));
  launch = gpu::LaunchOp::create(b, loc, gx, gy, gz, idx(threads()), one, one, smem);
  Block &body = launch.getBody().front();
  if (p.grid) {
    Block *gb = p.grid.getBody();
    body.getOperations().splice(body.end(), gb->getOperations(), gb->begin(),
                                std::prev(gb->end()));
    Value ids[3] = {launch.getBlockIds().x, launch.getBlockIds().y, launch.getBlockIds().z};
    for (size_t i = 0; i < n; ++i)
      p.grid.getInductionVars()[n - 1 - i].replaceAllUsesWith(ids[i]);
    p.grid.erase();
  } else {
    Block &fb = func.getBody().front();
    body.getOperations().splice(body.end(), fb.getOperations(),
                                std::next(Block::iterator(launch)), std::prev(fb.end()));
  }
  b.setInsertionPointToEnd(&body);
  gpu::TerminatorOp::create(b, loc);
  return success();
}

/// Recomputes inside the kernel the index values the grid body used from the
/// host function (constants, memref.dim, arithmetic on them), so that the
/// kernel's arguments are exactly the function's buffers.
LogicalResult Lowering::internalizeValues() {
  Block &body = launch.getBody().front();
  OpBuilder cb(ctx());
  cb.setInsertionPointToStart(&body);
  // Keep the prelude (thread ids etc.) first.
  for (Operation &op : body)
    if (op.hasAttr("attn.prelude"))
      cb.setInsertionPointAfter(&op);
  IRMapping map;
  bool bad = false;
  std::function<Value(Value)> inside = [&](Value v) -> Value {
    if (launch.getBody().isAncestor(v.getParentRegion()))
      return v;
    if (isa<BlockArgument>(v) || isa<nvgpu::TensorMapDescriptorType>(v.getType()))
      return v; // a function argument or a TMA descriptor: becomes a kernel argument
    if (Value m = map.lookupOrNull(v))
      return m;
    Operation *def = v.getDefiningOp();
    if (!isMemoryEffectFree(def) && !isa<memref::DimOp>(def)) {
      def->emitError("attn-lower-to-gpu: the kernel uses a host value with side effects");
      bad = true;
      return v;
    }
    for (Value operand : def->getOperands())
      map.map(operand, inside(operand));
    Operation *clone = cb.clone(*def, map);
    cb.setInsertionPointAfter(clone);
    for (auto [o, n] : llvm::zip(def->getResults(), clone->getResults()))
      map.map(o, n);
    return map.lookup(v);
  };
  launch.getBody().walk([&](Operation *op) {
    for (OpOperand &use : op->getOpOperands()) {
      Value v = use.get();
      if (launch.getBody().isAncestor(v.getParentRegion()) || isa<BlockArgument>(v) ||
          isa<nvgpu::TensorMapDescriptorType>(v.getType()))
        continue;
      use.set(inside(v));
    }
  });
  return failure(bad);
}

void Lowering::buildPrelude() {
  Block &body = launch.getBody().front();
  b.setInsertionPointToStart(&body);
  auto mark = [&](Value v) {
    v.getDefiningOp()->setAttr("attn.prelude", b.getUnitAttr());
    return v;
  };
  tid = mark(gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  lane = mark(arith::RemUIOp::create(b, loc, tid, mark(idx(kWarpSize))));
  Value warp = mark(arith::DivUIOp::create(b, loc, tid, mark(idx(kWarpSize))));
  warpRow = mark(arith::MulIOp::create(b, loc, warp, mark(idx(kRowsPerWarp))));
  auto dsmType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface{},
                                 workgroup());
  Value dsm = mark(gpu::DynamicSharedMemoryOp::create(b, loc, dsmType));
  // wgmma's 128-byte swizzle is a function of address bits [4:9]: the tiles
  // start at the first 1024-byte boundary of dynamic shared memory (the
  // launch asks for 1 KiB more), whatever alignment the driver gives it.
  Value pad;
  if (p.wgmma) {
    Value base = mark(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, dsm));
    Value neg = mark(arith::SubIOp::create(b, loc, mark(idx(0)), base));
    pad = mark(arith::AndIOp::create(b, loc, neg, mark(idx(kSmemAlign - 1))));
  }
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape) {
    auto t = MemRefType::get(shape, p.elt, MemRefLayoutAttrInterface{}, workgroup());
    Value shift = mark(idx(offset));
    if (pad)
      shift = mark(arith::AddIOp::create(b, loc, pad, shift));
    return mark(memref::ViewOp::create(b, loc, t, dsm, shift, ValueRange{}));
  };
  if (p.wgmma) {
    // 64-column panels of 128-byte rows (gl::panelSwizzle); every tile and
    // slot is a multiple of 1024 bytes, so atoms stay 1024-byte aligned.
    qSmem = view(0, {p.BM * p.D / 64, 64});
    kSmem = view(p.qBytes, {p.S, p.BN * p.D / 64, 64});
    vSmem = view(p.qBytes + p.kBytes, {p.S, p.BN * p.Dv / 64, 64});
  } else {
    qSmem = view(0, {p.BM, p.D});
    kSmem = view(p.qBytes, {p.S, p.BN, p.D});
    vSmem = view(p.qBytes + p.kBytes, {p.S, p.BN, p.Dv});
  }
  auto privateBuffer = [&](int64_t n, Type t) {
    return mark(memref::AllocaOp::create(b, loc, MemRefType::get({n}, t)));
  };
  qFrag = privateBuffer(p.D / 16, VectorType::get({4, 2}, p.elt));
  sFrag = privateBuffer(p.BN / 8 * 4, b.getF32Type());
  accFrag = privateBuffer(p.Dv / 8 * 4, b.getF32Type());
  mxFrag = privateBuffer(2, b.getF32Type());
  sumFrag = privateBuffer(2, b.getF32Type());
}

/// Gives the K/V views (subviews, casts, loop-carried values) derived from the
/// f32 tile allocation `oldRoot` the types of the f16/bf16 shared-memory
/// tiles [block-n, head_dim] of `newBase` ([slots, block-n, head_dim]).
LogicalResult Lowering::retypeSharedTiles(Value oldRoot, Value newBase) {
  auto baseType = cast<MemRefType>(newBase.getType());
  int64_t rows = baseType.getDimSize(1), cols = baseType.getDimSize(2);
  auto dynTileType = MemRefType::get(
      {rows, cols}, baseType.getElementType(),
      StridedLayoutAttr::get(ctx(), ShapedType::kDynamic, {cols, 1}), baseType.getMemorySpace());
  auto oldType = cast<MemRefType>(oldRoot.getType());
  SmallVector<std::pair<Value, Value>> work;
  SmallVector<Operation *> toErase;
  llvm::DenseSet<Value> retypedInPlace;
  if (oldType.getRank() == 2) {
    // One slot (no pipelining): the tile is slot 0.
    b.setInsertionPointAfter(newBase.getDefiningOp());
    auto t = memref::SubViewOp::inferRankReducedResultType({rows, cols}, baseType,
                                                            ArrayRef<int64_t>{0, 0, 0},
                                                            ArrayRef<int64_t>{1, rows, cols},
                                                            ArrayRef<int64_t>{1, 1, 1});
    Value tile = memref::SubViewOp::create(b, loc, t, newBase, ArrayRef<int64_t>{0, 0, 0},
                                           ArrayRef<int64_t>{1, rows, cols},
                                           ArrayRef<int64_t>{1, 1, 1});
    work.push_back({oldRoot, tile});
  } else {
    work.push_back({oldRoot, newBase});
  }
  toErase.push_back(oldRoot.getDefiningOp());
  while (!work.empty()) {
    auto [oldV, newV] = work.pop_back_val();
    for (OpOperand &use : llvm::make_early_inc_range(oldV.getUses())) {
      Operation *user = use.getOwner();
      if (auto sv = dyn_cast<memref::SubViewOp>(user)) {
        if (sv.getSource() != oldV)
          return sv.emitError("attn-lower-to-gpu: unexpected subview of a K/V tile buffer");
        auto offsets = sv.getMixedOffsets();
        b.setInsertionPoint(sv);
        SmallVector<OpFoldResult> off{offsets[0], b.getIndexAttr(0), b.getIndexAttr(0)};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(rows),
                                        b.getIndexAttr(cols)};
        SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
        auto t = memref::SubViewOp::inferRankReducedResultType({rows, cols}, baseType, off, sizes,
                                                                strides);
        Value nv = memref::SubViewOp::create(b, sv.getLoc(), t, newV, off, sizes, strides);
        work.push_back({sv.getResult(), nv});
        toErase.push_back(sv);
      } else if (auto c = dyn_cast<memref::CastOp>(user)) {
        b.setInsertionPoint(c);
        Value nv = newV.getType() == dynTileType
                       ? newV
                       : memref::CastOp::create(b, c.getLoc(), dynTileType, newV).getResult();
        work.push_back({c.getResult(), nv});
        toErase.push_back(c);
      } else if (auto f = dyn_cast<scf::ForOp>(user)) {
        use.set(newV);
        BlockArgument arg = f.getTiedLoopRegionIterArg(&use);
        OpResult res = f.getTiedLoopResult(&use);
        if (!arg || !res)
          return f.emitError("attn-lower-to-gpu: unexpected use of a K/V tile buffer");
        if (arg.getType() != newV.getType()) {
          arg.setType(newV.getType());
          res.setType(newV.getType());
        }
        if (retypedInPlace.insert(arg).second)
          work.push_back({arg, arg});
        if (retypedInPlace.insert(res).second)
          work.push_back({res, res});
      } else if (isa<scf::YieldOp>(user)) {
        use.set(newV);
        auto f = dyn_cast<scf::ForOp>(user->getParentOp());
        if (!f)
          return user->emitError("attn-lower-to-gpu: a K/V tile buffer escapes an scf.if");
      } else if (isa<memref::DeallocOp>(user)) {
        user->erase();
      } else if (isa<CopyTileOp, GatherTileOp, TileMatmulOp>(user)) {
        use.set(newV);
      } else {
        return user->emitError("attn-lower-to-gpu: unexpected use of a K/V tile buffer");
      }
    }
  }
  // Users were pushed after their producers: erase in reverse.
  for (Operation *op : llvm::reverse(toErase)) {
    if (!op->use_empty())
      return op->emitError("attn-lower-to-gpu: could not retype all uses of a K/V buffer");
    op->erase();
  }
  return success();
}

/// Outlines the launch into `gpu.module @<func>_kernel { gpu.func @<func>_kernel }`
/// (upstream outlineKernelFunc, as gpu-kernel-outlining does) so that the
/// kernel can carry NVVM attributes: `nvvm.minctasm = 1` tells ptxas that one
/// block per SM is enough, so it does not cap registers for occupancy (with
/// 128 threads it otherwise targets 4 blocks, i.e. 128 registers, and
/// spills); `.maxntid` comes from the static block size.
LogicalResult Lowering::outline() {
  ModuleOp top = p.func->getParentOfType<ModuleOp>();
  std::string name = (p.func.getSymName() + "_kernel").str();
  SmallVector<Value> operands;
  gpu::GPUFuncOp kernel = outlineKernelFunc(launch, name, operands);
  if (threads() <= 128)
    kernel->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(), b.getI32IntegerAttr(1));
  OpBuilder mb(ctx());
  mb.setInsertionPointToEnd(top.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(mb, loc, name);
  SymbolTable(gpuModule).insert(kernel);
  SymbolTable(top).insert(gpuModule); // renames on a clash
  // TMA descriptors cross the kernel boundary as generic pointers (what the
  // NVGPU lowering makes of them): the kernel signature then converts to
  // LLVM, which a !nvgpu.tensormap.descriptor argument would not.
  auto ptrType = LLVM::LLVMPointerType::get(ctx());
  Block &entry = kernel.getBody().front();
  SmallVector<Type> argTypes(kernel.getArgumentTypes());
  for (auto [i, arg] : llvm::enumerate(entry.getArguments())) {
    if (!isa<nvgpu::TensorMapDescriptorType>(arg.getType()))
      continue;
    Type descType = arg.getType();
    arg.setType(ptrType);
    argTypes[i] = ptrType;
    OpBuilder kb = OpBuilder::atBlockBegin(&entry);
    auto cast = UnrealizedConversionCastOp::create(kb, loc, descType, ValueRange{arg});
    arg.replaceAllUsesExcept(cast.getResult(0), cast);
    // The host copied the tensor map to global memory (generic proxy): make
    // it visible to the tensormap proxy before TMA uses it (CUDA Programming
    // Guide, "Using TMA": fence.proxy.tensormap::generic.acquire).
    nvgpu::TmaFenceOp::create(kb, loc, cast.getResult(0));
    b.setInsertionPoint(launch);
    operands[i] = UnrealizedConversionCastOp::create(b, loc, ptrType, operands[i]).getResult(0);
  }
  kernel.setFunctionType(FunctionType::get(ctx(), argTypes, {}));
  replaceByLaunchFunc(launch, kernel, operands);
  return success();
}

void replaceByLaunchFunc(gpu::LaunchOp launch, gpu::GPUFuncOp kernel, ValueRange operands) {
  OpBuilder b(launch);
  gpu::LaunchFuncOp::create(b, launch.getLoc(), kernel, launch.getGridSizeOperandValues(),
                            launch.getBlockSizeOperandValues(),
                            launch.getDynamicSharedMemorySize(), operands);
  launch.erase();
}

} // namespace mlir::attn::gpu_lowering
