// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu -verify-diagnostics
// RUN: not attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=12 2>&1 | FileCheck %s --check-prefix=WIDTH

// WIDTH: vector-width must be a power of two in [1, 64], got 12

// Shapes and types the verifier accepts but the CPU lowering does not: each
// is reported, nothing is rewritten, nothing crashes.

func.func @dynamic_columns(%a: memref<8x16xf32>, %b: memref<16x?xf32>, %c: memref<8x?xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: b needs a static innermost dimension, got 'memref<16x?xf32>'}}
  attn.tile_matmul %a, %b into %c : memref<8x16xf32>, memref<16x?xf32>, memref<8x?xf32>
  return
}

// -----

func.func @column_stride(%a: memref<8x16xf32>, %b: memref<16x8xf32, strided<[1, 16]>>, %c: memref<8x8xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: b needs a unit-stride innermost dimension, got 'memref<16x8xf32, strided<[1, 16]>>'}}
  attn.tile_matmul %a, %b into %c : memref<8x16xf32>, memref<16x8xf32, strided<[1, 16]>>, memref<8x8xf32>
  return
}

// -----

func.func @fp8_fnuz_source(%k: memref<1x1x64x16xf8E4M3FNUZ>, %kt: memref<16x16xf32>, %i: index) {
  // expected-error @+1 {{attn-lower-to-cpu: source element type 'f8E4M3FNUZ' is not supported (expected f16, bf16, f32, f64, f8E4M3FN or f8E5M2)}}
  attn.copy_tile %k[%i, %i, %i] to %kt transposed valid %i : memref<1x1x64x16xf8E4M3FNUZ>, memref<16x16xf32>
  return
}

// -----

func.func @strided_rows(%acc: memref<8x16xf32>, %l: memref<8xf32>, %o: memref<1x1x8x16xf32, strided<[?, ?, ?, ?]>>, %i: index) {
  // expected-error @+1 {{attn-lower-to-cpu: destination needs a unit-stride innermost dimension}}
  attn.tile_store %acc, %l to %o[%i, %i, %i] valid %i : memref<8x16xf32>, memref<8xf32>, memref<1x1x8x16xf32, strided<[?, ?, ?, ?]>>
  return
}

// -----

func.func @softmax_dynamic(%s: memref<8x?xf32>, %m: memref<8xf32>, %l: memref<8xf32>, %acc: memref<8x16xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: scores needs a static innermost dimension}}
  attn.tile_softmax %s, %m, %l, %acc : memref<8x?xf32>, memref<8xf32>, memref<8xf32>, memref<8x16xf32>
  return
}
