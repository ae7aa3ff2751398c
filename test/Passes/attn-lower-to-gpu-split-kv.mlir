// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64 split-kv=true},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),attn-lower-to-gpu{num-warps=4})"

// The GPU lowering has no split-KV yet: refused by name (the lse form alone
// lowers: attn-lower-to-gpu-lse.mlir).
func.func @split(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x?x64xf16>) -> tensor<1x2x64x64xf16> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16> -> tensor<1x2x64x64xf16>
  // expected-error @-2 {{attn-lower-to-gpu: split-KV (num_splits > 1, attn.tile_combine) is not supported by attn-lower-to-gpu yet}}
  return %0 : tensor<1x2x64x64xf16>
}
