// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s

// The decode form's dot products (Q K^T with K's rows where they are) on the
// AVX2 budget: 12 accumulators are 4 rows x 3 keys. They reduce as two
// shuffle trees: 4 x 2 products (3 rounds on 8 lanes, lane 2r + j = row r,
// key j), stored as 2 scores per row, and 4 x 1 (2 rounds, then a halving
// to 4 lanes), stored one score per row. The fifth row (M = 5, not a
// multiple of 4) is a 1 x 3 block: a tree of 2 and one lane reduction.
// CHECK-LABEL: func.func @dots_4x3
// CHECK: %[[ACC:.*]]:12 = scf.for %{{.*}} = %{{.*}} to %c64 step %c8
// CHECK-NOT: vector.reduction
// CHECK: vector.shuffle %[[ACC]]#0, %[[ACC]]#6 [0, 1, 2, 3, 8, 9, 10, 11]
// CHECK: vector.shuffle {{.*}} [0, 1, 8, 9, 4, 5, 12, 13]
// CHECK: %[[LO:.*]] = vector.shuffle {{.*}} [0, 8, 2, 10, 4, 12, 6, 14]
// CHECK: %[[HI:.*]] = vector.shuffle {{.*}} [1, 9, 3, 11, 5, 13, 7, 15]
// CHECK: %[[PAIRS:.*]] = arith.addf %[[LO]], %[[HI]] fastmath<reassoc> : vector<8xf32>
// CHECK: %[[ROW0:.*]] = vector.extract_strided_slice %[[PAIRS]] {offsets = [0], sizes = [2], strides = [1]}
// CHECK: vector.store %[[ROW0]], %arg2[%{{.*}}, %[[J0:.*]]] : memref<5x32xf32>, vector<2xf32>
// CHECK: %[[ROW3:.*]] = vector.extract_strided_slice %[[PAIRS]] {offsets = [6], sizes = [2], strides = [1]}
// CHECK: vector.store %[[ROW3]], %arg2[%{{.*}}, %[[J0]]] : memref<5x32xf32>, vector<2xf32>
// CHECK: vector.shuffle %[[ACC]]#2, %[[ACC]]#8 [0, 1, 8, 9, 4, 5, 12, 13]
// CHECK: vector.shuffle {{.*}} [1, 9, 3, 11, 5, 13, 7, 15]
// CHECK: %[[HALF:.*]] = arith.addf {{.*}} fastmath<reassoc> : vector<4xf32>
// CHECK: %[[S0:.*]] = vector.extract %[[HALF]][0] : f32 from vector<4xf32>
// CHECK: memref.store %[[S0]], %arg2[%{{.*}}, %[[J2:.*]]] : memref<5x32xf32>
// CHECK: %[[S3:.*]] = vector.extract %[[HALF]][3] : f32 from vector<4xf32>
// CHECK: memref.store %[[S3]], %arg2[%{{.*}}, %[[J2]]] : memref<5x32xf32>
// CHECK-NOT: vector.reduction
// CHECK: %[[ONE:.*]]:3 = scf.for %{{.*}} = %{{.*}} to %c64 step %c8
// CHECK: vector.shuffle %[[ONE]]#0, %[[ONE]]#1 [0, 8, 2, 10, 4, 12, 6, 14]
// CHECK: vector.store {{.*}} : memref<5x32xf32>, vector<2xf32>
// CHECK: vector.reduction <add>, %[[ONE]]#2 fastmath<reassoc> : vector<8xf32> into f32
func.func @dots_4x3(%a: memref<5x64xf32>, %b: memref<?x64xf32>, %c: memref<5x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c : memref<5x64xf32>, memref<?x64xf32>, memref<5x32xf32>
  return
}

// -----

// Accumulating into c: each row's 2-score slice is added to c's.
// CHECK-LABEL: func.func @dots_4x3_accumulate
// CHECK: %[[ROW0:.*]] = vector.extract_strided_slice %{{.*}} {offsets = [0], sizes = [2], strides = [1]}
// CHECK: %[[OLD:.*]] = vector.load %arg2[%{{.*}}, %{{.*}}] : memref<4x32xf32>, vector<2xf32>
// CHECK: %[[NEW:.*]] = arith.addf %[[ROW0]], %[[OLD]] : vector<2xf32>
// CHECK: vector.store %[[NEW]], %arg2
// CHECK: %[[S0:.*]] = vector.extract %{{.*}}[0] : f32 from vector<4xf32>
// CHECK: %[[C0:.*]] = memref.load %arg2
// CHECK: arith.addf %[[S0]], %[[C0]] : f32
func.func @dots_4x3_accumulate(%a: memref<4x64xf32>, %b: memref<?x64xf32>, %c: memref<4x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c accumulate : memref<4x64xf32>, memref<?x64xf32>, memref<4x32xf32>
  return
}

// -----

// A head dim that is not a multiple of the lanes (20 = 8 + 8 + 4): no trees,
// each product reduced on its own, its 4-lane tail too.
// CHECK-LABEL: func.func @dots_head_dim_20
// CHECK-NOT: vector.shuffle
// CHECK: vector.reduction <add>, {{.*}} : vector<8xf32> into f32
// CHECK: vector.reduction <add>, {{.*}} : vector<4xf32> into f32
func.func @dots_head_dim_20(%a: memref<4x20xf32>, %b: memref<?x20xf32>, %c: memref<4x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c : memref<4x20xf32>, memref<?x20xf32>, memref<4x32xf32>
  return
}

// -----

// A tile of 3 rows (query tiles have a power of two: block_m is one; the op
// itself takes any): no trees, one lane reduction per dot product.
// CHECK-LABEL: func.func @dots_3_rows
// CHECK: %[[ACC:.*]]:12 = scf.for %{{.*}} = %{{.*}} to %c64 step %c8
// CHECK-NOT: vector.shuffle
// CHECK: vector.reduction <add>, %[[ACC]]#0 fastmath<reassoc> : vector<8xf32> into f32
// CHECK: vector.reduction <add>, %[[ACC]]#11 fastmath<reassoc> : vector<8xf32> into f32
func.func @dots_3_rows(%a: memref<3x64xf32>, %b: memref<?x64xf32>, %c: memref<3x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c : memref<3x64xf32>, memref<?x64xf32>, memref<3x32xf32>
  return
}
