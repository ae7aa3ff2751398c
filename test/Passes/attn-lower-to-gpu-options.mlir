// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=2})"
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a tma=false})" | FileCheck %s --check-prefix=OK

// Each warp owns 16 query rows: block-m must be 16 * num-warps.
// OK-LABEL: func.func @warps
// Without attn-pipeline the K/V buffers keep one slot.
// OK: gpu.launch_func {{.*}} threads in (%c128,
// OK: memref.view {{.*}} to memref<1x64x64xf16, #gpu.address_space<workgroup>>
// OK: nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
func.func @warps(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x64x64xf16>) -> tensor<1x2x64x64xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: block-m (64) must be 16 * num-warps (32): each warp owns 16 query rows}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}
