// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=16 kv-in-place=true heads-inner=true lse=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=16 kv-in-place=true heads-inner=true lse=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU

// heads-inner on a paged cache of static page size 8 (block-n 16: two page
// views per KV block): one grid point per work item (the head dimension of
// the grid is gone), the row tiles of both heads side by side ([2, 4, ...]),
// Q copied per head before the KV loop; in the KV loop the block's table
// entries (and the next block's, for the prefetch views) are read once, then
// a loop over the heads runs each head's products, mask and softmax on its
// views of the tiles (prefetching the next head's rows); the stores follow the
// KV loop, one per head.
// CHECK-LABEL: func @paged_static
// CHECK-SAME: %[[Q:[^:]*]]: memref<1x2x?x32xbf16, strided<[?, ?, ?, 1]>>, %[[K:[^:]*]]: memref<?x2x8x32xbf16, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x2x8x32xbf16, strided<[?, ?, ?, 1]>>, %{{[^:]*}}: memref<?x7xi32>, %[[BT:[^:]*]]: memref<?x?xi32>, %[[OUT:[^:]*]]: memref
// CHECK: scf.parallel (%[[W:[^)]*]]) = (%c0) to (%{{.*}}) step (%c1) {
// CHECK-DAG: %[[QT:.*]] = memref.alloc() : memref<2x4x32xf32>
// CHECK-DAG: %[[ACC:.*]] = memref.alloc() : memref<2x4x32xf32>
// CHECK-DAG: %[[MX:.*]] = memref.alloc() : memref<2x4xf32>
// CHECK-DAG: %[[SM:.*]] = memref.alloc() : memref<2x4xf32>
// CHECK-DAG: %[[S:.*]] = memref.alloc() : memref<4x16xf32>
// CHECK: scf.for %[[H0:.*]] = %c0 to %c2 step %c1 {
// CHECK:   %[[QH:.*]] = memref.subview %[[QT]][%[[H0]], 0, 0] [1, 4, 32] [1, 1, 1]
// CHECK:   attn.copy_tile %[[Q]][%{{.*}}, %[[H0]], %{{.*}}] to %[[QH]] scale
// CHECK: }
// CHECK: scf.for %[[N0:.*]] = %c0 to %{{.*}} step %c16 {
// CHECK:   %[[PG0:.*]] = memref.load %[[BT]]
// CHECK:   %[[PAGE0:.*]] = arith.index_cast %[[PG0]]
// CHECK:   %[[NPG0:.*]] = memref.load %[[BT]]
// CHECK:   %[[NPAGE0:.*]] = arith.index_cast %[[NPG0]]
// CHECK:   memref.load %[[BT]]
// CHECK:   memref.load %[[BT]]
// CHECK-NOT: memref.load %[[BT]]
// CHECK:   scf.for %[[H:.*]] = %c0 to %c2 step %c1 {
// CHECK:     %[[QV:.*]] = memref.subview %[[QT]][%[[H]], 0, 0] [1, 4, 32]
// CHECK:     %[[ACCV:.*]] = memref.subview %[[ACC]][%[[H]], 0, 0] [1, 4, 32]
// CHECK:     %[[MXV:.*]] = memref.subview %[[MX]][%[[H]], 0] [1, 4]
// CHECK:     %[[SMV:.*]] = memref.subview %[[SM]][%[[H]], 0] [1, 4]
// CHECK:     %[[K0:.*]] = memref.subview %[[K]][%[[PAGE0]], %[[H]], %{{.*}}, 0]
// The products prefetch the next head's rows of the same page part, and after
// the last head the first head's rows of the next block's part.
// CHECK:     %[[NH:.*]] = arith.addi %[[H]], %c1
// CHECK:     %[[WRAP:.*]] = arith.cmpi eq, %[[NH]], %c2
// CHECK-DAG: %[[AH:.*]] = arith.select %[[WRAP]], %c0, %[[NH]]
// CHECK-DAG: %[[APAGE:.*]] = arith.select %[[WRAP]], %[[NPAGE0]], %[[PAGE0]]
// CHECK:     %[[KA:.*]] = memref.subview %[[K]][%[[APAGE]], %[[AH]], %{{.*}}, 0]
// CHECK:     attn.tile_matmul %[[QV]], %[[K0]] transposed into %{{.*}} prefetch %[[KA]]
// CHECK:     attn.tile_matmul %[[QV]], %{{.*}} transposed into %{{.*}} prefetch
// CHECK:     attn.tile_softmax %[[S]], %[[MXV]], %[[SMV]], %[[ACCV]]
// CHECK:     %[[V0:.*]] = memref.subview %[[V]][%[[PAGE0]], %[[H]], %{{.*}}, 0]
// CHECK:     %[[VA:.*]] = memref.subview %[[V]][%[[APAGE]], %[[AH]], %{{.*}}, 0]
// CHECK:     attn.tile_matmul %{{.*}}, %[[V0]] into %[[ACCV]] accumulate prefetch %[[VA]]
// CHECK:     attn.tile_matmul %{{.*}}, %{{.*}} into %[[ACCV]] accumulate prefetch
// CHECK:   }
// CHECK: } {attn.kv_loop}
// CHECK: scf.for %[[H1:.*]] = %c0 to %c2 step %c1 {
// CHECK:   %[[SMS:.*]] = memref.subview %[[SM]][%[[H1]], 0] [1, 4]
// CHECK:   %[[ACCS:.*]] = memref.subview %[[ACC]][%[[H1]], 0, 0] [1, 4, 32]
// CHECK:   attn.tile_store %[[ACCS]], %[[SMS]] to %[[OUT]][%{{.*}}, %[[H1]], %{{.*}}]
// CHECK: }

