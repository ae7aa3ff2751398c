//===- ObjectLoader.cpp - load a cached kernel object into ORC ------------===//
//
// The CPU kernel cache keeps the object file that MLIR's ExecutionEngine
// produced for a kernel (ExecutionEngine::dumpToObjectFile). A later process
// links that object into its own ORC LLJIT, set up as the ExecutionEngine sets
// up its own (RTDyld object layer with a SectionMemoryManager, host target):
// the same linker that loaded it the first time, with nothing compiled. Why
// ORC and not a shared library: the wheels ship no linker (no ld.lld), a C
// compiler is not something attncc's users are guaranteed to have, and
// the ExecutionEngine's objects are not position independent.
//
//===----------------------------------------------------------------------===//
#include "runtime/AttnRuntime.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/ExecutionEngine/Orc/RTDyldObjectLinkingLayer.h"
#include "llvm/ExecutionEngine/SectionMemoryManager.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"

using namespace llvm;
using namespace llvm::orc;

struct AttnccObject {
  std::unique_ptr<LLJIT> jit;
};

namespace {
char *message(Error err) { return strdup(toString(std::move(err)).c_str()); }
} // namespace

AttnccObject *attnccObjectLoad(const char *data, size_t size, const char *const *names,
                               const uint64_t *addrs, size_t count, char **error) {
  *error = nullptr;
  InitializeNativeTarget();
  InitializeNativeTargetAsmPrinter();
  auto jitOrErr =
      LLJITBuilder()
          .setObjectLinkingLayerCreator([](ExecutionSession &session)
                                            -> Expected<std::unique_ptr<ObjectLayer>> {
            return std::make_unique<RTDyldObjectLinkingLayer>(
                session, [](const MemoryBuffer &) {
                  return std::make_unique<SectionMemoryManager>();
                });
          })
          .create();
  if (!jitOrErr) {
    *error = message(jitOrErr.takeError());
    return nullptr;
  }
  std::unique_ptr<LLJIT> jit = std::move(*jitOrErr);
  JITDylib &lib = jit->getMainJITDylib();
  auto process = DynamicLibrarySearchGenerator::GetForCurrentProcess(
      jit->getDataLayout().getGlobalPrefix());
  if (!process) {
    *error = message(process.takeError());
    return nullptr;
  }
  lib.addGenerator(std::move(*process));
  SymbolMap symbols;
  for (size_t i = 0; i < count; ++i)
    symbols[jit->mangleAndIntern(names[i])] = {ExecutorAddr(addrs[i]),
                                                JITSymbolFlags::Exported | JITSymbolFlags::Callable};
  if (count) {
    if (Error err = lib.define(absoluteSymbols(std::move(symbols)))) {
      *error = message(std::move(err));
      return nullptr;
    }
  }
  auto buffer = MemoryBuffer::getMemBufferCopy(StringRef(data, size), "attncc-kernel.o");
  if (Error err = jit->addObjectFile(std::move(buffer))) {
    *error = message(std::move(err));
    return nullptr;
  }
  return new AttnccObject{std::move(jit)};
}

uint64_t attnccObjectLookup(AttnccObject *object, const char *name, char **error) {
  *error = nullptr;
  auto addr = object->jit->lookup(name);
  if (!addr) {
    *error = message(addr.takeError());
    return 0;
  }
  return addr->getValue();
}

void attnccObjectFree(AttnccObject *object) { delete object; }
