// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=16 kv-in-place=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=16 kv-in-place=true" -canonicalize -cse -attn-pipeline="num-stages=2" -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU

// kv-in-place on a paged cache (decode: the GQA group is the block's rows):
// K rows are gathered untransposed into a [block-n, D] buffer of the cache's
// element type (a row copy each through the block table, no conversion) and
// Q.K^T is the transposed tile_matmul. The next block's rows are prefetched
// first (into L2: locality 1), each row through one block-table lookup for
// K and V, its page and slot a shift and a mask where the page size (read at
// run time) is a power of two, else a division.
// CHECK-LABEL: func @paged
// CHECK-SAME: %[[K:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %{{[^:]*}}: memref<?x7xi32>, %[[BT:[^:]*]]: memref<?x?xi32>
// CHECK: %[[KT:.*]] = memref.alloc() : memref<16x32xf16>
// CHECK: %[[VT:.*]] = memref.alloc() : memref<16x32xf16>
// CHECK: scf.for
// CHECK:   %[[P:.*]] = memref.dim %[[K]], %{{.*}}
// CHECK:   math.cttz
// CHECK:   scf.for
// CHECK:     %[[PS:.*]]:2 = scf.if
// CHECK:       arith.shrui
// CHECK:       arith.andi
// CHECK:     } else {
// CHECK:       arith.divui %{{.*}}, %[[P]]
// CHECK:       arith.remui %{{.*}}, %[[P]]
// CHECK:     }
// CHECK:     memref.load %[[BT]][%{{.*}}, %[[PS]]#0]
// CHECK-NOT:  memref.load %[[BT]]
// CHECK:     memref.prefetch %[[K]][%{{.*}}], read, locality<1>, data
// CHECK:     memref.prefetch %[[V]][%{{.*}}], read, locality<1>, data
// CHECK:   }
// CHECK:   attn.gather_tile %[[K]][%{{.*}}] to %[[KT]] valid
// CHECK:   attn.gather_tile %[[V]][%{{.*}}] to %[[VT]] valid
// CHECK:   attn.tile_matmul %{{.*}}, %[[KT]] transposed into %[[S:.*]] : memref<4x32xf32>, memref<16x32xf16>, memref<4x16xf32>
// CHECK:   attn.tile_softmax %[[S]]
// CHECK:   attn.tile_matmul %[[S]], %[[VT]] into %{{.*}} accumulate
// CHECK: } {attn.kv_loop}

