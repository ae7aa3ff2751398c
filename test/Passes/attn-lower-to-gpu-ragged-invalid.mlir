// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2 gathers=true}),attn-lower-to-gpu{num-warps=4})"

// Ragged / paged programs take the GPU plan's checks: a head dim the
// tensor-core kernel does not have is named.
func.func @paged_head_dim_32(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x?x32xf16>, %v: tensor<?x2x?x32xf16>,
                             %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: head dim 32 is not supported on the GPU (supported: 64, 128)}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x?x32xf16>, tensor<?x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

// f64: the kernel's output (and tensor-core inputs) must be f16, bf16 or f32.
func.func @paged_f64(%q: tensor<1x4x?x64xf64>, %k: tensor<?x2x?x64xf64>, %v: tensor<?x2x?x64xf64>,
                     %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x64xf64> {
  // expected-error @+1 {{attn-lower-to-gpu: the output must be f16, bf16 or f32}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x64xf64>, tensor<?x2x?x64xf64>, tensor<?x2x?x64xf64> -> tensor<1x4x?x64xf64>
  return %o : tensor<1x4x?x64xf64>
}
