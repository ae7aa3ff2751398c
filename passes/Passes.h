//===- Passes.h - attn passes ----------------------------------*- C++ -*-===//
#ifndef ATTNCC_PASSES_PASSES_H
#define ATTNCC_PASSES_PASSES_H

#include "dialects/attn/AttnOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::attn {
#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"
} // namespace mlir::attn

#endif
