// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=32 bf16-pairs=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=32 bf16-pairs=true" -canonicalize -cse -attn-pipeline="num-stages=2" -attn-lower-to-cpu="vector-width=16 amx=true" | FileCheck %s --check-prefix=CPU

// The bf16-pairs form of attn.ragged_attention: a paged cache's K/V rows are
// gathered through the block table pair-packed, Q copied unscaled, the scale
// on the f32 scores, P rounded into %p.
// CHECK-LABEL: func @paged_bf16
// CHECK: attn.copy_tile %{{.*}} to %{{.*}} valid %{{.*}} : memref<1x4x?x64xbf16, strided<[?, ?, ?, 1]>>, memref<16x64xbf16>
// CHECK: scf.for
// CHECK:   attn.gather_tile %{{.*}} to %{{.*}} transposed pairs valid %{{.*}} : {{.*}}, memref<32x64xbf16>
// CHECK:   attn.gather_tile %{{.*}} to %{{.*}} pairs valid %{{.*}} : {{.*}}, memref<16x128xbf16>
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} pairs scale 1.250000e-01 into
// CHECK:   attn.tile_convert
// CHECK:   attn.tile_matmul %{{.*}}, %{{.*}} pairs into %{{.*}} accumulate
// With the CPU lowering: AMX tiles, the gathered rows moved as bf16 (no conversion).
// CPU-LABEL: func @paged_bf16
// CPU: amx.tile_mulf
// CPU-NOT: attn.gather_tile
func.func @paged_bf16(%q: tensor<1x4x?x64xbf16>, %k: tensor<?x2x?x64xbf16>, %v: tensor<?x2x?x64xbf16>,
                      %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>) -> tensor<1x4x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<1x4x?x64xbf16>
  return %o : tensor<1x4x?x64xbf16>
}

// -----

// Packed K/V (varlen): copy_tile pairs.
// CHECK-LABEL: func @varlen_bf16
// CHECK: attn.copy_tile %{{.*}} to %{{.*}} transposed pairs valid
// CHECK: attn.copy_tile %{{.*}} to %{{.*}} pairs valid
func.func @varlen_bf16(%q: tensor<1x4x?x64xbf16>, %k: tensor<1x4x?x64xbf16>, %v: tensor<1x4x?x64xbf16>,
                       %w: tensor<?x7xi32>) -> tensor<1x4x?x64xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x4x?x64xbf16>, tensor<1x4x?x64xbf16>, tensor<1x4x?x64xbf16> -> tensor<1x4x?x64xbf16>
  return %o : tensor<1x4x?x64xbf16>
}
