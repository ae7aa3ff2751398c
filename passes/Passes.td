//===- Passes.td - attn passes -----------------------------*- tablegen -*-===//
#ifndef ATTN_PASSES_TD
#define ATTN_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnFuse : Pass<"attn-fuse", "func::FuncOp"> {
  let summary = "Fuse matmul -> scale -> mask -> softmax -> matmul into attn.attention";
  let description = [{
    Matches the graph-level chain users write,
    `softmax(mask(scale(Q K^T))) V`, in the orders seen in real models
    (scale before or after the mask, scale applied to Q first, softmax
    upcast to f32 and cast back, GQA/MQA expressed with a broadcast K/V) and
    replaces it with one `attn.attention`. Graphs that do not match are left
    unchanged.
  }];
  let dependentDialects = ["::mlir::attn::AttnDialect"];
}

def AttnTile : Pass<"attn-tile", "ModuleOp"> {
  let summary = "Lower attn.attention to the tile-level program (online softmax)";
  let description = [{
    Rewrites every function whose body is one `attn.attention` on its
    arguments into a destination-passing kernel on memrefs (the result becomes
    a trailing `out` argument): a `scf.parallel` grid over (batch, query head,
    query block) and, inside, an `scf.for` over KV blocks (tagged
    `attn.kv_loop`) with an online softmax on tile buffers. Causal and
    sliding-window masks narrow the KV loop bounds so that fully masked blocks
    are never visited, and element masks (`attn.tile_mask`) run only on blocks
    that straddle the diagonal or the end of the keys. Sequence lengths need
    not be multiples of the block sizes, and may be dynamic.
  }];
  let options = [
    Option<"blockM", "block-m", "int64_t", "64", "query rows per block">,
    Option<"blockN", "block-n", "int64_t", "64", "keys per KV block">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::linalg::LinalgDialect"];
}

def AttnPipeline : Pass<"attn-pipeline", "func::FuncOp"> {
  let summary = "Multi-buffer the K/V tile copies and software-pipeline the KV loop";
  let description = [{
    For each `attn.kv_loop`, gives the K/V tile buffers `num-stages` slots
    (upstream `memref::multiBuffer`) and splits the loop with upstream
    `scf::pipelineForLoop` into prologue, steady state and epilogue: the
    copies of iteration `i + num-stages - 1` are issued in the same steady-state
    iteration as the compute of iteration `i`. Dynamic trip counts (causal
    bounds) and trip counts below the stage count are handled by predicating
    the copies. `num-stages=1` leaves the loop alone.
  }];
  let options = [
    Option<"numStages", "num-stages", "int64_t", "2", "pipeline depth (K/V buffers in flight)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::affine::AffineDialect"];
}

def AttnUnroll : Pass<"attn-unroll", "func::FuncOp"> {
  let summary = "Unroll the chosen attn loops by a factor (upstream loopUnrollByFactor)";
  let description = [{
    Unrolls every `scf.for` tagged with the chosen loop tag (`kv`: the KV
    loop, i.e. the pipelined steady state when attn-pipeline ran first) by
    `factor`, with upstream `loopUnrollByFactor`, which adds a remainder loop
    for trip counts that are not multiples of the factor.
  }];
  let options = [
    Option<"factor", "factor", "int64_t", "1", "unroll factor (1 = no unrolling)">,
    Option<"loop", "loop", "std::string", "\"kv\"", "which loops: kv">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect"];
}

def AttnLowerToCpu : Pass<"attn-lower-to-cpu", "ModuleOp"> {
  let summary = "Lower tile-level attn ops to vector/scf/memref for the CPU";
  let description = [{
    Lowers the tile ops to wide vector code: register-blocked FMA
    micro-kernels for `tile_matmul`, vector reductions and a polynomial `exp`
    for `tile_softmax`, vectorized copies/conversions. The result contains no
    attn ops and goes through upstream conversions to the LLVM dialect.
    Functions that held tile ops get `attn.arg_types` (their argument types),
    which the runtime reads after the LLVM conversion to check its tensors.
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16", "f32 lanes per vector (16 = AVX-512)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::vector::VectorDialect",
                           "::mlir::math::MathDialect"];
}

#endif // ATTN_PASSES_TD
