// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4})"

// Ragged batches and paged caches are CPU-only: the GPU lowering refuses them by name.
// expected-error @+1 {{attn-lower-to-gpu: ragged / paged attention (attn.ragged_attention, attn.gather_tile) is not supported by attn-lower-to-gpu yet}}
func.func @paged(%q: tensor<1x4x?x64xf16>, %k: tensor<?x2x?x64xf16>, %v: tensor<?x2x?x64xf16>,
                 %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x64xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x64xf16>, tensor<?x2x?x64xf16>, tensor<?x2x?x64xf16> -> tensor<1x4x?x64xf16>
  return %o : tensor<1x4x?x64xf16>
}
