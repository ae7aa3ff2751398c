// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=64 kv-in-place=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=64 kv-in-place=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=64 kv-in-place=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4" | FileCheck %s --check-prefix=CPU16
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=64 kv-in-place=true" -canonicalize -cse -attn-pipeline="num-stages=2" | FileCheck %s --check-prefix=PIPE

// kv-in-place (the CPU's decode form): only Q is copied into a tile buffer;
// each KV block is a [rows, D] view of K and of V, rows = min(Lk - n0, 64),
// Q.K^T is a transposed tile_matmul on the K view and P.V reads the V view.
// CHECK-LABEL: func @decode_gqa
// CHECK-SAME: (%[[Q:[^:]*]]: memref<?x2x?x128xbf16>, %[[K:[^:]*]]: memref<?x1x?x128xbf16>, %[[V:[^:]*]]: memref<?x1x?x128xbf16>
// CHECK: scf.parallel
// CHECK-COUNT-5: memref.alloc()
// CHECK-NOT: memref.alloc()
// CHECK: attn.copy_tile %[[Q]]
// CHECK-NOT: attn.copy_tile
// CHECK: scf.for %[[N0:.*]] = %c0 to %[[LK:.*]] step %c64
// CHECK: %[[LEFT:.*]] = arith.subi %[[LK]], %[[N0]]
// CHECK: %[[ROWS:.*]] = arith.minsi %[[LEFT]], %c64
// CHECK: %[[KV:.*]] = memref.subview %[[K]][%{{.*}}, %{{.*}}, %[[N0]], 0] [1, 1, %[[ROWS]], 128] [1, 1, 1, 1] : memref<?x1x?x128xbf16> to memref<?x128xbf16, strided<[128, 1], offset: ?>>
// CHECK: %[[VV:.*]] = memref.subview %[[V]][%{{.*}}, %{{.*}}, %[[N0]], 0] [1, 1, %[[ROWS]], 128]
// CHECK: attn.tile_matmul %{{.*}}, %[[KV]] transposed into %[[S:.*]] : memref<4x128xf32>, memref<?x128xbf16, strided<[128, 1], offset: ?>>, memref<4x64xf32>
// CHECK: attn.tile_mask %[[S]]
// CHECK: attn.tile_softmax %[[S]]
// CHECK: attn.tile_matmul %[[S]], %[[VV]] into %{{.*}} accumulate
// CHECK: } {attn.kv_loop}

// Lowered for the CPU, dot products over D (bf16 rows widened to f32 in registers,
// partial sums reduced across lanes), no transposing copy of K: 4 rows x 3 keys
// at a time on AVX2, one lane reduction per dot product. The K row 16 KiB
// ahead (64 rows of 128 bf16) is prefetched in K itself (the view's source), its row index clamped to
// Lk - 1 rather than to the block: near a block's end the prefetch reaches into
// the next block. One prefetch per 64-byte line (32 bf16), into L2 (locality 2).
// CPU-LABEL: func @decode_gqa
// CPU-SAME: %[[K:[^:]*]]: memref<?x1x?x128xbf16>, %[[V:[^:]*]]: memref<?x1x?x128xbf16>
// CPU-NOT: attn.tile_
// CPU-NOT: vector.shuffle
// CPU: scf.for %{{.*}} = %c0{{.*}} to %{{.*}} step %c3
// CPU: %[[LK:.*]] = memref.dim %[[K]], %c2{{.*}} : memref<?x1x?x128xbf16>
// CPU-NEXT: %[[LAST:.*]] = arith.subi %[[LK]], %c1
// CPU: %[[AHEAD:.*]] = arith.addi %{{.*}}, %c64
// CPU: %[[ROW:.*]] = arith.addi %{{.*}}, %[[AHEAD]]
// CPU: %[[CLAMPED:.*]] = arith.minsi %[[ROW]], %[[LAST]]
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[CLAMPED]], %c0{{.*}}], read, locality<2>, data : memref<?x1x?x128xbf16>
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[CLAMPED]], %c32{{.*}}]
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[CLAMPED]], %c64{{.*}}]
// CPU: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[CLAMPED]], %c96{{.*}}]
// CPU-NOT: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[CLAMPED]], %c128
// CPU: vector.load %{{.*}} : memref<?x128xbf16, strided<[128, 1], offset: ?>>, vector<8xbf16>
// CPU: vector.fma {{.*}} : vector<8xf32>
// CPU: vector.reduction <add>, {{.*}} : vector<8xf32> into f32
// AVX-512's 16 lanes: 4 rows x 4 keys, 16 dot products in one tree of 4 rounds.
// CPU16-LABEL: func @decode_gqa
// CPU16: scf.for %{{.*}} = %c0{{.*}} to %{{.*}} step %c4
// CPU16: vector.fma {{.*}} : vector<16xf32>
// CPU16: vector.shuffle %{{.*}}#0, %{{.*}}#8 [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23] : vector<16xf32>, vector<16xf32>
// CPU16: vector.shuffle {{.*}} [0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30] : vector<16xf32>, vector<16xf32>
// CPU16-NOT: vector.reduction
// CPU16: vector.extract_strided_slice {{.*}} {offsets = [12], sizes = [4], strides = [1]} : vector<16xf32> to vector<4xf32>
// CPU16: vector.store {{.*}} : memref<4x64xf32>, vector<4xf32>
// P.V prefetches V's rows the same way.
// CPU: memref.prefetch %[[V]][{{.*}}], read, locality<2>, data : memref<?x1x?x128xbf16>
// CPU: vector.load %{{.*}} : memref<?x128xbf16, strided<[128, 1], offset: ?>>, vector<8xbf16>

// Nothing to multi-buffer: attn-pipeline leaves the loop as it is.
// PIPE-LABEL: func @decode_gqa
// PIPE: scf.for
// PIPE-NOT: attn.part
// PIPE: } {attn.kv_loop}
func.func @decode_gqa(%q: tensor<?x2x?x128xbf16>, %k: tensor<?x1x?x128xbf16>, %v: tensor<?x1x?x128xbf16>) -> tensor<?x2x?x128xbf16> {
  %0 = attn.attention %q, %k, %v scale 0.088 mask none kv_group 2
      : tensor<?x2x?x128xbf16>, tensor<?x1x?x128xbf16>, tensor<?x1x?x128xbf16> -> tensor<?x2x?x128xbf16>
  return %0 : tensor<?x2x?x128xbf16>
}

// -----

// A head dim that is not a multiple of the vector width (36 on 8 lanes: four
// full chunks and a 4-lane tail, reduced on its own).
// CPU-LABEL: func @tail
// CPU: vector.fma {{.*}} : vector<8xf32>
// CPU: vector.fma {{.*}} : vector<4xf32>
// CPU: vector.reduction <add>, {{.*}} : vector<4xf32> into f32
func.func @tail(%q: tensor<1x2x?x36xf32>, %k: tensor<1x2x?x36xf32>) -> tensor<1x2x?x36xf32> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal align bottom_right kv_group 1
      : tensor<1x2x?x36xf32>, tensor<1x2x?x36xf32>, tensor<1x2x?x36xf32> -> tensor<1x2x?x36xf32>
  return %0 : tensor<1x2x?x36xf32>
}
