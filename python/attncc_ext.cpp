//===- attncc_ext.cpp - registers attn into the mlir Python bindings ------===//
//
// Sees only MLIR's C API: the MLIR context comes in as the capsule of an
// `mlir.ir.Context` and the dialect/passes live in the same process-wide MLIR
// copy as the bindings (libMLIRPythonCAPI.so).
//
//===----------------------------------------------------------------------===//
#include <nanobind/nanobind.h>

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
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

/// The per-call work of runtime/cpu.py's CpuKernel on the CPU, in one native
/// call: checks each tensor against its memref argument (torch.Tensor, on the
/// CPU, dtype, rank, static sizes and strides) and, when all match, packs the
/// descriptors and calls the kernel with the GIL released. Done in Python it
/// cost ~12 us of a ~40 us decode call (tensor queries, a ctypes buffer and
/// the ctypes call). Reports a mismatch by index without raising, so that
/// Python keeps one place for the error messages and the layout fixes.
struct Invoker {
  struct Arg {
    nb::object dtype;
    size_t rank;
    std::vector<std::pair<size_t, int64_t>> sizes, strides; // static ones only
  };
  std::vector<Arg> args;
  /// The last trusted tensor seen at each position and its descriptor words
  /// (a reference is held, so its address is not reused by another object).
  std::vector<std::pair<nb::object, std::vector<int64_t>>> trusted;
  bool teamArgs;
  nb::object tensorType;
  size_t words = 0; // int64s of the call's buffer

  Invoker(nb::list specs, bool teamArgs, nb::object tensorType)
      : teamArgs(teamArgs), tensorType(std::move(tensorType)) {
    for (nb::handle h : specs) {
      auto spec = nb::cast<nb::tuple>(h);
      Arg a{nb::borrow(spec[0]), nb::cast<size_t>(spec[1]), {}, {}};
      for (nb::handle d : nb::cast<nb::list>(spec[2]))
        a.sizes.push_back(nb::cast<std::pair<size_t, int64_t>>(d));
      for (nb::handle d : nb::cast<nb::list>(spec[3]))
        a.strides.push_back(nb::cast<std::pair<size_t, int64_t>>(d));
      words += 3 + 2 * a.rank;
      args.push_back(std::move(a));
    }
    words += (teamArgs ? 4 : 0) + 2 * args.size();
    trusted.resize(args.size());
  }

