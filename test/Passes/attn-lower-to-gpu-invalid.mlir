// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),attn-lower-to-gpu{num-warps=4})"

// f32 inputs: no f32 tensor-core mma.sync m16n8k16.
func.func @f32_inputs(%q: tensor<1x2x64x64xf32>, %k: tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xf32> {
  // expected-error @+1 {{attn-lower-to-gpu: element type 'f32' is not supported on the GPU: tensor cores (mma.sync m16n8k16) take f16 or bf16 inputs}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32> -> tensor<1x2x64x64xf32>
  return %0 : tensor<1x2x64x64xf32>
}

// -----

func.func @head_dim_96(%q: tensor<1x2x64x96xf16>, %k: tensor<1x2x64x96xf16>) -> tensor<1x2x64x96xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: head dim 96 is not supported on the GPU (supported: 64, 128)}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x96xf16>, tensor<1x2x64x96xf16>, tensor<1x2x64x96xf16> -> tensor<1x2x64x96xf16>
  return %0 : tensor<1x2x64x96xf16>
}

// -----

func.func @head_dim_32(%q: tensor<1x2x64x32xbf16>, %k: tensor<1x2x64x32xbf16>) -> tensor<1x2x64x32xbf16> {
  // expected-error @+1 {{attn-lower-to-gpu: head dim 32 is not supported on the GPU (supported: 64, 128)}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal kv_group 1
      : tensor<1x2x64x32xbf16>, tensor<1x2x64x32xbf16>, tensor<1x2x64x32xbf16> -> tensor<1x2x64x32xbf16>
  return %0 : tensor<1x2x64x32xbf16>
}
