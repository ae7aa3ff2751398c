//===- Passes.h - attn passes ----------------------------------*- C++ -*-===//
#ifndef ATTNCC_PASSES_PASSES_H
#define ATTNCC_PASSES_PASSES_H

#include "dialects/attn/AttnOps.h"
#include "mlir/Dialect/AMX/AMXDialect.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::attn {
#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"
/// The tag attn-tile puts on the loop over KV blocks; attn-pipeline and
/// attn-unroll find their loops by it.
inline constexpr llvm::StringLiteral kKvLoopAttr = "attn.kv_loop";

/// The tagged KV loops under `root`, collected before any of them is rewritten.
inline SmallVector<scf::ForOp> collectKvLoops(Operation *root) {
  SmallVector<scf::ForOp> loops;
  root->walk([&](scf::ForOp loop) {
    if (loop->hasAttr(kKvLoopAttr))
      loops.push_back(loop);
  });
  return loops;
}

/// The tile buffer a K/V copy writes: attn.copy_tile's or attn.gather_tile's
/// destination (attn-pipeline multi-buffers both; attn-lower-to-gpu lowers
/// both to cp.async).
inline Value kvCopyDest(Operation *copy) {
  if (auto g = dyn_cast<GatherTileOp>(copy))
    return g.getDest();
  return cast<CopyTileOp>(copy).getDest();
}
} // namespace mlir::attn

#endif
