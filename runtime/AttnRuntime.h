//===- AttnRuntime.h - C API of attncc's native runtime --------*- C -*-===//
//
// What the Python runtime needs from LLVM itself, as plain C functions (the
// nanobind extension sees only C APIs):
//  * the host CPU as the JIT sees it (triple, CPU name, feature flags), so
//    that code generation follows what LLVM will target;
//  * JIT-compiling a kernel with the LLVM passes attncc chooses (MLIR's
//    ExecutionEngine, created with our own pass pipeline);
//  * loading a kernel's object file (compiled before, kept in the CPU kernel
//    cache) into an ORC JIT without compiling anything, and looking up its
//    entry points.
//
//===----------------------------------------------------------------------===//
#ifndef ATTNCC_RUNTIME_ATTNRUNTIME_H
#define ATTNCC_RUNTIME_ATTNRUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mlir-c/ExecutionEngine.h"
#include "mlir-c/IR.h"

#ifdef __cplusplus
extern "C" {
#endif

/// The process triple, host CPU name and enabled features ("+avx2,+fma,...",
/// LLVM's names), as llvm::sys reports them: what MLIR's ExecutionEngine
/// targets. Returns a malloc'ed "triple;cpu;features" string; free() it.
char *attnccHostCpu(void);

/// MLIR's ExecutionEngine for `module` (LLVM dialect), targeting the host:
/// LLVM IR passes `pipeline` (PassBuilder text, e.g. "default<O3>") instead
/// of the C API's `default<On>`, code generated at `codegenLevel` (0..3;
/// llvm::CodeGenOptLevel). `objectDump` keeps the object for dumping.
/// Returns a null engine with a malloc'ed message in `*error`.
MlirExecutionEngine attnccJitCreate(MlirModule module, const char *pipeline, int codegenLevel,
                                    bool objectDump, char **error);

typedef struct AttnccObject AttnccObject;

/// Links `size` bytes of an ELF/Mach-O relocatable object into a new ORC JIT.
/// `names[i]` resolves to absolute address `addrs[i]` (runtime functions
/// loaded by the caller); anything else the object needs resolves from the
/// process (libc, libm). Returns NULL with a malloc'ed message in `*error`.
AttnccObject *attnccObjectLoad(const char *data, size_t size, const char *const *names,
                               const uint64_t *addrs, size_t count, char **error);

/// The address of symbol `name` (unmangled) in a loaded object, or 0 with a
/// malloc'ed message in `*error`.
uint64_t attnccObjectLookup(AttnccObject *object, const char *name, char **error);

/// Frees the JIT and the code it holds.
void attnccObjectFree(AttnccObject *object);

/// The OpenMP entry points a team run needs, from the OpenMP runtime torch
/// loaded (libgomp, or libomp / libiomp5 through their GOMP_* layer).
typedef struct AttnccOmp {
  void (*parallel)(void (*fn)(void *), void *data, unsigned numThreads, unsigned flags);
  int (*threadNum)(void);
  int (*numThreads)(void);
} AttnccOmp;

/// Runs a kernel made by attn-parallel-to-omp on a team of `numThreads`
/// threads of `omp` (GOMP_parallel; the caller is thread 0): every thread
/// calls the packed entry point `fn` with the `nargs` argument pointers of
/// `args` followed by pointers to its thread number and to the team's size.
void attnccRunOnTeam(void (*fn)(void **), void *const *args, size_t nargs,
                     unsigned numThreads, const AttnccOmp *omp);

#ifdef __cplusplus
}
#endif

#endif
