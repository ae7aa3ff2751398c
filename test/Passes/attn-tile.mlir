// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=32 block-n=16" | FileCheck %s

// Causal, sequence length 100 (not a multiple of the blocks), GQA 2:1.
// CHECK-LABEL: func @causal_gqa
// CHECK-SAME: (%[[Q:.*]]: memref<1x4x100x16xf16>, %[[K:.*]]: memref<1x2x100x16xf16>, %[[V:.*]]: memref<1x2x100x16xf16>, %[[OUT:.*]]: memref<1x4x100x16xf16>)
// CHECK-NOT: -> tensor
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG: %[[C16:.*]] = arith.constant 16 : index
// CHECK-DAG: %[[C32:.*]] = arith.constant 32 : index
// CHECK-DAG: %[[L:.*]] = memref.dim %[[K]], %[[C2]]
// CHECK: scf.parallel (%[[B:.*]], %[[H:.*]], %[[MB:.*]]) =
// CHECK: %[[HKV:.*]] = arith.divui %[[H]], %[[C2]]
// CHECK: %[[M0:.*]] = arith.muli %[[MB]], %[[C32]]
// CHECK: %[[QT:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK: %[[S:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<32x16xf32>
// CHECK: %[[MX:.*]] = memref.alloc() : memref<32xf32>
// CHECK: %[[SM:.*]] = memref.alloc() : memref<32xf32>
// CHECK: %[[KT:.*]] = memref.alloc() : memref<16x16xf32>
// CHECK: %[[VT:.*]] = memref.alloc() : memref<16x16xf32>
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[ACC]]
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[MX]]
// CHECK: attn.copy_tile %[[Q]][%[[B]], %[[H]], %[[M0]]] to %[[QT]] scale 2.500000e-01 valid
// Causal: the KV loop stops at the end of the query block.
// CHECK: %[[END:.*]] = arith.addi %[[M0]], %[[C32]]
// CHECK: %[[HI:.*]] = arith.minsi %[[L]], %[[END]]
// CHECK: scf.for %[[N0:.*]] = %[[C0]] to %[[HI]] step %[[C16]] {
// CHECK:   attn.copy_tile %[[K]][%[[B]], %[[HKV]], %[[N0]]] to %[[KT]] transposed valid
// CHECK:   attn.copy_tile %[[V]][%[[B]], %[[HKV]], %[[N0]]] to %[[VT]] valid
// CHECK:   attn.tile_matmul %[[QT]], %[[KT]] into %[[S]] :
// Element masks only on boundary blocks.
// CHECK:   scf.if
// CHECK-NEXT: attn.tile_mask %[[S]] rows %[[M0]] cols %[[N0]] valid %{{.*}} causal
// CHECK:   attn.tile_softmax %[[S]], %[[MX]], %[[SM]], %[[ACC]]
// CHECK:   attn.tile_matmul %[[S]], %[[VT]] into %[[ACC]] accumulate
// CHECK: } {attn.kv_loop}
// CHECK: attn.tile_store %[[ACC]], %[[SM]] to %[[OUT]][%[[B]], %[[H]], %[[M0]]] valid
// CHECK: memref.dealloc %[[QT]]
// CHECK: return
func.func @causal_gqa(%q: tensor<1x4x100x16xf16>, %k: tensor<1x2x100x16xf16>, %v: tensor<1x2x100x16xf16>) -> tensor<1x4x100x16xf16> {
  %0 = attn.attention %q, %k, %v scale 0.25 mask causal kv_group 2
      : tensor<1x4x100x16xf16>, tensor<1x2x100x16xf16>, tensor<1x2x100x16xf16> -> tensor<1x4x100x16xf16>
  return %0 : tensor<1x4x100x16xf16>
}

// -----

// Sliding window: the loop starts at the first block the window reaches.
// CHECK-LABEL: func @window
// CHECK: %[[FIRST:.*]] = arith.maxsi
// CHECK: %[[BLK:.*]] = arith.divui %[[FIRST]], %{{.*}}
// CHECK: %[[LO:.*]] = arith.muli %[[BLK]], %{{.*}}
// CHECK: scf.for %{{.*}} = %[[LO]] to
// CHECK: attn.tile_mask {{.*}} sliding_window window 8
func.func @window(%q: tensor<2x2x64x16xf32>, %k: tensor<2x2x64x16xf32>) -> tensor<2x2x64x16xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask sliding_window window 8 kv_group 1
      : tensor<2x2x64x16xf32>, tensor<2x2x64x16xf32>, tensor<2x2x64x16xf32> -> tensor<2x2x64x16xf32>
  return %0 : tensor<2x2x64x16xf32>
}

// -----

// Bias (scaled by attn-fuse) is added on every block; dynamic lengths.
// CHECK-LABEL: func @bias_dynamic
// CHECK-SAME: %[[BIAS:[a-z0-9]+]]: memref<?x?xf32>
// CHECK: scf.for
// CHECK: attn.tile_bias %{{.*}}, %[[BIAS]][{{.*}}] valid %{{.*}}, %{{.*}} scale 5.000000e-01
// CHECK: attn.tile_mask {{.*}} none
func.func @bias_dynamic(%q: tensor<1x2x?x16xf32>, %k: tensor<1x2x?x16xf32>, %b: tensor<?x?xf32>) -> tensor<1x2x?x16xf32> {
  %sb = attn.scale %b by 0.5 : tensor<?x?xf32>
  %0 = attn.attention %q, %k, %k bias(%sb : tensor<?x?xf32>) scale 0.25 mask bias kv_group 1
      : tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32> -> tensor<1x2x?x16xf32>
  return %0 : tensor<1x2x?x16xf32>
}

// -----

// Functions without attn ops are left alone.
// CHECK-LABEL: func @other
// CHECK-NEXT: arith.addf
func.func @other(%a: f32) -> f32 {
  %0 = arith.addf %a, %a : f32
  return %0 : f32
}
