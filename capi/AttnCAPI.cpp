//===- AttnCAPI.cpp - C API of attncc -------------------------------------===//
#include "capi/AttnCAPI.h"

#include "dialects/attn/AttnDialect.h"
#include "passes/Passes.h"

#include "mlir/CAPI/Registration.h"

MLIR_DEFINE_CAPI_DIALECT_REGISTRATION(Attn, attn, mlir::attn::AttnDialect)

void attnccRegisterPasses(void) {
  static bool once = [] {
    mlir::attn::registerAttnPasses();
    return true;
  }();
  (void)once;
}

void attnccRegisterDependentDialects(MlirDialectRegistry registry) {
  unwrap(registry)->insert<mlir::attn::AttnDialect>();
}
