//===- AttnOps.h - attn ops ------------------------------------*- C++ -*-===//
#ifndef ATTNCC_DIALECTS_ATTN_ATTNOPS_H
#define ATTNCC_DIALECTS_ATTN_ATTNOPS_H

#include "dialects/attn/AttnDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"

#include "dialects/attn/AttnEnums.h.inc"

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.h.inc"

namespace mlir::attn {
/// The checks of a `pairs` copy (copy_tile, gather_tile): bf16 into a bf16
/// tile of [D / 2, 2 R] (transposed) or [R / 2, 2 D] (AttnTileOps.cpp).
LogicalResult verifyPairsTile(Operation *op, MemRefType src, MemRefType dst, bool transposed);
} // namespace mlir::attn

#endif
