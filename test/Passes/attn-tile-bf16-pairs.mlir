// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=32 block-n=64 bf16-pairs=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=32 block-n=64" | FileCheck %s --check-prefix=OFF
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=64 bf16-pairs=true kv-in-place=true" | FileCheck %s --check-prefix=INPLACE

// bf16 inputs, head dim 64: bf16 tiles; Q copied as it is into a bf16
// [BM, D] tile (no rounding after scaling: Q K^T applies the scale to the f32
// scores), K copied transposed pairs into [D / 2, 2 BN], V pairs into
// [BN / 2, 2 Dv], the probabilities rounded into %p after the softmax, both
// matmuls pairs.
// CHECK-LABEL: func @bf16_d64
// CHECK-DAG: %[[QT:.*]] = memref.alloc() : memref<32x64xbf16>
// CHECK-DAG: %[[S:.*]] = memref.alloc() : memref<32x64xf32>
// CHECK-DAG: %[[KT:.*]] = memref.alloc() : memref<32x128xbf16>
// CHECK-DAG: %[[VT:.*]] = memref.alloc() : memref<32x128xbf16>
// CHECK-DAG: %[[P:.*]] = memref.alloc() : memref<32x64xbf16>
// CHECK: attn.copy_tile %{{.*}} to %[[QT]] valid
// CHECK: scf.for
// CHECK:   attn.copy_tile %{{.*}} to %[[KT]] transposed pairs valid
// CHECK:   attn.copy_tile %{{.*}} to %[[VT]] pairs valid
// CHECK:   attn.tile_matmul %[[QT]], %[[KT]] pairs scale 1.250000e-01 into %[[S]]
// CHECK:   attn.tile_mask %[[S]]
// CHECK:   attn.tile_softmax %[[S]]
// CHECK:   attn.tile_convert %[[S]] to %[[P]]
// CHECK:   attn.tile_matmul %[[P]], %[[VT]] pairs into %{{.*}} accumulate
// Without the option: f32 tiles as before.
// OFF-LABEL: func @bf16_d64
// OFF-NOT: pairs
// OFF-NOT: attn.tile_convert
// OFF: attn.copy_tile %{{.*}} transposed valid %{{.*}} : memref<1x2x?x64xbf16>, memref<64x64xf32>
// kv-in-place (decode) reads K/V where they are: no pairs.
// INPLACE-LABEL: func @bf16_d64
// INPLACE-NOT: pairs
// INPLACE: attn.tile_matmul %{{.*}}, %{{.*}} transposed into
func.func @bf16_d64(%q: tensor<1x2x?x64xbf16>, %k: tensor<1x2x?x64xbf16>, %v: tensor<1x2x?x64xbf16>) -> tensor<1x2x?x64xbf16> {
  %0 = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 1
      : tensor<1x2x?x64xbf16>, tensor<1x2x?x64xbf16>, tensor<1x2x?x64xbf16> -> tensor<1x2x?x64xbf16>
  return %0 : tensor<1x2x?x64xbf16>
}

// -----

// Shapes the AMX tiles do not fit (head dim 40) and other dtypes keep the
// f32 tiles: the option is a preference, not a requirement.
// CHECK-LABEL: func @bf16_d40
// CHECK-NOT: pairs
// CHECK: memref<40x64xf32>
func.func @bf16_d40(%q: tensor<1x2x?x40xbf16>, %k: tensor<1x2x?x40xbf16>, %v: tensor<1x2x?x40xbf16>) -> tensor<1x2x?x40xbf16> {
  %0 = attn.attention %q, %k, %v scale 0.125 mask none kv_group 1
      : tensor<1x2x?x40xbf16>, tensor<1x2x?x40xbf16>, tensor<1x2x?x40xbf16> -> tensor<1x2x?x40xbf16>
  return %0 : tensor<1x2x?x40xbf16>
}

// -----

// CHECK-LABEL: func @f16_d64
// CHECK-NOT: pairs
// CHECK: memref<64x64xf32>
func.func @f16_d64(%q: tensor<1x2x?x64xf16>, %k: tensor<1x2x?x64xf16>, %v: tensor<1x2x?x64xf16>) -> tensor<1x2x?x64xf16> {
  %0 = attn.attention %q, %k, %v scale 0.125 mask none kv_group 1
      : tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16>, tensor<1x2x?x64xf16> -> tensor<1x2x?x64xf16>
  return %0 : tensor<1x2x?x64xf16>
}
