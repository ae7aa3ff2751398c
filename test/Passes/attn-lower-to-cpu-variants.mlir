// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 -convert-vector-to-llvm -convert-math-to-llvm | FileCheck %s --check-prefix=LLVM

// Soft-capping: tanh is approximated in the IR (no math.tanh, no libm call).
// CHECK-LABEL: func @softcap
// CHECK-NOT: math.tanh
// CHECK-NOT: attn.tile_softcap
// CHECK: arith.mulf
// LLVM-LABEL: func @softcap
// LLVM-NOT: tanh
// LLVM: return
func.func @softcap(%s: memref<8x16xf32>) {
  attn.tile_softcap %s cap 30.0 : memref<8x16xf32>
  return
}

// -----

// ALiBi: -slope * |i + offset - j| with vector abs and fma.
// CHECK-LABEL: func @alibi
// CHECK: %[[SLOPE:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<4xf32>
// CHECK: arith.negf %[[SLOPE]]
// CHECK: math.absf %{{.*}} : vector<8xf32>
// CHECK: math.fma %{{.*}} : vector<8xf32>
// CHECK-NOT: attn.tile_alibi
func.func @alibi(%s: memref<8x16xf32>, %sl: memref<4xf32>, %h: index, %r: index, %c: index, %o: index) {
  attn.tile_alibi %s, %sl[%h] rows %r cols %c offset %o : memref<8x16xf32>, memref<4xf32>
  return
}

// -----

// Bottom-right mask: the offset enters the row's diagonal; window sides
// bound both ends.
// CHECK-LABEL: func @mask_offset_sides
// CHECK-SAME: %[[R:[^:]*]]: index, %[[C:[^:]*]]: index, %[[N:[^:]*]]: index, %[[O:[^:]*]]: index
// CHECK: scf.for %[[I:.*]] =
// CHECK: %[[RI:.*]] = arith.addi %[[R]], %[[I]]
// CHECK: %[[A:.*]] = arith.addi %[[RI]], %[[O]]
// CHECK: arith.subi %[[A]], %[[C]]
// CHECK: arith.select %{{.*}} : vector<8xi1>, vector<8xf32>
// CHECK-NOT: attn.tile_mask
func.func @mask_offset_sides(%s: memref<8x16xf32>, %r: index, %c: index, %n: index, %o: index) {
  attn.tile_mask %s rows %r cols %c valid %n offset %o sliding_window window_sides [3, 2] : memref<8x16xf32>
  return
}
