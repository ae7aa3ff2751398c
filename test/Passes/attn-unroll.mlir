// RUN: attncc-opt %s -split-input-file -attn-unroll=factor=2 | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-unroll=factor=4 | FileCheck %s --check-prefix=FOUR

// 7 iterations by 2: a main loop of doubled bodies and a remainder loop.
// CHECK-LABEL: func @kv
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK: attn.tile_softmax {{.*}}attn.unrolled_copy = 0
// CHECK: attn.tile_softmax {{.*}}attn.unrolled_copy = 1
// CHECK: } {attn.kv_loop}
// CHECK: attn.tile_softmax
// CHECK-NOT: attn.unrolled_copy = 1
// FOUR-LABEL: func @kv
// FOUR-COUNT-4: attn.tile_softmax {{.*}}attn.unrolled_copy
func.func @kv(%s: memref<16x16xf32>, %m: memref<16xf32>, %l: memref<16xf32>, %a: memref<16x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c7 = arith.constant 7 : index
  scf.for %i = %c0 to %c7 step %c1 {
    attn.tile_softmax %s, %m, %l, %a : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  return
}

// -----

// Untagged loops stay rolled.
// CHECK-LABEL: func @untagged
// CHECK: scf.for
// CHECK-COUNT-1: attn.tile_softmax
// CHECK-NOT: attn.unrolled_copy
func.func @untagged(%s: memref<16x16xf32>, %m: memref<16xf32>, %l: memref<16xf32>, %a: memref<16x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c7 = arith.constant 7 : index
  scf.for %i = %c0 to %c7 step %c1 {
    attn.tile_softmax %s, %m, %l, %a : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
  }
  return
}

// -----

// A steady-state loop of a short pipelined KV range has ub < lb (trip count
// "negative"): the bound is clamped so that unrolling keeps it zero-trip.
// CHECK-LABEL: func @short_range
// CHECK-SAME: %[[N:[a-z0-9]+]]: index
// CHECK: %[[UB:.*]] = arith.subi %[[N]]
// CHECK: %[[CLAMPED:.*]] = arith.maxsi %[[UB]], %{{.*}}
// CHECK: arith.divui
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step
func.func @short_range(%s: memref<16x16xf32>, %m: memref<16xf32>, %l: memref<16xf32>, %a: memref<16x16xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c32 = arith.constant 32 : index
  %c96 = arith.constant 96 : index
  %ub = arith.subi %n, %c96 : index
  scf.for %i = %c0 to %ub step %c32 {
    attn.tile_softmax %s, %m, %l, %a : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  return
}

// -----

// Static: 0 to -32 stays empty after unrolling (no body runs).
// CHECK-LABEL: func @static_negative
// CHECK-NOT: attn.tile_softmax
// CHECK: return
func.func @static_negative(%s: memref<16x16xf32>, %m: memref<16xf32>, %l: memref<16xf32>, %a: memref<16x16xf32>) {
  %c0 = arith.constant 0 : index
  %c32 = arith.constant 32 : index
  %cm32 = arith.constant -32 : index
  scf.for %i = %c0 to %cm32 step %c32 {
    attn.tile_softmax %s, %m, %l, %a : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  return
}
