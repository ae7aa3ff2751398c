// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s

// The score variants on the sm_80 kernel (docs/gpu.md, "Score variants"):
// dynamic lengths, GQA (2 query heads per KV head), bottom-right window
// sides [40, 8], soft-capping 20, ALiBi slopes and sinks.
func.func @variants(%q: tensor<1x2x?x64xf16>, %k: tensor<1x1x?x64xf16>, %v: tensor<1x1x?x64xf16>,
                    %slopes: tensor<2xf32>, %sinks: tensor<2xf32>) -> tensor<1x2x?x64xf16> {
  %0 = attn.attention %q, %k, %v alibi_slopes(%slopes : tensor<2xf32>) sinks(%sinks : tensor<2xf32>)
      scale 0.125 softcap 20.0 mask sliding_window align bottom_right window_sides [40, 8] kv_group 2
      : tensor<1x2x?x64xf16>, tensor<1x1x?x64xf16>, tensor<1x1x?x64xf16> -> tensor<1x2x?x64xf16>
  return %0 : tensor<1x2x?x64xf16>
}

// Host: the grid comes from the run-time query length; slopes and sinks are
// kernel arguments (global memory).
// CHECK-LABEL: func.func @variants
// CHECK: %[[LQ:.*]] = memref.dim %arg0, %c2 : memref<1x2x?x64xf16>
// CHECK: gpu.launch_func @variants_kernel::@variants_kernel blocks in (%{{.*}}, %c2, %c1)
// CHECK-SAME: %arg4 : memref<2xf32>
// CHECK-SAME: %arg3 : memref<2xf32>
// CHECK: gpu.func @variants_kernel(%{{.*}}: memref<1x2x?x64xf16>, %[[K:.*]]: memref<1x1x?x64xf16>, %[[SINKS:.*]]: memref<2xf32>, %{{.*}}: memref<1x1x?x64xf16>, %[[SLOPES:.*]]: memref<2xf32>,
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[M2C:.*]] = arith.constant -4.000000e+01 : f32
// CHECK-DAG: %[[CAP:.*]] = arith.constant 2.000000e+01 : f32
// CHECK-DAG: %[[K2:.*]] = arith.constant 0.144269511 : f32
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// Bottom-right offset Lk - Lq, from the kernel's own arguments.
// CHECK: %[[LQK:.*]] = memref.dim %arg0, %c2
// CHECK: %[[LK:.*]] = memref.dim %[[K]], %c2
// CHECK: %[[OFF:.*]] = arith.subi %[[LK]], %[[LQK]] : index
// Sinks: the running max starts at the head's sink, the running sum at 1 on
// the first lane of each quad (the per-lane partial sums add up to 1).
// CHECK: %[[SINK:.*]] = memref.load %[[SINKS]][%block_id_y] : memref<2xf32>
// CHECK-NEXT: memref.store %[[SINK]], %[[MX:.*]][%c0] : memref<2xf32>
// CHECK-NEXT: memref.store %[[SINK]], %[[MX]][%c1] : memref<2xf32>
// CHECK-NEXT: %[[Q4:.*]] = arith.remui %{{.*}}, %c4 : index
// CHECK-NEXT: %[[FIRST:.*]] = arith.cmpi eq, %[[Q4]], %c0 : index
// CHECK-NEXT: %[[SUM0:.*]] = arith.select %[[FIRST]], %[[ONE]], %[[ZERO]] : f32
// CHECK-NEXT: memref.store %[[SUM0]], %[[SUM:.*]][%c0] : memref<2xf32>
// KV loop: Q.K^T on tensor cores, then per score the soft-cap
// c - 2c / (1 + 2^(s * 2 log2(e) / c)) with ex2 and rcp (no tanh, no libdevice).
// CHECK: scf.for
// CHECK: nvgpu.mma.sync
// CHECK: %[[S:.*]] = memref.load %[[SF:.*]][%c0] : memref<32xf32>
// CHECK-NEXT: %[[X:.*]] = arith.mulf %[[S]], %[[K2]] : f32
// CHECK-NEXT: %[[E:.*]] = llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"(%[[X]]) : (f32) -> f32
// CHECK-NEXT: %[[D:.*]] = arith.addf %[[E]], %[[ONE]] : f32
// CHECK-NEXT: %[[R:.*]] = llvm.call_intrinsic "llvm.nvvm.rcp.approx.ftz.f"(%[[D]]) : (f32) -> f32
// CHECK-NEXT: %[[RM:.*]] = arith.mulf %[[R]], %[[M2C]] fastmath<contract> : f32
// CHECK-NEXT: %[[CAPPED:.*]] = arith.addf %[[RM]], %[[CAP]] fastmath<contract> : f32
// CHECK-NEXT: memref.store %[[CAPPED]], %[[SF]][%c0] : memref<32xf32>
// CHECK-NOT: tanh
// ALiBi: the head's slope, one f32 query-key distance per lane and row half,
// |d| as max(d, -d), then s - slope * |d - column|.
// CHECK: %[[SLOPE:.*]] = memref.load %[[SLOPES]][%block_id_y] : memref<2xf32>
// CHECK-NEXT: %[[NS:.*]] = arith.negf %[[SLOPE]] : f32
// CHECK: %[[POS:.*]] = arith.sitofp %{{.*}} : i32 to f32
// CHECK-NEXT: %[[NPOS:.*]] = arith.negf %[[POS]] : f32
// CHECK-NEXT: %[[DIST:.*]] = arith.maximumf %[[POS]], %[[NPOS]] : f32
// CHECK-NEXT: %[[S0:.*]] = memref.load %[[SF]][%c0] : memref<32xf32>
// CHECK-NEXT: %[[B:.*]] = arith.mulf %[[NS]], %[[DIST]] fastmath<contract> : f32
// CHECK-NEXT: %[[A0:.*]] = arith.addf %[[B]], %[[S0]] fastmath<contract> : f32
// CHECK-NEXT: memref.store %[[A0]], %[[SF]][%c0] : memref<32xf32>
// CHECK-NEXT: %[[D8:.*]] = arith.subf %[[POS]], %{{.*}} : f32
// Mask, predicated by the straddle test: past the keys, right of i' + 8, left
// of i' - 40, with i' the query row shifted by Lk - Lq; the per-lane bounds
// in i32, compared with the element's constant column offset.
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[STRADDLE:.*]] = arith.ori %{{.*}}, %{{.*}} : i1
// CHECK-NEXT: %[[VALIDX:.*]] = arith.subi %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[VALID:.*]] = arith.index_cast %[[VALIDX]] : index to i32
// CHECK-NEXT: arith.addi %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[QPOS:.*]] = arith.addi %{{.*}}, %[[OFF]] : index
// CHECK-NEXT: %[[DROWX:.*]] = arith.subi %[[QPOS]], %{{.*}} : index
// CHECK-NEXT: %[[DROW:.*]] = arith.index_cast %[[DROWX]] : index to i32
// CHECK-NEXT: %[[HI:.*]] = arith.addi %[[DROW]], %c8_i32 : i32
// CHECK-NEXT: %[[LO:.*]] = arith.subi %[[DROW]], %c40_i32 : i32
// CHECK-NEXT: %[[TAIL:.*]] = arith.cmpi sle, %[[VALID]], %c0_i32 : i32
// CHECK-NEXT: %[[RIGHT:.*]] = arith.cmpi slt, %[[HI]], %c0_i32 : i32
// CHECK-NEXT: %[[M1:.*]] = arith.ori %[[TAIL]], %[[RIGHT]] : i1
// CHECK-NEXT: %[[LEFT:.*]] = arith.cmpi sgt, %[[LO]], %c0_i32 : i32
// CHECK-NEXT: %[[M2:.*]] = arith.ori %[[M1]], %[[LEFT]] : i1
// CHECK-NEXT: %[[M3:.*]] = arith.andi %[[M2]], %[[STRADDLE]] : i1
// CHECK-NEXT: %[[S1:.*]] = memref.load %[[SF]][%c0] : memref<32xf32>
// CHECK-NEXT: arith.select %[[M3]], %[[NEGINF]], %[[S1]] : f32
// Column offset 8 (n-block 1): the same per-lane bounds.
// CHECK: arith.cmpi sle, %[[VALID]], %c8_i32 : i32
// CHECK-NEXT: arith.cmpi slt, %[[HI]], %c8_i32 : i32
// Then the online softmax (exp2, quad shuffles) and P.V.
// CHECK: gpu.shuffle xor
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: nvgpu.mma.sync
