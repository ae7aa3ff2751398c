// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=32 kv-in-place=true kv-in-place-pairs=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=32 kv-in-place=true" -canonicalize -cse | FileCheck %s --check-prefix=OFF

// kv-in-place-pairs (the bf16 decode form of the AVX-512-BF16 class): Q is
// copied into a bf16 tile as it is (no scale), Q K^T is `transposed pairs`
// on the view of K's rows with the scale on the f32 scores, the softmax's
// P is rounded into a bf16 tile and P V is `pairs` on the view of V's rows.
// CHECK-LABEL: func @decode
// CHECK: %[[QT:.*]] = memref.alloc() : memref<4x64xbf16>
// CHECK: %[[S:.*]] = memref.alloc() : memref<4x32xf32>
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<4x64xf32>
// CHECK: %[[P:.*]] = memref.alloc() : memref<4x32xbf16>
// CHECK: attn.copy_tile %arg0[{{.*}}] to %[[QT]] valid %{{[0-9]+}} :
// CHECK: scf.for
// CHECK:   %[[KV:.*]] = memref.subview %arg1
// CHECK:   %[[VV:.*]] = memref.subview %arg2
// CHECK:   attn.tile_matmul %[[QT]], %[[KV]] transposed pairs scale 1.250000e-01 into %[[S]]
// CHECK:   attn.tile_softmax %[[S]]
// CHECK:   attn.tile_convert %[[S]] to %[[P]]
// CHECK:   attn.tile_matmul %[[P]], %[[VV]] pairs into %[[ACC]] accumulate
// CHECK: } {attn.kv_loop}
// Without the option: f32 tiles, Q scaled by its copy.
// OFF-LABEL: func @decode
// OFF: memref.alloc() : memref<4x64xf32>
// OFF: attn.copy_tile %arg0[{{.*}}] to %{{.*}} scale 1.250000e-01
// OFF: attn.tile_matmul %{{.*}}, %{{.*}} transposed into
// OFF-NOT: pairs
func.func @decode(%q: tensor<?x8x?x64xbf16>, %k: tensor<?x2x?x64xbf16>, %v: tensor<?x2x?x64xbf16>) -> tensor<?x8x?x64xbf16> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 4
      : tensor<?x8x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<?x8x?x64xbf16>
  return %o : tensor<?x8x?x64xbf16>
}

// -----

// Not bf16 (f16), or a head dim that is not a multiple of 32: the f32 form.
// CHECK-LABEL: func @f16
// CHECK-NOT: pairs
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} transposed into
// CHECK-NOT: pairs
func.func @f16(%q: tensor<?x8x?x64xf16>, %k: tensor<?x2x?x64xf16>, %v: tensor<?x2x?x64xf16>) -> tensor<?x8x?x64xf16> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 4
      : tensor<?x8x?x64xf16>, tensor<?x2x?x64xf16>, tensor<?x2x?x64xf16> -> tensor<?x8x?x64xf16>
  return %o : tensor<?x8x?x64xf16>
}

// -----

// A bf16 query over an fp8 cache: the same pairs form on the fp8 rows (the
// CPU widens them to bf16 as it loads them); an f32 query keeps f32 tiles.
// CHECK-LABEL: func @fp8
// CHECK: memref.alloc() : memref<4x64xbf16>
// CHECK: scf.for
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} transposed pairs scale 1.250000e-01 into %{{.*}} : memref<4x64xbf16>, memref<?x64xf8E4M3FN
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} pairs into %{{.*}} accumulate : memref<4x32xbf16>, memref<?x64xf8E4M3FN
// CHECK: } {attn.kv_loop}
// CHECK-LABEL: func @fp8_f32_query
// CHECK-NOT: pairs
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} transposed into
// CHECK-NOT: pairs
// CHECK: return
func.func @fp8(%q: tensor<?x8x?x64xbf16>, %k: tensor<?x2x?x64xf8E4M3FN>, %v: tensor<?x2x?x64xf8E4M3FN>) -> tensor<?x8x?x64xbf16> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 4
      : tensor<?x8x?x64xbf16>, tensor<?x2x?x64xf8E4M3FN>, tensor<?x2x?x64xf8E4M3FN> -> tensor<?x8x?x64xbf16>
  return %o : tensor<?x8x?x64xbf16>
}
func.func @fp8_f32_query(%q: tensor<?x8x?x64xf32>, %k: tensor<?x2x?x64xf8E5M2>, %v: tensor<?x2x?x64xf8E5M2>) -> tensor<?x8x?x64xf32> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 4
      : tensor<?x8x?x64xf32>, tensor<?x2x?x64xf8E5M2>, tensor<?x2x?x64xf8E5M2> -> tensor<?x8x?x64xf32>
  return %o : tensor<?x8x?x64xf32>
}

// -----

// CHECK-LABEL: func @d48
// CHECK-NOT: pairs
func.func @d48(%q: tensor<?x8x?x48xbf16>, %k: tensor<?x2x?x48xbf16>, %v: tensor<?x2x?x48xbf16>) -> tensor<?x8x?x48xbf16> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 4
      : tensor<?x8x?x48xbf16>, tensor<?x2x?x48xbf16>, tensor<?x2x?x48xbf16> -> tensor<?x8x?x48xbf16>
  return %o : tensor<?x8x?x48xbf16>
}

