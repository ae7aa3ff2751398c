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

#endif // ATTN_PASSES_TD
