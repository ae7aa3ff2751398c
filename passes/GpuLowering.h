//===- GpuLowering.h - attn-lower-to-gpu's per-function lowering state ---===//
//
// Shared by the files of attn-lower-to-gpu, one per phase (see the list at
// the top of AttnLowerToGpu.cpp): the Plan the analysis validates, and the
// Lowering of one function, whose methods each phase file defines.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_PASSES_GPULOWERING_H
#define ATTNCC_PASSES_GPULOWERING_H

#include "passes/GpuLayout.h"
#include "passes/IRBuild.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::attn::gpu_lowering {

constexpr int64_t kWarpSize = 32;
constexpr int64_t kRowsPerWarp = 16; // m16n8k16
constexpr int64_t kSmemAlign = 1024;  // wgmma / TMA 128-byte-swizzle atoms

/// The tile-level attn ops attn-lower-to-gpu lowers.
bool isTileOp(Operation *op);

/// Follows a tile buffer back through views, casts and loop-carried values
/// to the op that allocated it.
Value rootOf(Value v);

/// The op in a loop body or the kernel body that contains `op` (looking
/// through the scf.if ops the pipeliner predicates with).
Operation *anchorOf(Operation *op);

/// The K/V copies (attn.copy_tile, or attn.gather_tile for a paged cache)
/// of one pipelined iteration: same loop body (looking through predicating
/// scf.ifs), attn.part, attn.iteration and attn.unrolled_copy. Returns the
/// end of the group that starts at `i`.
size_t endOfCopyGroup(ArrayRef<Operation *> copies, size_t i);

/// GpuScores.cpp: validates a tile_softcap / tile_alibi (`op`; success for
/// any other op) against the score tile `scores`, with a diagnostic on `op`.
LogicalResult checkScoreVariant(Operation *op, Value scores);

/// An f32 PTX approximation (`llvm.nvvm.ex2.approx.ftz.f`, `rcp...`,
/// `lg2...`) as an LLVM intrinsic call: math.exp2 / log2 would become
/// libdevice calls, which need the CUDA toolkit's libdevice.10.bc
/// (GpuSoftmax.cpp).
Value nvvmApprox(OpBuilder &b, Location loc, StringRef intrinsic, Value x);

/// GpuSplitKv.cpp: attn-tile's split-KV form. foldSplitGrid folds the
/// (batch, head, query block, split) grid into three launch dimensions;
/// buildCombineLaunch replaces tile_combine's grid (and the host branch
/// around it) by a gpu.launch; outlineCombine outlines it into the attention
/// kernel's gpu.module (after Lowering::run has outlined that one).
LogicalResult foldSplitGrid(func::FuncOp func);
/// GpuLaunch.cpp: replaces an outlined `launch` by a gpu.launch_func of
/// `kernel` with the same grid, block and shared memory.
void replaceByLaunchFunc(gpu::LaunchOp launch, gpu::GPUFuncOp kernel, ValueRange operands);
FailureOr<gpu::LaunchOp> buildCombineLaunch(TileCombineOp op);
LogicalResult outlineCombine(gpu::LaunchOp launch, func::FuncOp func);

/// What attn-lower-to-gpu found in one function, validated.
struct Plan {
  func::FuncOp func;
  scf::ParallelOp grid; // null when canonicalization removed a 1x1x1 grid
  // Root allocations of the tile buffers.
  Value q, s, acc, mx, sum, k, v;
  int64_t BM = 0, BN = 0, D = 0, Dv = 0, S = 1;
  Type elt; // f16, bf16 or f32 (TF32 tensor cores)
  int64_t eltBytes = 2;
  bool tf32 = false;   // f32 inputs: mma.sync m16n8k8 .tf32 (GpuTf32.cpp)
  bool tf32x3 = false; // and 3xTF32 (big + small parts, three MMAs)
  bool wgmma = false; // sm_90a warpgroup path (else mma.sync)
  bool tma = false;   // TMA loads on mbarriers (wgmma only; else cp.async)
  // Host function arguments by role (-1: absent), recorded as attn.gpu_args.
  int64_t qArg = -1, kArg = -1, vArg = -1, biasArg = -1, outArg = -1, lseArg = -1;
  int64_t smemBytes = 0, qBytes = 0, kBytes = 0, vBytes = 0;
};

/// Finds and validates the tile program of `func` (GpuPlan.cpp). Returns
/// nothing for a function without tile ops, and sets `failed` (after a
/// diagnostic) for one the GPU kernel cannot run.
std::optional<Plan> analyze(func::FuncOp func, int64_t numWarps, StringRef chip, StringRef mma,
                            bool useTma, bool &failed);

