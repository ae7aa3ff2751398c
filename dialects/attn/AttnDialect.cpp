//===- AttnDialect.cpp - the attn dialect ---------------------------------===//
#include "dialects/attn/AttnDialect.h"
#include "dialects/attn/AttnOps.h"

using namespace mlir;
using namespace mlir::attn;

#include "dialects/attn/AttnDialect.cpp.inc"

void AttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/attn/AttnOps.cpp.inc"
      >();
}
