// RUN: attncc-opt %s -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64 kv-in-place=true},canonicalize,cse,attn-lower-to-gpu{num-warps=4})"

// kv-in-place is the CPU's decode form (dot products on K rows where they
// are stored); the GPU lowering copies K/V tiles to shared memory and refuses it.
func.func @in_place(%q: tensor<1x2x?x64xf16>, %k: tensor<1x2x?x64xf16>) -> tensor<1x2x?x64xf16> {
  // expected-error @+1 {{a transposed tile_matmul (attn-tile's kv-in-place form) is a CPU form; tile without kv-in-place for the GPU}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16> -> tensor<1x2x?x64xf16>
  return %0 : tensor<1x2x?x64xf16>
}
