//===- attncc_ext.cpp - registers attn into the mlir Python bindings ------===//
//
// Sees only MLIR's C API: the MLIR context comes in as the capsule of an
// `mlir.ir.Context` and the dialect/passes live in the same process-wide MLIR
// copy as the bindings (libMLIRPythonCAPI.so).
//
//===----------------------------------------------------------------------===//
#include <nanobind/nanobind.h>

#include "capi/AttnCAPI.h"
#include "mlir-c/Bindings/Python/Interop.h"

namespace nb = nanobind;

NB_MODULE(_attncc, m) {
  m.doc() = "attncc native extension: attn dialect and passes";
  m.def(
      "register_dialect",
      [](nb::object context, bool load) {
        nb::object capsule = context.attr(MLIR_PYTHON_CAPI_PTR_ATTR);
        MlirContext ctx = mlirPythonCapsuleToContext(capsule.ptr());
        if (mlirContextIsNull(ctx))
          throw nb::type_error("expected an mlir.ir.Context");
        MlirDialectHandle handle = mlirGetDialectHandle__attn__();
        mlirDialectHandleRegisterDialect(handle, ctx);
        if (load)
          mlirDialectHandleLoadDialect(handle, ctx);
      },
      nb::arg("context"), nb::arg("load") = true,
      "Registers (and by default loads) the attn dialect in `context`.");
  m.def("register_passes", &attnccRegisterPasses,
        "Registers the attn passes in the process-wide pass registry.");
}
