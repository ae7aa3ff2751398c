// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=32 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=2 chip=sm_90a mma=wgmma})"
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=32 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=2 chip=sm_90a})" | FileCheck %s --check-prefix=AUTO
// RUN: not attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_80 mma=wgmma})" 2>&1 | FileCheck %s --check-prefix=SM80
// RUN: not attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a mma=hmma})" 2>&1 | FileCheck %s --check-prefix=UNKNOWN

// wgmma needs whole warpgroups (4 warps): asked for explicitly with 2 warps,
// it is an error; with mma=auto the kernel falls back to mma.sync.
// AUTO-LABEL: func.func @two_warps
// AUTO: nvgpu.mma.sync
// AUTO-NOT: wgmma
// SM80: error: attn-lower-to-gpu: mma=wgmma needs chip=sm_90a and num-warps a multiple of 4 (got sm_80, 4 warps)
// UNKNOWN: error: attn-lower-to-gpu: unknown mma 'hmma' (expected auto, mma-sync or wgmma)
func.func @two_warps(%q: tensor<1x2x32x64xf16>, %k: tensor<1x2x64x64xf16>) -> tensor<1x2x32x64xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: mma=wgmma needs chip=sm_90a and num-warps a multiple of 4 (got sm_90a, 2 warps)}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x32x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> -> tensor<1x2x32x64xf16>
  return %0 : tensor<1x2x32x64xf16>
}