// Lowered for the CPU, no attn tile op is left.
// CPU-LABEL: func @paged_static
// CPU-NOT: {{attn\.(tile_|copy_tile|gather_tile)}}
// CPU: return
func.func @paged_static(%q: tensor<1x2x?x32xbf16>, %k: tensor<?x2x8x32xbf16>, %v: tensor<?x2x8x32xbf16>,
                        %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x2x?x32xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 1
      : tensor<1x2x?x32xbf16>, tensor<?x2x8x32xbf16>, tensor<?x2x8x32xbf16> -> tensor<1x2x?x32xbf16>
  return %o : tensor<1x2x?x32xbf16>
}

// -----

// Packed K/V (varlen decode): each head's KV block is a view of its rows,
// made in the head loop; with sinks, each head's running max starts at its
// sink (loaded in the head loop before the KV loop), and the LSE is stored
// per head after it.
// CHECK-LABEL: func @packed_sinks_lse
// CHECK-SAME: %[[K:[^:]*]]: memref<1x2x?x32xf32, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<1x2x?x32xf32, strided<[?, ?, ?, 1]>>, %{{[^:]*}}: memref<?x7xi32>, %[[SINKS:[^:]*]]: memref<2xf32>
// CHECK: scf.parallel (%{{[^)]*}}) = (%c0) to
// CHECK: scf.for %[[H0:.*]] = %c0 to %c2 step %c1 {
// CHECK:   %[[SINK:.*]] = memref.load %[[SINKS]][%[[H0]]]
// CHECK:   linalg.fill ins(%[[SINK]] : f32)
// CHECK:   attn.copy_tile
// CHECK: }
// CHECK: scf.for
// CHECK:   scf.for %[[H:.*]] = %c0 to %c2 step %c1 {
// CHECK:     %[[KV:.*]] = memref.subview %[[K]][%{{.*}}, %[[H]], %{{.*}}, 0]
// CHECK:     %[[VV:.*]] = memref.subview %[[V]][%{{.*}}, %[[H]], %{{.*}}, 0]
// CHECK:     attn.tile_matmul %{{.*}}, %[[KV]] transposed into
// CHECK:     attn.tile_matmul %{{.*}}, %[[VV]] into %{{.*}} accumulate
// CHECK:   }
// CHECK: } {attn.kv_loop}
// CHECK: scf.for
// CHECK:   attn.tile_store
// CHECK:   attn.tile_lse
// CHECK: }
// CPU-LABEL: func @packed_sinks_lse
// CPU-NOT: {{attn\.(tile_|copy_tile|gather_tile)}}
// CPU: return
func.func @packed_sinks_lse(%q: tensor<1x2x?x32xf32>, %k: tensor<1x2x?x32xf32>, %v: tensor<1x2x?x32xf32>,
                            %w: tensor<?x7xi32>, %sinks: tensor<2xf32>) -> tensor<1x2x?x32xf32> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) sinks(%sinks : tensor<2xf32>)
      scale 0.125 kv_group 1
      : tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x32xf32> -> tensor<1x2x?x32xf32>
  return %o : tensor<1x2x?x32xf32>
}
