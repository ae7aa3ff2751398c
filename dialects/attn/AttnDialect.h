//===- AttnDialect.h - the attn dialect ------------------------*- C++ -*-===//
#ifndef ATTNCC_DIALECTS_ATTN_ATTNDIALECT_H
#define ATTNCC_DIALECTS_ATTN_ATTNDIALECT_H

#include "mlir/IR/Dialect.h"

#include "dialects/attn/AttnDialect.h.inc"

#endif
