// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64 lse=true},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s

// attn-tile's lse form on the sm_80 kernel (docs/gpu.md, "The log-sum-exp
// output"): after the output, per row half, the quad's partial sums are
// added, lse = max + lg2(sum) * ln 2 (-inf for sum 0), and the first lane of
// each quad writes its row if the row is valid.
func.func @lse(%q: tensor<1x2x?x64xf16>, %k: tensor<1x2x?x64xf16>) -> tensor<1x2x?x64xf16> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal align bottom_right kv_group 1
      : tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16> -> tensor<1x2x?x64xf16>
  return %0 : tensor<1x2x?x64xf16>
}

// The runtime reads which argument is the lse (after the output).
// CHECK-LABEL: func.func @lse
// CHECK-SAME: %[[LSE:arg[0-9]+]]: memref<1x2x?xf32>) attributes {attn.gpu_args = {k = 1 : i64, lse = 3 : i64, out = 2 : i64, q = 0 : i64, v = 1 : i64}}
// CHECK: gpu.launch_func @lse_kernel::@lse_kernel
// CHECK-SAME: %[[LSE]] : memref<1x2x?xf32>)
// CHECK: gpu.func @lse_kernel(
// CHECK-SAME: %[[DEST:arg[0-9]+]]: memref<1x2x?xf32>)
// CHECK-DAG: %[[LN2:.*]] = arith.constant 0.693147182 : f32
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// The output first (its own quad reductions), then the first row half's lse.
// CHECK: vector.store %{{.*}} : memref<1x2x?x64xf16>, vector<2xf16>
// CHECK: %[[QUAD0:.*]] = arith.cmpi eq, %{{.*}}, %c0 : index
// CHECK: %[[S0:.*]] = memref.load %[[SUMS:.*]][%c0] : memref<2xf32>
// CHECK: gpu.shuffle  xor %[[S0]], %c1_i32, %c32_i32 : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32, %c32_i32 : f32
// CHECK: %[[TOTAL:.*]] = arith.addf
// CHECK: %[[LG:.*]] = llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"(%[[TOTAL]]) : (f32) -> f32
// CHECK: %[[EMPTY:.*]] = arith.cmpf oeq, %[[TOTAL]], %[[ZERO]] : f32
// CHECK: %[[MAX:.*]] = memref.load %{{.*}}[%c0] : memref<2xf32>
// CHECK: %[[LN:.*]] = arith.mulf %[[LG]], %[[LN2]] fastmath<contract> : f32
// CHECK: %[[SUM:.*]] = arith.addf %[[LN]], %[[MAX]] fastmath<contract> : f32
// CHECK: %[[V:.*]] = arith.select %[[EMPTY]], %[[NEGINF]], %[[SUM]] : f32
// CHECK: %[[W:.*]] = arith.andi %[[QUAD0]], %{{.*}} : i1
// CHECK: scf.if %[[W]] {
// CHECK-NEXT: memref.store %[[V]], %[[DEST]][%c0, %block_id_y, %{{.*}}] : memref<1x2x?xf32>
// The second row half (rows + 8) likewise.
// CHECK: memref.load %[[SUMS]][%c1] : memref<2xf32>
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %[[DEST]][%c0, %block_id_y, %{{.*}}] : memref<1x2x?xf32>
// CHECK: gpu.return