  /// Descriptor words of tensor `t` for `a` appended at `out`; false when it
  /// does not match (any Python error is cleared: the caller re-checks).
  static bool describe(const Arg &a, PyObject *t, PyObject *tensorType, int64_t *out) {
    if (PyObject_IsInstance(t, tensorType) != 1)
      return PyErr_Clear(), false;
    auto attr = [&](const char *name) { return nb::steal(PyObject_GetAttrString(t, name)); };
    nb::object dtype = attr("dtype"), cpu = attr("is_cpu"), shape = attr("shape");
    nb::object stride = nb::steal(PyObject_CallMethod(t, "stride", nullptr));
    nb::object ptr = nb::steal(PyObject_CallMethod(t, "data_ptr", nullptr));
    if (!dtype || !cpu || !shape || !stride || !ptr)
      return PyErr_Clear(), false;
    if (!dtype.is(a.dtype) || !cpu.is(nb::handle(Py_True)) || !PyTuple_Check(shape.ptr()) ||
        !PyTuple_Check(stride.ptr()) || size_t(PyTuple_GET_SIZE(shape.ptr())) != a.rank ||
        size_t(PyTuple_GET_SIZE(stride.ptr())) != a.rank)
      return false;
    int64_t p = PyLong_AsLongLong(ptr.ptr());
    out[0] = p, out[1] = p, out[2] = 0;
    for (size_t d = 0; d < a.rank; ++d) {
      out[3 + d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), d));
      out[3 + a.rank + d] = PyLong_AsLongLong(PyTuple_GET_ITEM(stride.ptr(), d));
    }
    if (PyErr_Occurred())
      return PyErr_Clear(), false;
    for (auto [d, want] : a.sizes)
      if (out[3 + d] != want)
        return false;
    for (auto [d, want] : a.strides)
      if (out[3 + a.rank + d] != want && out[3 + d] != 1)
        return false;
    return true;
  }

  /// -1 after running the kernel at `fn` (packed entry) on `tensors`, on a
  /// team of `threads` when it takes team arguments and threads > 1; else
  /// the index of the first tensor that does not match (nothing ran).
  /// Tensors from index `trustedFrom` on are the caller's own workspaces,
  /// never resized or re-pointed: the same object as in the last call reuses
  /// its descriptor instead of asking torch again (~1.4 us a tensor).
  int64_t call(uint64_t fn, nb::sequence tensors, unsigned threads, uint64_t parallel,
               uint64_t threadNum, uint64_t numThreads, size_t trustedFrom) {
    nb::object seq = nb::steal(PySequence_Fast(tensors.ptr(), "tensors must be a sequence"));
    if (!seq)
      throw nb::python_error();
    size_t n = size_t(PySequence_Fast_GET_SIZE(seq.ptr()));
    if (n != args.size())
      throw nb::value_error("wrong number of kernel arguments");
    std::vector<int64_t> buf(words);
    auto addr = [&](size_t word) { return int64_t(reinterpret_cast<intptr_t>(&buf[word])); };
    std::vector<size_t> desc(n);
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
      desc[i] = at;
      PyObject *t = PySequence_Fast_GET_ITEM(seq.ptr(), i);
      size_t len = 3 + 2 * args[i].rank;
      auto &[seen, words] = trusted[i];
      if (i >= trustedFrom && seen.is(nb::handle(t))) {
        std::copy(words.begin(), words.end(), buf.begin() + at);
      } else {
        if (!describe(args[i], t, tensorType.ptr(), &buf[at]))
          return int64_t(i);
        if (i >= trustedFrom)
          seen = nb::borrow(t), words.assign(buf.begin() + at, buf.begin() + at + len);
      }
      at += len;
    }
    size_t team = at; // thread 0 of a team of 1 (a serial call)
    if (teamArgs)
      buf[at++] = 0, buf[at++] = 1;
    size_t slots = at;
    for (size_t i = 0; i < n; ++i)
      buf[at++] = addr(desc[i]);
    size_t packed = at;
    for (size_t i = 0; i < n; ++i)
      buf[at++] = addr(slots + i);
    if (teamArgs)
      buf[at++] = addr(team), buf[at++] = addr(team + 1);
    auto entry = reinterpret_cast<void (*)(void **)>(fn);
    auto packedArgs = reinterpret_cast<void **>(&buf[packed]);
    nb::gil_scoped_release release;
    if (teamArgs && threads > 1) {
      AttnccOmp omp{
          reinterpret_cast<void (*)(void (*)(void *), void *, unsigned, unsigned)>(parallel),
          reinterpret_cast<int (*)()>(threadNum), reinterpret_cast<int (*)()>(numThreads)};
      attnccRunOnTeam(entry, packedArgs, n, threads, &omp);
    } else {
      entry(packedArgs);
    }
    return -1;
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
      "jit_engine",
      [](nb::object module, const std::string &pipeline, int codegenLevel, bool objectDump) {
        if (!nb::hasattr(module, MLIR_PYTHON_CAPI_PTR_ATTR))
          throw nb::type_error("expected an mlir.ir.Module");
        nb::object capsule = module.attr(MLIR_PYTHON_CAPI_PTR_ATTR);
        MlirModule mod = mlirPythonCapsuleToModule(capsule.ptr());
        if (mlirModuleIsNull(mod)) {
          PyErr_Clear();
          throw nb::type_error("expected an mlir.ir.Module");
        }
        char *err = nullptr;
        MlirExecutionEngine engine =
            attnccJitCreate(mod, pipeline.c_str(), codegenLevel, objectDump, &err);
        if (mlirExecutionEngineIsNull(engine))
          throw std::runtime_error(take(err));
        // The bindings' ExecutionEngine takes ownership (ExecutionEngine._CAPICreate).
        return nb::steal<nb::object>(mlirPythonExecutionEngineToCapsule(engine));
      },
      nb::arg("module"), nb::arg("pipeline"), nb::arg("codegen_level"), nb::arg("object_dump"),
      "A capsule of MLIR's ExecutionEngine for `module` with LLVM IR passes `pipeline` "
      "(PassBuilder text) and code generation level `codegen_level` (runtime/KernelJit.cpp).");
  nb::class_<LoadedObject>(m, "LoadedObject",
                           "A kernel object file linked into its own ORC JIT.")
      .def(nb::init<nb::bytes, const std::vector<std::string> &, const std::vector<uint64_t> &>(),
           nb::arg("data"), nb::arg("names"), nb::arg("addresses"))
      .def("lookup", &LoadedObject::lookup, nb::arg("name"),
           "Address of the (unmangled) symbol `name`.");
  nb::class_<Invoker>(m, "Invoker",
                      "Checks tensors against a CPU kernel's memref arguments and calls it.")
      .def(nb::init<nb::list, bool, nb::object>(), nb::arg("specs"), nb::arg("team_args"),
           nb::arg("tensor_type"),
           "specs: per argument (dtype, rank, [(dim, size)], [(dim, stride)]), static ones only.")
      .def("__call__", &Invoker::call, nb::arg("fn"), nb::arg("tensors"), nb::arg("threads"),
           nb::arg("parallel") = 0, nb::arg("thread_num") = 0, nb::arg("num_threads") = 0,
           nb::arg("trusted_from") = SIZE_MAX,
           "-1 after the call, or the index of the first tensor that does not match. "
           "Tensors from `trusted_from` on are workspaces whose descriptors are kept.");
}
