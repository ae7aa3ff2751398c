//===- attncc_ext.cpp - registers attn into the mlir Python bindings ------===//
//
// Sees only MLIR's C API: the MLIR context comes in as the capsule of an
// `mlir.ir.Context` and the dialect/passes live in the same process-wide MLIR
// copy as the bindings (libMLIRPythonCAPI.so).
//
//===----------------------------------------------------------------------===//
#include <nanobind/nanobind.h>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "capi/AttnCAPI.h"
#include "mlir-c/Bindings/Python/Interop.h"
#include "runtime/AttnRuntime.h"

namespace nb = nanobind;

namespace {
/// Takes a malloc'ed C string from the runtime.
std::string take(char *s) {
  std::string out = s ? s : "";
  std::free(s);
  return out;
}

/// A kernel object linked into its own ORC JIT (runtime/ObjectLoader.cpp).
struct LoadedObject {
  AttnccObject *object = nullptr;
  LoadedObject(nb::bytes data, const std::vector<std::string> &names,
               const std::vector<uint64_t> &addrs) {
    if (names.size() != addrs.size())
      throw nb::value_error("names and addresses differ in length");
    std::vector<const char *> cnames;
    for (const std::string &n : names)
      cnames.push_back(n.c_str());
    char *err = nullptr;
    object = attnccObjectLoad(data.c_str(), data.size(), cnames.data(), addrs.data(),
                              names.size(), &err);
    if (!object)
      throw std::runtime_error("loading the kernel object failed: " + take(err));
  }
  ~LoadedObject() { attnccObjectFree(object); }
  uint64_t lookup(const std::string &name) {
    char *err = nullptr;
    uint64_t addr = attnccObjectLookup(object, name.c_str(), &err);
    if (!addr)
      throw std::runtime_error("symbol '" + name + "' not found in the kernel object: " +
                               take(err));
    return addr;
  }
};
} // namespace

NB_MODULE(_attncc, m) {
  m.doc() = "attncc native extension: attn dialect and passes";
  // Kernel objects that use the async runtime are kept until the process
  // ends on purpose (runtime/cpu.py: its worker threads may still return
  // through their code), so nanobind's report of live instances at exit
  // would only be noise.
  nb::set_leak_warnings(false);
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
  m.def(
      "host_cpu", [] { return take(attnccHostCpu()); },
      "'triple;cpu;+feature,...' of the host as LLVM's JIT targets it.");
  m.def(
      "run_on_team",
      [](uint64_t fn, uint64_t args, size_t nargs, unsigned threads, uint64_t parallel,
         uint64_t threadNum, uint64_t numThreads) {
        AttnccOmp omp{
            reinterpret_cast<void (*)(void (*)(void *), void *, unsigned, unsigned)>(parallel),
            reinterpret_cast<int (*)()>(threadNum), reinterpret_cast<int (*)()>(numThreads)};
        attnccRunOnTeam(reinterpret_cast<void (*)(void **)>(fn),
                        reinterpret_cast<void *const *>(args), nargs, threads, &omp);
      },
      nb::arg("fn"), nb::arg("args"), nb::arg("nargs"), nb::arg("threads"),
      nb::arg("parallel"), nb::arg("thread_num"), nb::arg("num_threads"),
      nb::call_guard<nb::gil_scoped_release>(),
      "Calls the packed kernel entry `fn` from every thread of an OpenMP team of "
      "`threads` (GOMP_parallel at address `parallel`), the GIL released.");
  nb::class_<LoadedObject>(m, "LoadedObject",
                           "A kernel object file linked into its own ORC JIT.")
      .def(nb::init<nb::bytes, const std::vector<std::string> &, const std::vector<uint64_t> &>(),
           nb::arg("data"), nb::arg("names"), nb::arg("addresses"))
      .def("lookup", &LoadedObject::lookup, nb::arg("name"),
           "Address of the (unmangled) symbol `name`.");
}
