// RUN: attncc-opt %s -split-input-file --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=32},canonicalize,cse,func.func(attn-pipeline{num-stages=3}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s

// Causal f16, 100 keys (not a multiple of 32), 3 pipeline stages, 4 warps.
// Host side: one launch, grid (query blocks, heads, batch) = (2, 2, 1),
// 128 threads, Q tile + 3 K + 3 V slots of 32 x 64 f16 in dynamic shared memory.
// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @causal
// CHECK-SAME: attn.gpu_args = {k = 1 : i64, out = 3 : i64, q = 0 : i64, v = 2 : i64}
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : index
// CHECK-DAG: %[[SMEM:.*]] = arith.constant 32768 : i32
// CHECK: gpu.launch_func @causal_kernel::@causal_kernel blocks in (%[[C2]], %[[C2]], %{{.*}}) threads in (%[[C128]], %{{.*}}, %{{.*}}) dynamic_shared_memory_size %[[SMEM]] args(
// CHECK: gpu.module @causal_kernel
// CHECK: gpu.func @causal_kernel(
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>
// CHECK-SAME: nvvm.minctasm = 1 : i32
// CHECK: %[[DSM:.*]] = gpu.dynamic_shared_memory
// CHECK: %[[QS:.*]] = memref.view %[[DSM]][%{{.*}}][] {{.*}} to memref<64x64xf16, #gpu.address_space<workgroup>>
// CHECK: %[[KS:.*]] = memref.view %[[DSM]][%{{.*}}][] {{.*}} to memref<3x32x64xf16, #gpu.address_space<workgroup>>
// CHECK: %[[VS:.*]] = memref.view %[[DSM]][%{{.*}}][] {{.*}} to memref<3x32x64xf16, #gpu.address_space<workgroup>>
// Registers: Q fragments, scores, accumulator, row max, row sum.
// CHECK: memref.alloca() : memref<4xvector<4x2xf16>>
// CHECK: memref.alloca() : memref<16xf32>
// CHECK: memref.alloca() : memref<32xf32>
// Q: 4 cp.async of 16 bytes per thread (zero-filled past the queries), one group.
// CHECK-COUNT-4: nvgpu.device_async_copy %arg0[{{.*}}], %[[QS]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: %[[QG:.*]] = nvgpu.device_async_create_group
// Prologue: the predicated copies of iterations 0 and 1, each its own group,
// committed unconditionally after the scf.if.
// CHECK: scf.if
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK-NEXT: nvgpu.device_async_copy %arg2
// CHECK-NEXT: {{^ *}}}
// CHECK-NEXT: nvgpu.device_async_create_group
// CHECK: scf.if
// CHECK: nvgpu.device_async_copy %arg2
// CHECK-NEXT: nvgpu.device_async_copy %arg2
// CHECK-NEXT: {{^ *}}}
// CHECK-NEXT: nvgpu.device_async_create_group
// Q group retired behind the 2 prologue groups; Q fragments to registers.
// CHECK: nvgpu.device_async_wait %[[QG]] {numGroups = 2 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK-COUNT-4: nvgpu.ldmatrix %[[QS]][{{.*}}] {numTiles = 4 : i32, transpose = false}
// Steady state: barrier (the slot being refilled was read last iteration),
// copies of iteration i + 2, commit, wait keeping 2 groups in flight, barrier,
// then Q.K^T on tensor cores, online softmax with quad shuffles, P.V.
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK: nvgpu.device_async_create_group
// CHECK-NEXT: nvgpu.device_async_wait %[[QG]] {numGroups = 2 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.ldmatrix %{{.*}} {numTiles = 4 : i32, transpose = false} : memref<32x64xf16, strided<[64, 1], offset: ?>, #gpu.address_space<workgroup>> -> vector<4x2xf16>
// CHECK: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c2_i32, %c32_i32 : f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: nvgpu.ldmatrix %{{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK: nvgpu.mma.sync
// CHECK: } {attn.kv_loop, attn.num_stages = 3 : i64}
// Epilogue iterations 0 and 1: 1, then 0 groups left in flight.
// CHECK: nvgpu.device_async_wait %[[QG]] {numGroups = 1 : i32}
// CHECK: nvgpu.device_async_wait %[[QG]] {numGroups = 0 : i32}
// Output: normalized by the quad-reduced row sum, 2 x f16 per store.
// CHECK: gpu.shuffle xor
// CHECK: vector.store %{{.*}}, %arg3[{{.*}}] : memref<1x2x100x64xf16>, vector<2xf16>
// CHECK-NOT: attn.
// CHECK-NOT: memref.alloc()
// CHECK: gpu.return
func.func @causal(%q: tensor<1x2x100x64xf16>, %k: tensor<1x2x100x64xf16>, %v: tensor<1x2x100x64xf16>) -> tensor<1x2x100x64xf16> {
  %0 = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 1
      : tensor<1x2x100x64xf16>, tensor<1x2x100x64xf16>, tensor<1x2x100x64xf16> -> tensor<1x2x100x64xf16>
  return %0 : tensor<1x2x100x64xf16>
}

// -----

// bf16, GQA 4:2, additive bias, head dim 128: bf16 tensor cores through
// nvvm.mma.sync (packed i32 registers), bias added per fragment element.
// CHECK-LABEL: func.func @bias_gqa_bf16
// CHECK-SAME: attn.gpu_args = {bias = 3 : i64, k = 1 : i64, out = 4 : i64, q = 0 : i64, v = 2 : i64}
// CHECK: gpu.func @bias_gqa_bf16_kernel
// CHECK: memref.view {{.*}} to memref<3x32x128xbf16, #gpu.address_space<workgroup>>
// CHECK: scf.for
// Head dim 128: Q fragments come from shared memory at each k-step.
// CHECK: nvgpu.ldmatrix %{{.*}} : memref<64x128xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
// CHECK: vector.bitcast %{{.*}} : vector<2xbf16> to vector<1xi32>
// CHECK: nvvm.mma.sync A[{{.*}}] B[{{.*}}] C[{{.*}}] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK: memref.load %arg3[{{.*}}] : memref<1x4x100x100xf32>
// CHECK: } {attn.kv_loop
func.func @bias_gqa_bf16(%q: tensor<1x4x100x128xbf16>, %k: tensor<1x2x100x128xbf16>, %v: tensor<1x2x100x128xbf16>, %b: tensor<1x4x100x100xf32>) -> tensor<1x4x100x128xbf16> {
  %0 = attn.attention %q, %k, %v bias(%b : tensor<1x4x100x100xf32>) scale 0.08838834764831845 mask bias kv_group 2
      : tensor<1x4x100x128xbf16>, tensor<1x2x100x128xbf16>, tensor<1x2x100x128xbf16> -> tensor<1x4x100x128xbf16>
  return %0 : tensor<1x4x100x128xbf16>
}

// -----

// Functions without tile ops are left alone.
// CHECK-LABEL: func.func @other
// CHECK-NEXT: arith.addf
// CHECK-NOT: gpu.launch_func
func.func @other(%a: f32) -> f32 {
  %0 = arith.addf %a, %a : f32
  return %0 : f32
}
