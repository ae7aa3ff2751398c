// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=32 block-n=16" | FileCheck %s

// Bottom-right causal with dynamic lengths: the offset Lk - Lq is computed
// from the dims at run time and shifts the KV loop's upper bound and the mask.
// CHECK-LABEL: func @bottom_right_dynamic
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG: %[[C32:.*]] = arith.constant 32 : index
// CHECK: %[[LQ:.*]] = memref.dim %{{.*}}, %[[C2]]
// CHECK: %[[LK:.*]] = memref.dim %{{.*}}, %[[C2]]
// CHECK: %[[OFF:.*]] = arith.subi %[[LK]], %[[LQ]]
// CHECK: scf.parallel
// CHECK: %[[M0:.*]] = arith.muli %{{.*}}, %[[C32]]
// CHECK: %[[M0A:.*]] = arith.addi %[[M0]], %[[OFF]]
// CHECK: %[[END:.*]] = arith.addi %[[M0A]], %[[C32]]
// CHECK: %[[HI:.*]] = arith.minsi %[[LK]], %[[END]]
// CHECK: %[[HI2:.*]] = arith.maxsi %[[HI]], %{{.*}}
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[HI2]]
// CHECK: attn.tile_mask %{{.*}} offset %[[OFF]] causal
func.func @bottom_right_dynamic(%q: tensor<1x2x?x16xf16>, %k: tensor<1x2x?x16xf16>) -> tensor<1x2x?x16xf16> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask causal align bottom_right kv_group 1
      : tensor<1x2x?x16xf16>, tensor<1x2x?x16xf16>, tensor<1x2x?x16xf16> -> tensor<1x2x?x16xf16>
  return %0 : tensor<1x2x?x16xf16>
}

// -----

// window_sides (left 8, right 4): the loop starts at the first block the left
// side reaches and stops after the right side.
// CHECK-LABEL: func @window_sides
// CHECK: scf.parallel
// CHECK: %[[M0:.*]] = arith.muli
// CHECK: %[[C36:.*]] = arith.constant 36 : index
// CHECK: %[[END:.*]] = arith.addi %[[M0]], %[[C36]]
// CHECK: arith.minsi %{{.*}}, %[[END]]
// CHECK: %[[C8:.*]] = arith.constant 8 : index
// CHECK: %[[FIRST0:.*]] = arith.subi %[[M0]], %[[C8]]
// CHECK: %[[FIRST:.*]] = arith.maxsi %{{.*}}, %[[FIRST0]]
// CHECK: arith.divui %[[FIRST]]
// CHECK: scf.for
// CHECK: attn.tile_mask {{.*}} sliding_window window_sides [8, 4]
func.func @window_sides(%q: tensor<2x2x64x16xf32>, %k: tensor<2x2x64x16xf32>) -> tensor<2x2x64x16xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask sliding_window window_sides [8, 4] kv_group 1
      : tensor<2x2x64x16xf32>, tensor<2x2x64x16xf32>, tensor<2x2x64x16xf32> -> tensor<2x2x64x16xf32>
  return %0 : tensor<2x2x64x16xf32>
}

// -----

// Softcap, then ALiBi (offset Lk - Lq whatever the mask), then the mask;
// sinks initialise the running max (the head's sink) and sum (1).
// CHECK-LABEL: func @softcap_alibi_sinks
// CHECK-SAME: %[[SL:[^:]*]]: memref<4xf32>, %[[SK:[^:]*]]: memref<4xf32>
// CHECK: %[[OFF:.*]] = arith.subi
// CHECK: scf.parallel (%{{.*}}, %[[H:.*]], %{{.*}}) =
// CHECK: %[[SINK:.*]] = memref.load %[[SK]][%[[H]]] : memref<4xf32>
// CHECK: linalg.fill ins(%[[SINK]] : f32)
// CHECK: linalg.fill ins(%{{.*}} : f32)
// CHECK: scf.for %[[N0:.*]] =
// CHECK: attn.tile_matmul
// CHECK-NEXT: attn.tile_softcap %{{.*}} cap 3.000000e+01
// CHECK-NEXT: attn.tile_alibi %{{.*}}, %[[SL]][%[[H]]] rows %{{.*}} cols %[[N0]] offset %[[OFF]]
// CHECK: attn.tile_mask
// CHECK: attn.tile_softmax
func.func @softcap_alibi_sinks(%q: tensor<1x4x20x16xf32>, %k: tensor<1x2x50x16xf32>,
                               %sl: tensor<4xf32>, %sk: tensor<4xf32>) -> tensor<1x4x20x16xf32> {
  %0 = attn.attention %q, %k, %k alibi_slopes(%sl : tensor<4xf32>) sinks(%sk : tensor<4xf32>)
      scale 0.25 softcap 30.0 mask causal kv_group 2
      : tensor<1x4x20x16xf32>, tensor<1x2x50x16xf32>, tensor<1x2x50x16xf32> -> tensor<1x4x20x16xf32>
  return %0 : tensor<1x4x20x16xf32>
}
