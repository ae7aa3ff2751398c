// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 bf16-dot=true" -verify-diagnostics
// RUN: not attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=8 bf16-dot=true" 2>&1 | FileCheck %s --check-prefix=AVX2

// Pairs matmuls the AVX-512-BF16 lowering cannot take: reported by name.
// With 8-lane vectors (an AVX2 width) every one is refused:
// AVX2: error: 'attn.tile_matmul' op attn-lower-to-cpu: a pairs tile_matmul on AVX-512-BF16 needs 16-lane vectors and static rows and columns, the columns a multiple of 16, got vector-width 8
func.func @columns(%a: memref<16x64xbf16>, %b: memref<32x48xbf16>, %c: memref<16x24xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: a pairs tile_matmul on AVX-512-BF16 needs 16-lane vectors and static rows and columns, the columns a multiple of 16, got vector-width 16, a 'memref<16x64xbf16>' and c 'memref<16x24xf32>'}}
  attn.tile_matmul %a, %b pairs into %c : memref<16x64xbf16>, memref<32x48xbf16>, memref<16x24xf32>
  return
}

// -----

func.func @rows(%a: memref<?x64xbf16>, %b: memref<32x32xbf16>, %c: memref<?x16xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: a pairs tile_matmul on AVX-512-BF16 needs 16-lane vectors and static rows and columns}}
  attn.tile_matmul %a, %b pairs into %c : memref<?x64xbf16>, memref<32x32xbf16>, memref<?x16xf32>
  return
}

// -----

func.func @transposed_extent(%a: memref<4x48xbf16>, %k: memref<?x48xbf16>, %c: memref<4x16xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: a transposed pairs tile_matmul on AVX-512-BF16 needs 16-lane vectors and a contraction extent that is a multiple of 32, got vector-width 16 and a 'memref<4x48xbf16>'}}
  attn.tile_matmul %a, %k transposed pairs into %c : memref<4x48xbf16>, memref<?x48xbf16>, memref<4x16xf32>
  return
}

// -----

func.func @rows_in_place_columns(%p: memref<4x16xbf16>, %v: memref<?x24xbf16>, %c: memref<4x24xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: a pairs tile_matmul on AVX-512-BF16 needs 16-lane vectors and static rows and columns, the columns a multiple of 16}}
  attn.tile_matmul %p, %v pairs into %c accumulate : memref<4x16xbf16>, memref<?x24xbf16>, memref<4x24xf32>
  return
}
