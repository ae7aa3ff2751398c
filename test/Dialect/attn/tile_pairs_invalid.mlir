// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @pairs_f16(%k: memref<1x1x64x64xf16>, %kt: memref<32x128xbf16>, %i: index) {
  // expected-error @+1 {{pairs copies bf16 into a bf16 tile, got 'f16' into 'bf16'}}
  attn.copy_tile %k[%i, %i, %i] to %kt transposed pairs valid %i : memref<1x1x64x64xf16>, memref<32x128xbf16>
  return
}

// -----

func.func @pairs_scale(%q: memref<1x1x64x64xbf16>, %qt: memref<32x128xbf16>, %i: index) {
  // expected-error @+1 {{pairs copies take no scale}}
  attn.copy_tile %q[%i, %i, %i] to %qt pairs scale 2.0 valid %i : memref<1x1x64x64xbf16>, memref<32x128xbf16>
  return
}

// -----

func.func @pairs_copy_shape(%k: memref<1x1x64x64xbf16>, %kt: memref<64x64xbf16>, %i: index) {
  // expected-error @+1 {{pairs tile 64x64 does not hold rows of head_dim 64}}
  attn.copy_tile %k[%i, %i, %i] to %kt transposed pairs valid %i : memref<1x1x64x64xbf16>, memref<64x64xbf16>
  return
}

// -----

func.func @pairs_f32_a(%a: memref<32x64xf32>, %b: memref<32x128xbf16>, %c: memref<32x64xf32>) {
  // expected-error @+1 {{pairs needs bf16 a and b, got 'f32' and 'bf16'}}
  attn.tile_matmul %a, %b pairs into %c : memref<32x64xf32>, memref<32x128xbf16>, memref<32x64xf32>
  return
}

// -----

func.func @pairs_shapes(%a: memref<32x64xbf16>, %b: memref<64x128xbf16>, %c: memref<32x64xf32>) {
  // expected-error @+1 {{pairs shapes do not fit: a 32x64, b 64x128 (expected 32x2N), c 32x64}}
  attn.tile_matmul %a, %b pairs into %c : memref<32x64xbf16>, memref<64x128xbf16>, memref<32x64xf32>
  return
}

// -----

func.func @pairs_transposed(%a: memref<32x64xbf16>, %b: memref<32x128xbf16>, %c: memref<32x64xf32>) {
  // expected-error @+1 {{transposed pairs shapes do not fit: a 32x64, b 32x128 (expected N'x64), c 32x64}}
  attn.tile_matmul %a, %b transposed pairs into %c : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
  return
}

// -----

func.func @pairs_transposed_keys(%a: memref<4x64xbf16>, %b: memref<32x64xbf16>, %c: memref<4x16xf32>) {
  // expected-error @+1 {{transposed pairs shapes do not fit: a 4x64, b 32x64 (expected N'x64), c 4x16}}
  attn.tile_matmul %a, %b transposed pairs into %c : memref<4x64xbf16>, memref<32x64xbf16>, memref<4x16xf32>
  return
}

// -----

func.func @pairs_rows(%a: memref<4x16xbf16>, %b: memref<32x64xbf16>, %c: memref<4x64xf32>) {
  // expected-error @+1 {{pairs b has 32 rows, more than a's 16 columns}}
  attn.tile_matmul %a, %b pairs into %c accumulate : memref<4x16xbf16>, memref<32x64xbf16>, memref<4x64xf32>
  return
}

// -----

func.func @pairs_in_place(%a: memref<4x64xbf16>, %k: memref<?x64xbf16, strided<[512, 1], offset: ?>>,
                          %v: memref<?x128xbf16, strided<[1024, 1], offset: ?>>,
                          %s: memref<4x64xf32>, %p: memref<4x64xbf16>, %acc: memref<4x128xf32>) {
  // The kv-in-place pairs products verify.
  attn.tile_matmul %a, %k transposed pairs scale 0.125 into %s : memref<4x64xbf16>, memref<?x64xbf16, strided<[512, 1], offset: ?>>, memref<4x64xf32>
  attn.tile_matmul %p, %v pairs into %acc accumulate prefetch %v : memref<?x128xbf16, strided<[1024, 1], offset: ?>> : memref<4x64xbf16>, memref<?x128xbf16, strided<[1024, 1], offset: ?>>, memref<4x128xf32>
  // expected-error @+1 {{c must be f32}}
  attn.tile_matmul %a, %k transposed pairs into %p : memref<4x64xbf16>, memref<?x64xbf16, strided<[512, 1], offset: ?>>, memref<4x64xbf16>
  return
}

// -----

func.func @convert_shape(%s: memref<32x64xf32>, %p: memref<32x32xbf16>) {
  // expected-error @+1 {{source 32x64 and destination 32x32 differ in shape}}
  attn.tile_convert %s to %p : memref<32x64xf32>, memref<32x32xbf16>
  return
}

// -----

func.func @scale_without_pairs(%a: memref<32x64xf32>, %b: memref<64x64xf32>, %c: memref<32x64xf32>) {
  // expected-error @+1 {{scale is only for a pairs product that does not accumulate}}
  attn.tile_matmul %a, %b scale 0.5 into %c : memref<32x64xf32>, memref<64x64xf32>, memref<32x64xf32>
  return
}

// -----

func.func @pairs_rows_of_c(%a: memref<4x64xbf16>, %k: memref<?x64xbf16>, %s: memref<8x16xf32>) {
  // expected-error @+1 {{c must have a's 4 rows}}
  attn.tile_matmul %a, %k transposed pairs into %s : memref<4x64xbf16>, memref<?x64xbf16>, memref<8x16xf32>
  return
}

// -----

func.func @pairs_dynamic_contraction(%a: memref<4x?xbf16>, %k: memref<?x64xbf16>, %s: memref<4x16xf32>) {
  // expected-error @+1 {{pairs needs a static even contraction extent and static b columns, got a 4x?, b ?x64}}
  attn.tile_matmul %a, %k transposed pairs into %s : memref<4x?xbf16>, memref<?x64xbf16>, memref<4x16xf32>
  return
}

// -----

// fp8 b only as K/V rows read in place (widened as loaded), never as a
// pair-packed tile.
func.func @pairs_fp8_tile(%a: memref<32x64xbf16>, %b: memref<32x128xf8E4M3FN>, %c: memref<32x64xf32>) {
  // expected-error @+1 {{pairs with fp8 b need b's rows read in place (kv-in-place), got b 'memref<32x128xf8E4M3FN>'}}
  attn.tile_matmul %a, %b pairs into %c : memref<32x64xbf16>, memref<32x128xf8E4M3FN>, memref<32x64xf32>
  return
}

// -----

func.func @pairs_fp8_a(%a: memref<4x64xf8E5M2>, %b: memref<?x64xf8E5M2>, %c: memref<4x16xf32>) {
  // expected-error @+1 {{pairs needs bf16 a and b, got 'f8E5M2' and 'f8E5M2'}}
  attn.tile_matmul %a, %b transposed pairs into %c : memref<4x64xf8E5M2>, memref<?x64xf8E5M2>, memref<4x16xf32>
  return
}