/// The lowering of one function. It is an IRBuild (IRBuild.h) at the
/// kernel's current insertion point: `b` and `loc` move along as it lowers.
struct Lowering : IRBuild {
  Plan &p;
  int64_t numWarps;
  gpu::LaunchOp launch;
  // Per-thread values.
  Value tid, lane, warpRow;
  // Shared memory and private fragments.
  Value qSmem, kSmem, vSmem;
  Value qFrag, sFrag, accFrag, mxFrag, sumFrag;
  Value qToken;
  Value mbarriers; // TMA: one per K/V slot, then one for Q
  llvm::DenseMap<std::pair<Value, int64_t>, Value> tensorMaps;
  double qScale = 1.0;
  Operation *qCommit = nullptr;

  Lowering(Plan &p, int64_t numWarps, OpBuilder &b)
      : IRBuild{b, p.func.getLoc()}, p(p), numWarps(numWarps) {}

  int64_t threads() const { return numWarps * kWarpSize; }
  MLIRContext *ctx() { return b.getContext(); }
  Attribute workgroup() { return gpu::AddressSpaceAttr::get(ctx(), gpu::AddressSpace::Workgroup); }

  // AttnLowerToGpu.cpp: the driver, which runs the phases below in order.
  LogicalResult run();
  // GpuLaunch.cpp: the kernel's frame.
  LogicalResult buildLaunch();
  LogicalResult internalizeValues();
  void buildPrelude();
  LogicalResult retypeSharedTiles(Value oldRoot, Value newBase);
  LogicalResult outline();
  // GpuAsyncCopies.cpp: cp.async copies and their groups.
  struct KernelCopies {
    CopyTileOp q;                  // the one Q copy, at the top of the kernel
    SmallVector<Operation *> kv;   // K/V copy_tile / gather_tile ops in program order
    SmallVector<TileMatmulOp> qk;  // Q.K^T matmuls in program order
  };
  LogicalResult collectCopies(KernelCopies &copies);
  LogicalResult placeAsyncGroups();
  SmallVector<Value> emitTileCopy(Operation *op, Value dst, int64_t rows, int64_t cols);
  // GpuTma.cpp: sm_90a TMA loads on mbarriers.
  LogicalResult placeTmaLoads();
  Value tensorMap(Value source, int64_t rows);
  void emitTmaCopy(CopyTileOp op, Value dst, Value desc, int64_t rows, int64_t cols, Value slot,
                   Value pred);
  // AttnLowerToGpu.cpp: dispatch of the tile ops to the lowerings below.
  LogicalResult lowerTileOps();

  // GpuMmaFragments.cpp: ldmatrix / mma.sync fragments.
  void emitQFragmentLoad();
  Value loadQFragment(int64_t ks);
  Value qFragment(int64_t ks);
  bool qInRegisters() const;
  Value mma(Value a, Value bFrag, Value c);
  Value stack(ArrayRef<Value> rows);
  SmallVector<Value> probabilityFragment(int64_t kk);
  Value packPair(Value pair);
  void lowerQK(TileMatmulOp op);
  void lowerPV(TileMatmulOp op);
  // GpuTf32.cpp: f32 inputs on TF32 tensor cores.
  SmallVector<SmallVector<Value>> tf32Split(ArrayRef<Value> xs);
  SmallVector<Value> mmaTf32(ArrayRef<Value> a, ArrayRef<Value> bFrag, ArrayRef<Value> c);
  SmallVector<Value> tf32Product(ArrayRef<SmallVector<Value>> a, ArrayRef<SmallVector<Value>> bFrag,
                                 SmallVector<Value> c);
  Value tf32Column(Value row, Value col, int64_t off);
  void lowerQKTf32(TileMatmulOp op);
  void lowerPVTf32(TileMatmulOp op);
  // GpuWgmma.cpp: the sm_90a warpgroup path.
  void fenceForWgmma();
  Value sharedAddress(Value tile);
  Value wgmmaDescriptor(Value address, int64_t lbo, int64_t sbo);
  Value wgmmaAccumulator(Value frag, int64_t n);
  void storeWgmmaAccumulator(Value acc, Value frag, int64_t n, double scale);
  void lowerQKWgmma(TileMatmulOp op);
  void lowerPVWgmma(TileMatmulOp op);
  // GpuSoftmax.cpp: register-fragment math.
  Value quadReduce(Value v, bool isMax);
  Value exp2(Value x);
  Value fma(Value a, Value b, Value c);
  void lowerMask(TileMaskOp op, Value when = Value());
  void lowerBias(TileBiasOp op);
  void lowerSoftmax(TileSoftmaxOp op);
  void lowerStore(TileStoreOp op);
  void lowerLse(TileLseOp op);
  LogicalResult lowerFill(linalg::FillOp op);
  // GpuScores.cpp: score variants on fragments (soft-capping, ALiBi).
  Value rcp(Value x);
  void lowerSoftcap(TileSoftcapOp op);
  void lowerAlibi(TileAlibiOp op);
};

} // namespace mlir::attn::gpu_lowering

#endif // ATTNCC_PASSES_GPULOWERING_H
