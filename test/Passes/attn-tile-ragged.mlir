// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=16" | FileCheck %s

// Paged, causal (window_sides [-1, 0]), GQA 2: a grid over (work item, head);
// each work item's seven fields come from the work table; K/V are gathered
// through the block table; masks use the item's query position.
// CHECK-LABEL: func @paged
// CHECK-SAME: (%[[Q:[^:]*]]: memref<1x4x?x32xf16, strided<[?, ?, ?, 1]>>, %[[K:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %[[W:[^:]*]]: memref<?x7xi32>, %[[BT:[^:]*]]: memref<?x?xi32>, %[[OUT:[^:]*]]: memref<1x4x?x32xf16, strided<[?, ?, ?, 1]>>) attributes {attn.ragged}
// CHECK: %[[NW:.*]] = memref.dim %[[W]], %{{.*}} : memref<?x7xi32>
// CHECK: scf.parallel (%[[I:.*]], %[[H:.*]]) = (%{{.*}}, %{{.*}}) to (%[[NW]], %{{.*}})
// CHECK: memref.load %[[W]][%[[I]], %{{.*}}] : memref<?x7xi32>
// CHECK: %[[QB:.*]] = arith.index_cast
// CHECK: %[[QR:.*]] = arith.index_cast
// CHECK: %[[QN:.*]] = arith.index_cast
// CHECK: %[[KB:.*]] = arith.index_cast
// CHECK: %[[KR:.*]] = arith.index_cast
// CHECK: %[[KN:.*]] = arith.index_cast
// CHECK: %[[POS:.*]] = arith.index_cast
// CHECK: %[[HKV:.*]] = arith.divui %[[H]], %{{.*}} : index
// CHECK: attn.copy_tile %[[Q]][%[[QB]], %[[H]], %[[QR]]] to %{{.*}} scale 1.250000e-01 valid %[[QN]]
// Causal: the KV loop stops at the block's last query position.
// CHECK: %[[END:.*]] = arith.addi %[[POS]], %{{.*}} : index
// CHECK: %[[HI:.*]] = arith.minsi %[[KN]], %[[END]]
// CHECK: %[[HI2:.*]] = arith.maxsi %[[HI]], %{{.*}}
// CHECK: scf.for %[[N0:.*]] = %{{.*}} to %[[HI2]] step %{{.*}} {
// CHECK:   %[[VALID:.*]] = arith.subi %[[KN]], %[[N0]]
// CHECK:   %[[ROW:.*]] = arith.addi %[[KR]], %[[N0]]
// CHECK:   attn.gather_tile %[[K]][%[[BT]][%[[KB]]], %[[HKV]], %[[ROW]]] to %{{.*}} transposed valid %[[VALID]]
// CHECK:   attn.gather_tile %[[V]][%[[BT]][%[[KB]]], %[[HKV]], %[[ROW]]] to %{{.*}} valid %[[VALID]]
// CHECK:   scf.if
// CHECK:     attn.tile_mask %{{.*}} rows %[[POS]] cols %[[N0]] valid %[[VALID]] sliding_window window_sides [-1, 0]
// CHECK:   attn.tile_softmax
// CHECK: } {attn.kv_loop}
// CHECK: attn.tile_store %{{.*}}, %{{.*}} to %[[OUT]][%[[QB]], %[[H]], %[[QR]]] valid %[[QN]]
// CHECK: } {attn.grid}
func.func @paged(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x?x32xf16>, %v: tensor<?x2x?x32xf16>,
                 %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 window_sides [-1, 0] kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x?x32xf16>, tensor<?x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

// Varlen (packed K/V), ALiBi and sinks, no mask: plain copy_tile of the
// item's key rows, ALiBi at the item's position with offset 0, the running
// max starting at the head's sink; the tail mask only (kind none).
// CHECK-LABEL: func @varlen
// CHECK-SAME: %[[SL:[^:]*]]: memref<4xf32>, %[[SK:[^:]*]]: memref<4xf32>, %[[OUT:[^:]*]]: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>)
// CHECK: scf.parallel (%{{.*}}, %[[H:.*]]) =
// CHECK: %[[SINK:.*]] = memref.load %[[SK]][%[[H]]] : memref<4xf32>
// CHECK: linalg.fill ins(%[[SINK]] : f32)
// CHECK: scf.for
// CHECK:   attn.copy_tile %{{.*}} to %{{.*}} transposed valid
// CHECK:   attn.copy_tile
// CHECK:   attn.tile_alibi %{{.*}}, %[[SL]][%[[H]]] rows
// CHECK:   attn.tile_mask %{{.*}} none
// CHECK-NOT: attn.gather_tile
func.func @varlen(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>,
                  %w: tensor<?x7xi32>, %s: tensor<4xf32>, %t: tensor<4xf32>) -> tensor<1x4x?x32xf32> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) alibi_slopes(%s : tensor<4xf32>)
      sinks(%t : tensor<4xf32>) scale 0.125 kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}
