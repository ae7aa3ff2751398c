// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a mma=wgmma})"
// RUN: not attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4 input-precision=ieee})" 2>&1 | FileCheck %s --check-prefix=UNKNOWN

// f32 inputs with mma=wgmma: wgmma's .tf32 form takes B K-major only, and V
// is MN-major for P.V (mma=auto picks mma.sync for f32 on sm_90a).
// UNKNOWN: error: attn-lower-to-gpu: unknown input-precision 'ieee' (expected tf32 or tf32x3)
func.func @f32_wgmma(%q: tensor<1x2x64x64xf32>, %k: tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xf32> {
  // expected-error @+1 {{attn-lower-to-gpu: mma=wgmma does not take f32 inputs (wgmma .tf32 needs a K-major V); use mma=auto or mma-sync}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32> -> tensor<1x2x64x64xf32>
  return %0 : tensor<1x2x64x64xf32>
}

// -----

// f16 inputs with mma=wgmma are fine: no diagnostic.
func.func @f16_wgmma(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x64x64xf16>) -> tensor<1x2x64x64xf16> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}
