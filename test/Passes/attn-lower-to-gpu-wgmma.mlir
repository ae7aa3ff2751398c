// RUN: attncc-opt %s -split-input-file --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a tma=false},canonicalize,cse)" | FileCheck %s

// sm_90a with a whole warpgroup: the warpgroup-MMA kernel (mma=auto), with
// cp.async loads (tma=false; TMA: attn-lower-to-gpu-tma.mlir).
// Shared memory: Q [64, 128] and two K/V slots [64, 128], each as two
// 64-column panels of 128-byte rows, after a pad to a 1024-byte boundary:
// 16384 + 2 * 2 * 16384 + 1024 bytes.
// CHECK-LABEL: func.func @bf16_d128
// CHECK: gpu.launch_func @bf16_d128_kernel::@bf16_d128_kernel {{.*}} threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c82944_i32
// Descriptor constants: LBO 16 B / SBO 1024 B (K-major Q, K) and LBO 8192 B
// (one 64 x 64 panel of V) / SBO 1024 B (MN-major V), 128-byte swizzle (bit 62).
// CHECK-DAG: arith.constant 4611686293305360384 : i64
// CHECK-DAG: arith.constant 4611686293338849280 : i64
// CHECK: %[[DSM:.*]] = gpu.dynamic_shared_memory
// CHECK: %[[BASE:.*]] = memref.extract_aligned_pointer_as_index %[[DSM]]
// CHECK: %[[NEG:.*]] = arith.subi %{{.*}}, %[[BASE]]
// CHECK: %[[PAD:.*]] = arith.andi %[[NEG]], %c1023
// CHECK: memref.view %[[DSM]][%[[PAD]]][] {{.*}} to memref<128x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x128x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x128x64xbf16, #gpu.address_space<workgroup>>
// cp.async lands in the generic proxy: fence to the async proxy, then barrier.
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK-NEXT: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-NEXT: gpu.barrier
// CHECK: scf.for
// Steady state: Q.K^T, 8 k-steps of m64n64k16 from descriptors, the first
// one overwriting the accumulator.
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK-NEXT: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK-NEXT: nvvm.wgmma.fence.aligned
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>, D[<f32>, <zero>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK-COUNT-7: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: gpu.shuffle xor
// P.V: 4 k-steps of m64n128k16 with A (P) in 4 registers, B transposed.
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-COUNT-4: llvm.inline_asm has_side_effects asm_dialect = att "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {$0, {{.*}}, $63}, {$128, $129, $130, $131}, $132, 1, 1, 1, 1;", "=f,{{.*}},=f,0,1,{{.*}},63,r,r,r,r,l"
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: scf.yield
// CHECK-NOT: nvgpu.mma.sync
// CHECK-NOT: nvgpu.ldmatrix
func.func @bf16_d128(%q: tensor<1x2x128x128xbf16>, %k: tensor<1x2x256x128xbf16>, %v: tensor<1x2x256x128xbf16>) -> tensor<1x2x128x128xbf16> {
  %0 = attn.attention %q, %k, %v scale 0.08838834764831845 mask causal kv_group 1
      : tensor<1x2x128x128xbf16>, tensor<1x2x256x128xbf16>, tensor<1x2x256x128xbf16> -> tensor<1x2x128x128xbf16>
  return %0 : tensor<1x2x128x128xbf16>
}

// -----

// Head dim 64, f16: one panel; Q.K^T has 4 k-steps, P.V is m64n64k16.
// CHECK-LABEL: func.func @f16_d64
// CHECK: dynamic_shared_memory_size %c41984_i32
// CHECK: memref.view {{.*}} to memref<64x64xf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>, D[<f32>, <zero>], A[<f16>, <one>, <row>], B[<f16>, <one>, <col>]
// CHECK-COUNT-3: nvvm.wgmma.mma_async {{.*}} D[<f32>, <one>]
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {$0, {{.*}}, $31}, {$64, $65, $66, $67}, $68, 1, 1, 1, 1;"
func.func @f16_d64(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x256x64xf16>, %v: tensor<1x2x256x64xf16>) -> tensor<1x2x64x64xf16> {
  %0 = attn.attention %q, %k, %v scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x256x64xf16>, tensor<1x2x256x64xf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}
