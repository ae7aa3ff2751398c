// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),attn-lower-to-gpu{num-warps=4})"

// f64 inputs: tensor cores take f16, bf16 and f32 (as TF32) only.
func.func @f64_inputs(%q: tensor<1x2x64x64xf64>, %k: tensor<1x2x64x64xf64>) -> tensor<1x2x64x64xf32> {
  // expected-error @+1 {{attn-lower-to-gpu: element type 'f64' is not supported on the GPU: tensor cores take f16, bf16 or f32 (as TF32) inputs}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf64>, tensor<1x2x64x64xf64>, tensor<1x2x64x64xf64> -> tensor<1x2x64x64xf32>
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

// -----

// fp8 K/V (quantized KV caches) run on the CPU only.
func.func @fp8_kv(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x64x64xf8E4M3FN>) -> tensor<1x2x64x64xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: 8-bit K/V ('f8E4M3FN') are not supported on the GPU; fp8 KV caches run on the CPU}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf8E4M3FN>, tensor<1x2x64x64xf8E4M3FN> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}

// -----

// Wide K/V of another type than Q.
func.func @mixed_kv(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x64x64xbf16>) -> tensor<1x2x64x64xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: Q, K and V must have the same element type}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xbf16>, tensor<1x2x64x64xbf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}
