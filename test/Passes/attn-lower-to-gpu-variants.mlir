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
// of i' - 40, with i' the query row shifted by Lk - Lq. Per row half the lane
// keeps two limits, hi = min(valid - 1, dRow + 8) and lo = dRow - 41, as
// (limit + 1) clamped to [0, 65] in i32; an element at constant column k is
// masked iff k + 1 > hi + 1 or k + 1 <= lo + 1.
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[STRADDLE:.*]] = arith.ori %{{.*}}, %{{.*}} : i1
// CHECK-NEXT: %[[VALIDX:.*]] = arith.subi %{{.*}}, %{{.*}} : index
// CHECK-NEXT: arith.addi %{{.*}}, %{{.*}} : index
// CHECK-NEXT: %[[QPOS:.*]] = arith.addi %{{.*}}, %[[OFF]] : index
// CHECK-NEXT: %[[DROW:.*]] = arith.subi %[[QPOS]], %{{.*}} : index
// CHECK-NEXT: %[[TAIL:.*]] = arith.subi %[[VALIDX]], %c1 : index
// CHECK-NEXT: %[[RIGHT:.*]] = arith.addi %[[DROW]], %c8 : index
// CHECK-NEXT: %[[HI:.*]] = arith.minsi %[[TAIL]], %[[RIGHT]] : index
// CHECK-NEXT: %[[HI1:.*]] = arith.addi %[[HI]], %c1 : index
// CHECK-NEXT: %[[HI2:.*]] = arith.maxsi %[[HI1]], %c0 : index
// CHECK-NEXT: %[[HI3:.*]] = arith.minsi %[[HI2]], %c65 : index
// CHECK-NEXT: %[[HI32:.*]] = arith.index_cast %[[HI3]] : index to i32
// CHECK-NEXT: %[[LO1:.*]] = arith.addi %[[DROW]], %c-40 : index
// CHECK-NEXT: %[[LO2:.*]] = arith.maxsi %[[LO1]], %c0 : index
// CHECK-NEXT: %[[LO3:.*]] = arith.minsi %[[LO2]], %c65 : index
// CHECK-NEXT: %[[LO32:.*]] = arith.index_cast %[[LO3]] : index to i32
// CHECK-NEXT: %[[HIW:.*]] = arith.select %[[STRADDLE]], %[[HI32]], %c65_i32 : i32
// CHECK-NEXT: %[[LOW:.*]] = arith.select %[[STRADDLE]], %[[LO32]], %c0_i32 : i32
// CHECK-NEXT: %[[M1:.*]] = arith.cmpi slt, %[[HIW]], %c1_i32 : i32
// CHECK-NEXT: %[[M2:.*]] = arith.cmpi sge, %[[LOW]], %c1_i32 : i32
// CHECK-NEXT: %[[M3:.*]] = arith.ori %[[M1]], %[[M2]] : i1
// CHECK-NEXT: %[[S1:.*]] = memref.load %[[SF]][%c0] : memref<32xf32>
// CHECK-NEXT: arith.select %[[M3]], %[[NEGINF]], %[[S1]] : f32
// Column offset 8 (n-block 1): the same per-lane limits.
// CHECK: arith.cmpi slt, %[[HIW]], %c9_i32 : i32
// CHECK-NEXT: arith.cmpi sge, %[[LOW]], %c9_i32 : i32
// Then the online softmax (exp2, quad shuffles) and P.V.
// CHECK: gpu.shuffle xor
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: nvgpu.mma.sync
