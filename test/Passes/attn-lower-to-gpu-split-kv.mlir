// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64 split-kv=true},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s

// attn-tile's split-KV form on the GPU (passes/GpuSplitKv.cpp): the
// (batch, head, query block, split) grid folded into three launch
// dimensions, and the combine as a second kernel in the same gpu.module,
// launched unconditionally after the first (it checks the split count).
func.func @split(%q: tensor<?x2x?x64xf16>, %k: tensor<?x2x?x64xf16>, %s: tensor<2xf32>) -> tensor<?x2x?x64xf16> {
  %0 = attn.attention %q, %k, %k sinks(%s : tensor<2xf32>) scale 0.125 mask causal align bottom_right kv_group 1
      : tensor<?x2x?x64xf16>, tensor<?x2x?x64xf16>, tensor<?x2x?x64xf16> -> tensor<?x2x?x64xf16>
  return %0 : tensor<?x2x?x64xf16>
}

// Host: out, lse, part, part_lse after the inputs; z = splits * B where
// splits = dim(part, 0) / max(B, 1).
// CHECK-LABEL: func.func @split(
// CHECK-SAME: %[[OUT:arg3]]: memref<?x2x?x64xf16>, %[[LSE:arg4]]: memref<?x2x?xf32>, %[[PART:arg5]]: memref<?x2x?x64xf32>, %[[PLSE:arg6]]: memref<?x2x?xf32>)
// CHECK-SAME: attn.gpu_args = {k = 1 : i64, lse = 4 : i64, out = 3 : i64, q = 0 : i64, v = 1 : i64}
// CHECK: %[[B:.*]] = memref.dim %arg0, %c0
// CHECK: %[[ROWS:.*]] = memref.dim %[[PART]], %c0
// CHECK: %[[P:.*]] = arith.divui %[[ROWS]], %{{.*}} : index
// CHECK: %[[Z:.*]] = arith.muli %[[P]], %[[B]] : index
// CHECK: gpu.launch_func @split_kernel::@split_kernel blocks in (%{{.*}}, %c2, %[[Z]]) threads in (%c128, %c1, %c1)
// CHECK-NOT: scf.if
// CHECK: %[[L:.*]] = memref.dim %[[OUT]], %c2
// CHECK: %[[BO:.*]] = memref.dim %[[OUT]], %c0
// CHECK: gpu.launch_func @split_kernel::@split_combine blocks in (%[[L]], %c2, %[[BO]]) threads in (%c64, %c1, %c1) dynamic_shared_memory_size %c0_i32 args(%[[OUT]] : {{.*}}, %[[PART]] : {{.*}}, %arg2 : memref<2xf32>, %[[PLSE]] : {{.*}}, %[[LSE]] : {{.*}})
// CHECK-NEXT: return

// The split kernel: batch = z mod B, split = z / B; one split's KV range;
// with one split the output and lse, else the workspaces at split * B + batch.
// CHECK: gpu.func @split_kernel(
// CHECK: arith.remui %block_id_z
// CHECK: arith.divui %block_id_z
// CHECK: scf.if
// CHECK: vector.store %{{.*}} : memref<?x2x?x64xf16>, vector<2xf16>
// CHECK: } else {
// CHECK: vector.store %{{.*}} : memref<?x2x?x64xf32>, vector<2xf32>

// The combine: one block per (row, head, batch); nothing unless splits > 1;
// M over the splits' LSEs (from the sink's logit), weights by ex2, columns
// tid, tid + 64, ...; thread 0 writes the row's lse.
// CHECK: gpu.func @split_combine(%[[DEST:.*]]: memref<?x2x?x64xf16>, %[[CPART:.*]]: memref<?x2x?x64xf32>, %[[SINKS:.*]]: memref<2xf32>, %[[CPLSE:.*]]: memref<?x2x?xf32>, %[[CLSE:.*]]: memref<?x2x?xf32>) kernel
// CHECK: %[[MANY:.*]] = arith.cmpi ugt, %{{.*}}, %c1 : index
// CHECK: scf.if %[[MANY]] {
// CHECK: %[[SINK:.*]] = memref.load %[[SINKS]][%block_id_y]
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %[[SINK]]) -> (f32) {
// CHECK: memref.load %[[CPLSE]]
// CHECK: arith.maximumf
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: memref.load %[[CPART]]
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: memref.store %{{.*}}, %[[DEST]][%block_id_z, %block_id_y, %block_id_x, %{{.*}}]
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: memref.store %{{.*}}, %[[CLSE]][%block_id_z, %block_id_y, %block_id_x]
