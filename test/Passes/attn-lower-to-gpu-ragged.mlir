// RUN: attncc-opt %s -split-input-file --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2 gathers=true}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s
// RUN: attncc-opt %s -split-input-file --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2 gathers=true}),canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a},canonicalize,cse)" | FileCheck %s --check-prefix=SM90

// Paged KV cache, GQA 2, causal: a 2-D grid (heads, work items); the work
// item's fields are loaded in the kernel; K/V rows are gathered by cp.async,
// each 16-byte chunk from slot t % P of page block_table[seq, t / P] (P is
// the cache's dimension 2, read at run time: a shift and a mask where it is a
// power of two, a division where not), into two pipeline slots.
// CHECK-LABEL: func.func @paged
// CHECK-SAME: %[[W:[^:]*]]: memref<?x7xi32>
// CHECK: %[[NW:.*]] = memref.dim %[[W]], %{{.*}} : memref<?x7xi32>
// CHECK: gpu.launch_func @paged_kernel::@paged_kernel blocks in (%{{.*}}, %[[NW]], %{{.*}})
// CHECK: gpu.func @paged_kernel(
// CHECK: memref.view {{.*}} to memref<2x64x64xf16, #gpu.address_space<workgroup>>
// CHECK: memref.load %{{.*}}[%block_id_y, %{{.*}}] : memref<?x7xi32>
// CHECK: nvgpu.device_async_copy {{.*}} : memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>> to memref<64x64xf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_create_group
// CHECK: %[[P:.*]] = memref.dim %[[KK:arg[0-9]+]], %{{.*}} : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>
// CHECK: math.cttz
// CHECK: %[[TS:.*]]:2 = scf.if %{{.*}} -> (index, index) {
// CHECK:   arith.shrui
// CHECK:   arith.andi
// CHECK: } else {
// CHECK:   arith.divui %{{.*}}, %[[P]] : index
// CHECK:   arith.remui %{{.*}}, %[[P]] : index
// CHECK: }
// CHECK: %[[PG:.*]] = memref.load %[[BT:arg[0-9]+]][%{{.*}}, %[[TS]]#0] : memref<?x?xi32>
// CHECK: %[[PGI:.*]] = arith.index_cast %[[PG]] : i32 to index
// CHECK: nvgpu.device_async_copy %[[KK]][%[[PGI]], %{{.*}}, %[[TS]]#1, %{{.*}}], %{{.*}}, 8, %{{.*}} {bypassL1}
// Steady state: the next block's gathers, then this block's wait and MMAs.
// CHECK: scf.for
// CHECK: memref.load %[[BT]]
// CHECK: nvgpu.device_async_copy %[[KK]]
// CHECK: nvgpu.device_async_wait
// CHECK: nvgpu.mma.sync
// CHECK-NOT: {{^ +}}attn.
// sm_90a: wgmma with cp.async (no TMA: the rows come from several pages).
// SM90-LABEL: gpu.func @paged_kernel
// SM90-NOT: nvgpu.tma
// SM90: nvgpu.device_async_copy
// SM90: nvvm.wgmma.mma_async
// SM90-NOT: nvgpu.tma
func.func @paged(%q: tensor<1x4x?x64xf16>, %k: tensor<?x2x?x64xf16>, %v: tensor<?x2x?x64xf16>,
                 %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x64xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 window_sides [-1, 0] kv_group 2
      : tensor<1x4x?x64xf16>, tensor<?x2x?x64xf16>, tensor<?x2x?x64xf16> -> tensor<1x4x?x64xf16>
  return %o : tensor<1x4x?x64xf16>
}

// -----

// Varlen (packed K/V), sinks: copy_tile rows of the item's keys; the row max
// starts at the head's sink, loaded in the kernel.
// CHECK-LABEL: gpu.func @varlen_kernel
// CHECK: memref.load %{{.*}} : memref<4xf32>
// CHECK: nvgpu.device_async_copy
// CHECK-NOT: {{^ +}}attn.
func.func @varlen(%q: tensor<1x4x?x64xbf16>, %k: tensor<1x4x?x64xbf16>, %v: tensor<1x4x?x64xbf16>,
                  %w: tensor<?x7xi32>, %t: tensor<4xf32>) -> tensor<1x4x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>)
      sinks(%t : tensor<4xf32>) scale 0.125 kv_group 1
      : tensor<1x4x?x64xbf16>, tensor<1x4x?x64xbf16>, tensor<1x4x?x64xbf16> -> tensor<1x4x?x64xbf16>
  return %o : tensor<1x4x?x64xbf16>
}