// -----

// A paged cache of 16-row pages, 32-key blocks: two page parts per block,
// each part's Q K^T `transposed pairs` into its 16 columns of the scores and
// its P V `pairs` from the same 16 columns of P (prefetching the next
// block's part as in the f32 form).
// CHECK-LABEL: func @paged16
// CHECK: %[[QT:.*]] = memref.alloc() : memref<4x64xbf16>
// CHECK: %[[P:.*]] = memref.alloc() : memref<4x32xbf16>
// CHECK: scf.for
// CHECK:   attn.tile_matmul %[[QT]], %{{.*}} transposed pairs scale 1.250000e-01 into %{{.*}} prefetch
// CHECK:   attn.tile_matmul %[[QT]], %{{.*}} transposed pairs scale 1.250000e-01 into %{{.*}} prefetch
// CHECK:   attn.tile_convert %{{.*}} to %[[P]]
// CHECK:   memref.subview %[[P]][0, 0] [4, 16] [1, 1]
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} pairs into %{{.*}} accumulate prefetch
// CHECK:   memref.subview %[[P]][0, 16] [4, 16] [1, 1]
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} pairs into %{{.*}} accumulate prefetch
// CHECK: } {attn.kv_loop}
func.func @paged16(%q: tensor<1x8x?x64xbf16>, %k: tensor<?x2x16x64xbf16>, %v: tensor<?x2x16x64xbf16>,
                   %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x8x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 4
      : tensor<1x8x?x64xbf16>, tensor<?x2x16x64xbf16>, tensor<?x2x16x64xbf16> -> tensor<1x8x?x64xbf16>
  return %o : tensor<1x8x?x64xbf16>
}

// -----

// Pages of one row as views (P V takes keys in pairs): the f32 form.
// CHECK-LABEL: func @paged1
// CHECK-NOT: pairs
// CHECK: } {attn.kv_loop}
func.func @paged1(%q: tensor<1x8x?x64xbf16>, %k: tensor<?x2x1x64xbf16>, %v: tensor<?x2x1x64xbf16>,
                  %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x8x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 4
      : tensor<1x8x?x64xbf16>, tensor<?x2x1x64xbf16>, tensor<?x2x1x64xbf16> -> tensor<1x8x?x64xbf16>
  return %o : tensor<1x8x?x64xbf16>
}

// -----

// Pages of a size read at run time (any size, 1 included, as attncc's paged
// decode compiles them): K/V rows gathered into bf16 tiles (zero past the
// valid rows) 16 rows at a time, each chunk after the prefetch of the next
// block's same rows (K and V rows in one loop, one block-table lookup a row);
// both products `pairs` on the tiles.
// CHECK-LABEL: func @paged_dynamic
// CHECK: %[[QT:.*]] = memref.alloc() : memref<4x64xbf16>
// CHECK: %[[KT:.*]] = memref.alloc() : memref<32x64xbf16>
// CHECK: %[[VT:.*]] = memref.alloc() : memref<32x64xbf16>
// CHECK: %[[P:.*]] = memref.alloc() : memref<4x32xbf16>
// CHECK: scf.for
// CHECK:   scf.for
// CHECK:     memref.prefetch %arg1
// CHECK:     memref.prefetch %arg2
// CHECK:   %[[K0:.*]] = memref.subview %[[KT]][0, 0] [16, 64] [1, 1]
// CHECK:   attn.gather_tile %arg1[{{.*}}] to %[[K0]] valid
// CHECK:   %[[V0:.*]] = memref.subview %[[VT]][0, 0] [16, 64] [1, 1]
// CHECK:   attn.gather_tile %arg2[{{.*}}] to %[[V0]] valid
// CHECK:   scf.for
// CHECK:     memref.prefetch %arg1
// CHECK:     memref.prefetch %arg2
// CHECK:   %[[K1:.*]] = memref.subview %[[KT]][16, 0] [16, 64] [1, 1]
// CHECK:   attn.gather_tile %arg1[{{.*}}] to %[[K1]] valid
// CHECK:   %[[V1:.*]] = memref.subview %[[VT]][16, 0] [16, 64] [1, 1]
// CHECK:   attn.gather_tile %arg2[{{.*}}] to %[[V1]] valid
// CHECK-NOT: attn.gather_tile
// CHECK:   attn.tile_matmul %[[QT]], %[[KT]] transposed pairs scale 1.250000e-01 into
// CHECK:   attn.tile_convert %{{.*}} to %[[P]]
// CHECK:   attn.tile_matmul %[[P]], %[[VT]] pairs into %{{.*}} accumulate
// CHECK: } {attn.kv_loop}
func.func @paged_dynamic(%q: tensor<1x8x?x64xbf16>, %k: tensor<?x2x?x64xbf16>, %v: tensor<?x2x?x64xbf16>,
                         %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x8x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 4
      : tensor<1x8x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<1x8x?x64xbf16>
  return %o : tensor<1x8x?x64xbf16>
}
