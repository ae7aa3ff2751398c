// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=16 skip-masked-rows=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=16" -canonicalize -cse | FileCheck %s --check-prefix=OFF
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=16 skip-masked-rows=true" -canonicalize -cse -attn-pipeline="num-stages=2" -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4" | FileCheck %s --check-prefix=CPU

// Causal: each KV block's score, softmax and P.V ops run on views of the row
// tiles from row r0 = (clamp(n0 - m0, 0, 48) / 16) * 16, the first row (in
// multiples of 16) that sees a key of the block; the mask gets that row's
// query index.
// CHECK-LABEL: func @causal
// CHECK-DAG: %[[C16:.*]] = arith.constant 16 : index
// CHECK-DAG: %[[C48:.*]] = arith.constant 48 : index
// CHECK-DAG: %[[C64:.*]] = arith.constant 64 : index
// CHECK: %[[M0:.*]] = arith.muli %{{.*}}, %[[C64]]
// CHECK: %[[Q:.*]] = memref.alloc() : memref<64x32xf32>
// CHECK: %[[S:.*]] = memref.alloc() : memref<64x16xf32>
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<64x32xf32>
// CHECK: %[[MX:.*]] = memref.alloc() : memref<64xf32>
// CHECK: %[[SM:.*]] = memref.alloc() : memref<64xf32>
// CHECK: scf.for %[[N0:.*]] = %{{.*}} to %{{.*}} step %[[C16]]
// CHECK: %[[D:.*]] = arith.subi %[[N0]], %[[M0]]
// CHECK: %[[LO:.*]] = arith.maxsi %[[D]], %{{.*}}
// CHECK: %[[HI:.*]] = arith.minsi %[[LO]], %[[C48]]
// CHECK: %[[G:.*]] = arith.divui %[[HI]], %[[C16]]
// CHECK: %[[R0:.*]] = arith.muli %[[G]], %[[C16]]
// CHECK: %[[ROWS:.*]] = arith.subi %[[C64]], %[[R0]]
// CHECK: %[[QV:.*]] = memref.subview %[[Q]][%[[R0]], 0] [%[[ROWS]], 32] [1, 1]
// CHECK: %[[SV:.*]] = memref.subview %[[S]][%[[R0]], 0] [%[[ROWS]], 16] [1, 1]
// CHECK: %[[AV:.*]] = memref.subview %[[ACC]][%[[R0]], 0] [%[[ROWS]], 32] [1, 1]
// CHECK: %[[MV:.*]] = memref.subview %[[MX]][%[[R0]]] [%[[ROWS]]] [1]
// CHECK: %[[SMV:.*]] = memref.subview %[[SM]][%[[R0]]] [%[[ROWS]]] [1]
// CHECK: %[[ROW:.*]] = arith.addi %[[M0]], %[[R0]]
// CHECK: attn.tile_matmul %[[QV]], %{{.*}} into %[[SV]] :
// CHECK: attn.tile_mask %[[SV]] rows %[[ROW]] cols %[[N0]]
// CHECK: attn.tile_softmax %[[SV]], %[[MV]], %[[SMV]], %[[AV]]
// CHECK: attn.tile_matmul %[[SV]], %{{.*}} into %[[AV]] accumulate
// CHECK: attn.kv_loop
// OFF-LABEL: func @causal
// OFF-NOT: memref.subview
// A dynamic row count: the matmul's register blocks run up to it, rows past
// it clamped to the last row (arith.minsi), no one-row tail loop.
// CPU-LABEL: func @causal
// CPU-NOT: attn.tile_
// CPU: arith.minsi
// CPU: vector.fma
func.func @causal(%q: tensor<1x2x128x32xf32>, %k: tensor<1x2x128x32xf32>) -> tensor<1x2x128x32xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask causal kv_group 1
      : tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32> -> tensor<1x2x128x32xf32>
  return %0 : tensor<1x2x128x32xf32>
}

// -----

// A window's right side (left 8, right 4): r0 from n0 - m0 - 4.
// CHECK-LABEL: func @window_right
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : index
// CHECK: scf.for %[[N0:.*]] =
// CHECK: %[[E:.*]] = arith.addi %{{.*}}, %[[C4]]
// CHECK: arith.subi %[[N0]], %[[E]]
// CHECK: memref.subview
// CHECK: attn.kv_loop
func.func @window_right(%q: tensor<1x2x128x32xf32>, %k: tensor<1x2x128x32xf32>) -> tensor<1x2x128x32xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask sliding_window window_sides [8, 4] kv_group 1
      : tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32> -> tensor<1x2x128x32xf32>
  return %0 : tensor<1x2x128x32xf32>
}

// -----

// Without a right side (no mask) nothing is skipped.
// CHECK-LABEL: func @unmasked
// CHECK-NOT: memref.subview
// CHECK: attn.kv_loop
func.func @unmasked(%q: tensor<1x2x128x32xf32>, %k: tensor<1x2x128x32xf32>) -> tensor<1x2x128x32xf32> {
  %0 = attn.attention %q, %k, %k scale 0.25 mask none kv_group 1
      : tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32> -> tensor<1x2x128x32xf32>
  return %0 : tensor<1x2x128x32xf32>
}

// -----

// ALiBi takes the block's first row: its rows are not skipped.
// CHECK-LABEL: func @alibi
// CHECK-NOT: memref.subview
// CHECK: attn.kv_loop
func.func @alibi(%q: tensor<1x2x128x32xf32>, %k: tensor<1x2x128x32xf32>, %sl: tensor<2xf32>) -> tensor<1x2x128x32xf32> {
  %0 = attn.attention %q, %k, %k alibi_slopes(%sl : tensor<2xf32>) scale 0.25 mask causal kv_group 1
      : tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32>, tensor<1x2x128x32xf32> -> tensor<1x2x128x32xf32>
  return %0 : tensor<1x2x128x32xf32>
}

// -----

// attn.ragged_attention (paged, causal): the same views, from the work item's
// diagonal position `pos` (work column 6); the block's K/V are gathered.
// CHECK-LABEL: func @ragged_paged
// CHECK-DAG: %[[C6:.*]] = arith.constant 6 : index
// CHECK: %[[P32:.*]] = memref.load %{{.*}}[%{{.*}}, %[[C6]]] : memref<?x7xi32>
// CHECK: %[[POS:.*]] = arith.index_cast %[[P32]]
// CHECK: scf.for %[[N0:.*]] =
// CHECK: arith.subi %[[N0]], %[[POS]]
// CHECK: %[[SV:.*]] = memref.subview %{{.*}} : memref<64x16xf32> to memref<?x16xf32
// CHECK: attn.gather_tile
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} into %[[SV]] :
// CHECK: attn.kv_loop
func.func @ragged_paged(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x?x32xf16>, %v: tensor<?x2x?x32xf16>,
                        %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 window_sides [-1, 0] kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x?x32xf16>, tensor<?x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}
