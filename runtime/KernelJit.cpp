//===- KernelJit.cpp - MLIR's ExecutionEngine with our LLVM pass pipeline -===//
//
// The C API's mlirExecutionEngineCreate ties LLVM's IR pipeline and code
// generation to one level and runs the whole `default<On>` pipeline. On
// attncc's kernels that pipeline does nothing for run time (attn-lower-to-cpu
// already emits unrolled register blocks, vector code and hoisted addresses)
// and was about half of the JIT's time (docs/cpu-backend.md "Compile time").
// This is the same upstream ExecutionEngine (translation, packed wrappers, ORC,
// object dump), created with a transformer that runs a pass pipeline given as
// text (PassBuilder syntax) and a code generation level of its own. Errors
// come back as LLVM's message instead of the C API's null engine.
//
//===----------------------------------------------------------------------===//
#include "runtime/AttnRuntime.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "mlir/CAPI/ExecutionEngine.h"
#include "mlir/CAPI/IR.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"

namespace {
char *message(llvm::Error err) { return strdup(llvm::toString(std::move(err)).c_str()); }

/// A parsed pass pipeline with its analysis managers. Parsed before the
/// engine is made: ExecutionEngine::create wraps the transformer in
/// cantFail, so an error returned from inside it would abort the process.
struct Pipeline {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::ModulePassManager mpm;

  /// `text`: PassBuilder syntax, e.g. "function(sroa,instcombine)" or
  /// "default<O3>"; `tm` gives the passes the target's cost model.
  llvm::Error parse(llvm::TargetMachine *tm, llvm::StringRef text) {
    llvm::PassBuilder pb(tm);
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    return pb.parsePassPipeline(mpm, text);
  }
};
} // namespace

MlirExecutionEngine attnccJitCreate(MlirModule module, const char *pipeline, int codegenLevel,
                                    bool objectDump, char **error) {
  *error = nullptr;
  static bool targetsReady = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmParser(); // inline asm
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)targetsReady;
  if (codegenLevel < 0 || codegenLevel > 3) {
    *error = strdup("code generation level must be 0..3");
    return MlirExecutionEngine{nullptr};
  }
  mlir::Operation *op = unwrap(mlirModuleGetOperation(module));
  mlir::registerBuiltinDialectTranslation(*op->getContext());
  mlir::registerLLVMDialectTranslation(*op->getContext());

  // The host, as the engine itself targets it (and attnccHostCpu reports it).
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder) {
    *error = message(builder.takeError());
    return MlirExecutionEngine{nullptr};
  }
  auto level = static_cast<llvm::CodeGenOptLevel>(codegenLevel);
  builder->setCodeGenOptLevel(level);
  auto tm = builder->createTargetMachine();
  if (!tm) {
    *error = message(tm.takeError());
    return MlirExecutionEngine{nullptr};
  }
  Pipeline passes;
  if (llvm::Error err = passes.parse(tm->get(), pipeline)) {
    *error = message(std::move(err));
    return MlirExecutionEngine{nullptr};
  }
  // Called by create() itself, before it returns (function_ref).
  auto transformer = [&](llvm::Module *m) {
    passes.mpm.run(*m, passes.mam);
    return llvm::Error::success();
  };
  mlir::ExecutionEngineOptions options;
  options.transformer = transformer;
  options.jitCodeGenOptLevel = level;
  options.enableObjectDump = objectDump;
  auto engine = mlir::ExecutionEngine::create(op, options, std::move(*tm));
  if (!engine) {
    *error = message(engine.takeError());
    return MlirExecutionEngine{nullptr};
  }
  return wrap(engine->release());
}
