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

#endif
