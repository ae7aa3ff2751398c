//===- HostCpu.cpp - the host CPU as LLVM's JIT sees it -------------------===//
//
// MLIR's ExecutionEngine targets JITTargetMachineBuilder::detectHost(), i.e.
// llvm::sys::getProcessTriple(), getHostCPUName() and getHostCPUFeatures().
// attncc picks vector widths and register blocks from the same facts, so the
// code it generates is what that target machine can run.
//
//===----------------------------------------------------------------------===//
#include "runtime/AttnRuntime.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/TargetParser/Host.h"

char *attnccHostCpu(void) {
  std::string out = llvm::sys::getProcessTriple();
  out += ';';
  out += llvm::sys::getHostCPUName().str();
  out += ';';
  llvm::SmallVector<std::string> enabled;
  for (const auto &f : llvm::sys::getHostCPUFeatures())
    if (f.getValue())
      enabled.push_back("+" + f.getKey().str());
  llvm::sort(enabled);
  for (size_t i = 0; i < enabled.size(); ++i) {
    if (i)
      out += ',';
    out += enabled[i];
  }
  return strdup(out.c_str());
}
