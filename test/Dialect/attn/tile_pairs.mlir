// RUN: attncc-opt %s | attncc-opt | FileCheck %s

// attn-tile's bf16-pairs form: bf16 tiles, K and V copied pair-packed (two
// consecutive contraction indices side by side), both matmuls `pairs`, P
// rounded to bf16 by tile_convert. D = 64, 32 x 64 blocks.
// CHECK-LABEL: func @pairs
// CHECK: attn.copy_tile %{{.*}} to %{{.*}} transposed pairs valid %{{.*}} : memref<1x2x100x64xbf16>, memref<32x128xbf16>
// CHECK: attn.copy_tile %{{.*}} to %{{.*}} pairs valid %{{.*}} : memref<1x2x100x64xbf16>, memref<32x128xbf16>
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} pairs scale 1.250000e-01 into %{{.*}} : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
// CHECK: attn.tile_convert %{{.*}} to %{{.*}} : memref<32x64xf32>, memref<32x64xbf16>
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} pairs into %{{.*}} accumulate : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
func.func @pairs(%k: memref<1x2x100x64xbf16>, %v: memref<1x2x100x64xbf16>, %qt: memref<32x64xbf16>,
                 %kt: memref<32x128xbf16>, %vt: memref<32x128xbf16>, %s: memref<32x64xf32>,
                 %p: memref<32x64xbf16>, %acc: memref<32x64xf32>, %i: index) {
  attn.copy_tile %k[%i, %i, %i] to %kt transposed pairs valid %i : memref<1x2x100x64xbf16>, memref<32x128xbf16>
  attn.copy_tile %v[%i, %i, %i] to %vt pairs valid %i : memref<1x2x100x64xbf16>, memref<32x128xbf16>
  attn.tile_matmul %qt, %kt pairs scale 0.125 into %s : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
  attn.tile_convert %s to %p : memref<32x64xf32>, memref<32x64xbf16>
  attn.tile_matmul %p, %vt pairs into %acc accumulate : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
  return
}
