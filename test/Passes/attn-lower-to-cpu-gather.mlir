// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s

// gather_tile, transposed (K): each row's page comes from the block table
// (row / page_size, the page size read from the cache at run time) and its
// slot is row % page_size: a shift and a mask when the page size is a power
// of two (decided once, before the loop), else a division; rows are then
// moved as 8x8 register blocks.
// CHECK-LABEL: func @gather_k
// CHECK-SAME: (%[[C:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %[[BT:[^:]*]]: memref<?x?xi32>
// CHECK-NOT: attn.gather_tile
// CHECK: %[[P:.*]] = memref.dim %[[C]], %{{.*}} : memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>
// CHECK: %[[MASK:.*]] = arith.subi %[[P]], %{{.*}} : index
// CHECK: %[[LOW:.*]] = arith.andi %[[P]], %[[MASK]] : index
// CHECK: %[[POW2:.*]] = arith.cmpi eq, %[[LOW]], %{{.*}} : index
// CHECK: %[[P64:.*]] = arith.index_castui %[[P]] : index to i64
// CHECK: %[[TZ:.*]] = math.cttz %[[P64]] : i64
// CHECK: %[[SHIFT:.*]] = arith.index_castui %[[TZ]] : i64 to index
// CHECK: scf.for
// CHECK: %[[TS:.*]]:2 = scf.if %[[POW2]] -> (index, index) {
// CHECK:   arith.shrui %[[AT:.*]], %[[SHIFT]] : index
// CHECK:   arith.andi %[[AT]], %[[MASK]] : index
// CHECK: } else {
// CHECK:   arith.divui %[[AT]], %[[P]] : index
// CHECK:   arith.remui %[[AT]], %[[P]] : index
// CHECK: }
// CHECK: %[[PG:.*]] = memref.load %[[BT]][%{{.*}}, %[[TS]]#0] : memref<?x?xi32>
// CHECK: arith.index_cast %[[PG]] : i32 to index
// CHECK: vector.shuffle
// CHECK: arith.extf %{{.*}} : vector<8xf16> to vector<8xf32>
func.func @gather_k(%c: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %bt: memref<?x?xi32>,
                    %buf: memref<32x16xf32>, %s: index, %h: index, %r: index, %n: index) {
  attn.gather_tile %c[%bt[%s], %h, %r] to %buf transposed valid %n
      : memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<32x16xf32>
  return
}

// -----

// gather_tile (V): one table load per row, vector loads of the row.
// CHECK-LABEL: func @gather_v
// CHECK-NOT: attn.gather_tile
// CHECK: scf.for
// CHECK: scf.if
// CHECK: arith.shrui
// CHECK: arith.andi
// CHECK: } else {
// CHECK: arith.divui
// CHECK: arith.remui
// CHECK: memref.load %{{.*}} : memref<?x?xi32>
// CHECK: vector.load %{{.*}} : memref<?x2x?x32xbf16, strided<[?, ?, ?, 1]>>, vector<8xbf16>
func.func @gather_v(%c: memref<?x2x?x32xbf16, strided<[?, ?, ?, 1]>>, %bt: memref<?x?xi32>,
                    %buf: memref<16x32xf32>, %s: index, %h: index, %r: index, %n: index) {
  attn.gather_tile %c[%bt[%s], %h, %r] to %buf valid %n
      : memref<?x2x?x32xbf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<16x32xf32>
  return
}
