//===- AttnCAPI.h - C API of attncc ----------------------------*- C -*-===//
#ifndef ATTNCC_CAPI_ATTNCAPI_H
#define ATTNCC_CAPI_ATTNCAPI_H

#include "mlir-c/IR.h"

#ifdef __cplusplus
extern "C" {
#endif

MLIR_DECLARE_CAPI_DIALECT_REGISTRATION(Attn, attn);

/// Registers every attn pass (and the pipelines built from them) in the
/// process-wide pass registry, so that textual pipelines can name them.
MLIR_CAPI_EXPORTED void attnccRegisterPasses(void);

/// Adds the dialects attncc's lowerings produce or consume to `registry`.
MLIR_CAPI_EXPORTED void attnccRegisterDependentDialects(MlirDialectRegistry registry);

#ifdef __cplusplus
}
#endif

#endif
