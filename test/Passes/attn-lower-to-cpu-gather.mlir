// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s

// gather_tile, transposed (K): each row's page comes from the block table
// (row / page_size, the page size read from the cache at run time) and its
// slot is row % page_size; rows are then moved as 8x8 register blocks.
// CHECK-LABEL: func @gather_k
// CHECK-SAME: (%[[C:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %[[BT:[^:]*]]: memref<?x?xi32>
// CHECK-NOT: attn.gather_tile
// CHECK: %[[P:.*]] = memref.dim %[[C]], %{{.*}} : memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>
// CHECK: scf.for
// CHECK: %[[T:.*]] = arith.divui %{{.*}}, %[[P]] : index
// CHECK: %[[SLOT:.*]] = arith.remui %{{.*}}, %[[P]] : index
// CHECK: %[[PG:.*]] = memref.load %[[BT]][%{{.*}}, %[[T]]] : memref<?x?xi32>
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
