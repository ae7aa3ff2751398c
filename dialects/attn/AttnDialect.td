//===- AttnDialect.td - the attn dialect -------------------*- tablegen -*-===//
#ifndef ATTN_DIALECT_TD
#define ATTN_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::mlir::attn";
  let summary = "Attention graphs, the fused attention op and its tile-level program";
  let description = [{
    The `attn` dialect has two levels.

    *Graph level* ops mirror what users write in PyTorch on ranked tensors
    `[batch, heads, seq, head_dim]`: `attn.matmul`, `attn.scale`, `attn.mask`,
    `attn.softmax`, `attn.cast`. The `attn-fuse` pass rewrites the chain
    `matmul -> scale -> mask -> softmax -> matmul` into one `attn.attention`.

    *Tile level* ops (introduced by `attn-tile`) describe one query block's
    work over KV blocks with an online softmax; they are shared by the CPU and
    GPU lowerings.
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

// How scores are masked. `bias` adds a tensor; the others are structured.
def Attn_MaskKind : I32EnumAttr<"MaskKind", "attention mask kind", [
    I32EnumAttrCase<"none", 0>,
    I32EnumAttrCase<"causal", 1>,
    I32EnumAttrCase<"sliding_window", 2>,
    I32EnumAttrCase<"bias", 3>
  ]> {
  let cppNamespace = "::mlir::attn";
}

// Where the diagonal of a causal or sliding-window mask sits when Lq != Lk.
// `top_left`: query i is aligned with key i (torch's is_causal);
// `bottom_right`: query i is aligned with key i + (Lk - Lq) (KV-cache decoding,
// flash-attn's convention), so the last query sees the last key.
def Attn_MaskAlign : I32EnumAttr<"MaskAlign", "alignment of a causal or window mask", [
    I32EnumAttrCase<"top_left", 0>,
    I32EnumAttrCase<"bottom_right", 1>
  ]> {
  let cppNamespace = "::mlir::attn";
}

#endif // ATTN_DIALECT_TD