// Lowered for the CPU, no shuffle transpose of K: the first shuffles are the
// shuffle trees that reduce the 4 rows x 3 keys of dot products.
// CPU-LABEL: func @paged
// CPU-NOT: attn.gather_tile
// CPU-NOT: vector.shuffle
// CPU: %[[DOTS:.*]]:12 = scf.for
// CPU: vector.fma
// CPU: vector.shuffle %[[DOTS]]#0, %[[DOTS]]#6 [0, 1, 2, 3, 8, 9, 10, 11] : vector<8xf32>, vector<8xf32>
func.func @paged(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x?x32xf16>, %v: tensor<?x2x?x32xf16>,
                 %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x?x32xf16>, tensor<?x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

// kv-in-place on packed K/V (varlen): no K/V buffers; each KV block is a view
// of the item's key rows (row = kr + n0, min(kn - n0, 16) of them).
// CHECK-LABEL: func @varlen
// CHECK-SAME: (%{{[^:]*}}: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>, %[[K:[^:]*]]: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>
// CHECK: arith.index_cast
// CHECK: arith.index_cast
// CHECK: arith.index_cast
// CHECK: %[[KB:.*]] = arith.index_cast
// CHECK: %[[KR:.*]] = arith.index_cast
// CHECK: %[[KN:.*]] = arith.index_cast
// CHECK-COUNT-5: memref.alloc()
// CHECK-NOT: memref.alloc()
// CHECK: scf.for %[[N0:.*]] =
// CHECK:   %[[VALID:.*]] = arith.subi %[[KN]], %[[N0]]
// CHECK:   %[[ROW:.*]] = arith.addi %[[KR]], %[[N0]]
// CHECK:   %[[ROWS:.*]] = arith.minsi %[[VALID]], %{{.*}}
// CHECK:   %[[KV:.*]] = memref.subview %[[K]][%[[KB]], %{{.*}}, %[[ROW]], 0] [1, 1, %[[ROWS]], 32] [1, 1, 1, 1]
// CHECK:   %[[VV:.*]] = memref.subview %[[V]][%[[KB]], %{{.*}}, %[[ROW]], 0] [1, 1, %[[ROWS]], 32] [1, 1, 1, 1]
// CHECK:   attn.tile_matmul %{{.*}}, %[[KV]] transposed into
// CHECK:   attn.tile_matmul %{{.*}}, %[[VV]] into %{{.*}} accumulate
// CHECK: } {attn.kv_loop}
// CHECK-NOT: attn.copy_tile %[[K]]

// Lowered for the CPU, the dot products prefetch the key rows 16 KiB ahead (128
// rows of 32 f32; rows of one head are a dynamic stride apart) in K itself, the
// row clamped into K (not into the block), one prefetch per 64-byte line, into
// L2 (locality 2).
// CPU-LABEL: func @varlen
// CPU-SAME: (%{{[^:]*}}: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>, %[[K:[^:]*]]: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>
// CPU-NOT: attn.copy_tile
// CPU-NOT: vector.shuffle
// CPU: %[[AHEAD:.*]] = arith.addi %{{.*}}, %c128{{.*}} : index
// CPU-NEXT: %[[ROW:.*]] = arith.addi %{{.*}}, %[[AHEAD]]
// CPU-NEXT: arith.minsi %[[ROW]]
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %{{.*}}, %c0{{.*}}], read, locality<2>, data : memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %{{.*}}, %c16{{.*}}], read, locality<2>, data : memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>
// CPU: vector.reduction <add>, {{.*}} : vector<8xf32> into f32
func.func @varlen(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>,
                  %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf32> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125
      window_sides [-1, 0] kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// -----

// kv-in-place on a paged cache of static page size 8 (a power of two), block-n
// 16: one KV block of 16 keys is 2 page views (keys start page-aligned), each
// found through the block table (page = table[kb, min(row, last key) / 8],
// slot = row % 8, rows = clamp(valid - 8j, 0, 8)) and written to its 8
// columns of one 4x16 score tile: one online-softmax step per block, Q.K^T
// and P.V per page. No K/V buffers, no gather. Each page's product carries
// the same page of the next block as its `prefetch` view.
// CHECK-LABEL: func @paged_static
// CHECK-SAME: %[[K:[^:]*]]: memref<?x2x8x32xbf16, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x2x8x32xbf16, strided<[?, ?, ?, 1]>>, %{{[^:]*}}: memref<?x7xi32>, %[[BT:[^:]*]]: memref<?x?xi32>
// CHECK: %[[S:.*]] = memref.alloc() : memref<4x16xf32>
// CHECK-NOT: memref.alloc() : memref<16x32xf32>
// CHECK: scf.for %[[N0:.*]] = %{{.*}} to %{{.*}} step %c16
// CHECK:   %[[ROW:.*]] = arith.addi %{{.*}}, %[[N0]]
// CHECK:   %[[LAST:.*]] = arith.addi
// The table entries of the block's pages and of the next block's (rows
// 16 + 8j on, clamped to the last key: the prefetch of part j) first, once
// for every head.
// CHECK:   %[[R0:.*]] = arith.minsi %[[ROW]], %[[LAST]]
// CHECK:   %[[P0:.*]] = arith.divui %[[R0]], %{{.*}}
// CHECK:   %[[PG0:.*]] = memref.load %[[BT]][%{{.*}}, %[[P0]]]
// CHECK:   %[[PAGE0:.*]] = arith.index_cast %[[PG0]]
// CHECK:   %[[SLOT0:.*]] = arith.remui %[[ROW]], %{{.*}}
// CHECK:   %[[N0ROWS:.*]] = arith.maxsi %c0, %{{.*}}
// CHECK:   %[[N2:.*]] = arith.addi %[[ROW]], %{{c16[_0-9]*}}
// CHECK:   arith.minsi %[[N2]], %[[LAST]]
// CHECK:   memref.load %[[BT]]
// Page 1 of the block: 8 rows on, its table entry clamped to the last key's.
// CHECK:   %[[ROW1:.*]] = arith.addi %[[ROW]], %c8
// CHECK:   %[[R1:.*]] = arith.minsi %[[ROW1]], %[[LAST]]
// CHECK:   memref.load %[[BT]][%{{.*}}, %{{.*}}]
// CHECK:   %[[N3:.*]] = arith.addi %[[ROW]], %{{c24[_0-9]*}}
// CHECK:   arith.minsi %[[N3]], %[[LAST]]
// CHECK:   memref.load %[[BT]]
// CHECK:   %[[S0:.*]] = memref.subview %[[S]][%{{.*}}, %{{.*}}] [4, 8] [1, 1]
// CHECK:   %[[K0:.*]] = memref.subview %[[K]][%[[PAGE0]], %{{.*}}, %[[SLOT0]], 0] [1, 1, %[[N0ROWS]], 32] [1, 1, 1, 1]
// CHECK:   %[[PK0:.*]] = memref.subview %[[K]]
// CHECK:   attn.tile_matmul %{{.*}}, %[[K0]] transposed into %[[S0]] prefetch %[[PK0]]
// CHECK:   %[[S1:.*]] = memref.subview %[[S]][%{{.*}}, %c8{{.*}}] [4, 8] [1, 1]
// CHECK:   %[[K1:.*]] = memref.subview %[[K]]
// CHECK:   %[[PK1:.*]] = memref.subview %[[K]]
// CHECK:   attn.tile_matmul %{{.*}}, %[[K1]] transposed into %[[S1]] prefetch %[[PK1]]
// CHECK:   attn.tile_softmax %[[S]]
// CHECK:   %[[P0S:.*]] = memref.subview %[[S]][%{{.*}}, %{{.*}}] [4, 8] [1, 1]
// CHECK:   %[[V0:.*]] = memref.subview %[[V]][%[[PAGE0]], %{{.*}}, %[[SLOT0]], 0] [1, 1, %[[N0ROWS]], 32] [1, 1, 1, 1]
// CHECK:   %[[PV0:.*]] = memref.subview %[[V]]
// CHECK:   attn.tile_matmul %[[P0S]], %[[V0]] into %{{.*}} accumulate prefetch %[[PV0]]
// CHECK:   %[[P1S:.*]] = memref.subview %[[S]][%{{.*}}, %c8{{.*}}] [4, 8] [1, 1]
// CHECK:   %[[V1:.*]] = memref.subview %[[V]]
// CHECK:   %[[PV1:.*]] = memref.subview %[[V]]
// CHECK:   attn.tile_matmul %[[P1S]], %[[V1]] into %{{.*}} accumulate prefetch %[[PV1]]
// CHECK-NOT: memref.prefetch
// CHECK: } {attn.kv_loop}
// CHECK-NOT: attn.gather_tile

// Lowered for the CPU, the products prefetch their prefetch view row by row
// (a row of 32 bf16 is one 64-byte line, into L1), nothing else.
// CPU-LABEL: func @paged_static
// CPU-NOT: attn.gather_tile
// CPU-NOT: attn.tile_
// CPU-NOT: vector.shuffle
// CPU: memref.prefetch %{{.*}}, read, locality<2>, data : memref<?x32xbf16, strided<[?, 1], offset: ?>>
// CPU-NOT: memref.prefetch %{{.*}} : memref<?x2x8x32xbf16
// CPU: return
func.func @paged_static(%q: tensor<1x4x?x32xbf16>, %k: tensor<?x2x8x32xbf16>, %v: tensor<?x2x8x32xbf16>,
                        %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xbf16>, tensor<?x2x8x32xbf16>, tensor<?x2x8x32xbf16> -> tensor<1x4x?x32xbf16>
  return %o : tensor<1x4x?x32xbf16>
}

// -----

// Pages larger than a block (64 keys, 16-key blocks): a block is a view of
// one page, and its products prefetch the next block (further on in the
// page, or the next page's first block) through the table.
// CHECK-LABEL: func @paged_large
// CHECK: scf.for %[[N0:.*]] = {{.*}} {
// CHECK:   %[[ROW:.*]] = arith.addi %{{.*}}, %[[N0]] : index
// CHECK:   %[[NEXT:.*]] = arith.addi %[[ROW]], %{{c16[_0-9]*}} : index
// CHECK:   %[[AT:.*]] = arith.minsi %[[NEXT]]
// CHECK:   %[[PG:.*]] = arith.divui %[[AT]], %{{c64[_0-9]*}} : index
// CHECK:   memref.load %{{.*}}[%{{.*}}, %[[PG]]]
// CHECK:   %[[KV:.*]] = memref.subview
// CHECK:   %[[PF:.*]] = memref.subview
// CHECK:   attn.tile_matmul %{{.*}}, %[[KV]] transposed into %{{.*}} prefetch %[[PF]]
// CHECK-NOT: memref.prefetch
// CHECK: } {attn.kv_loop}
func.func @paged_large(%q: tensor<1x4x?x32xbf16>, %k: tensor<?x2x64x32xbf16>, %v: tensor<?x2x64x32xbf16>,
                       %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xbf16>, tensor<?x2x64x32xbf16>, tensor<?x2x64x32xbf16> -> tensor<1x4x?x32xbf16>
  return %o : tensor<1x4x?x32xbf16>
}
