// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @copy_cols(%src: memref<1x1x8x16xf16>, %dst: memref<8x32xf32>, %i: index) {
  // expected-error @+1 {{tile columns (32) must equal the source head_dim (16)}}
  attn.copy_tile %src[%i, %i, %i] to %dst valid %i : memref<1x1x8x16xf16>, memref<8x32xf32>
  return
}

// -----

func.func @copy_transposed(%src: memref<1x1x8x16xf16>, %dst: memref<8x16xf32>, %i: index) {
  // expected-error @+1 {{tile rows (8) must equal the source head_dim (16)}}
  attn.copy_tile %src[%i, %i, %i] to %dst transposed valid %i : memref<1x1x8x16xf16>, memref<8x16xf32>
  return
}

// -----

func.func @copy_rank(%src: memref<8x16xf16>, %dst: memref<8x16xf32>, %i: index) {
  // expected-error @+1 {{operand #0 must be 4D memref of floating-point values}}
  attn.copy_tile %src[%i, %i, %i] to %dst valid %i : memref<8x16xf16>, memref<8x16xf32>
  return
}

// -----

func.func @matmul_k(%a: memref<8x16xf32>, %b: memref<8x8xf32>, %c: memref<8x8xf32>) {
  // expected-error @+1 {{contraction extents differ: a is 8x16, b is 8x8}}
  attn.tile_matmul %a, %b into %c : memref<8x16xf32>, memref<8x8xf32>, memref<8x8xf32>
  return
}

// -----

func.func @matmul_c(%a: memref<8x16xf32>, %b: memref<16x4xf32>, %c: memref<8x8xf32>) {
  // expected-error @+1 {{c must be 8x4}}
  attn.tile_matmul %a, %b into %c : memref<8x16xf32>, memref<16x4xf32>, memref<8x8xf32>
  return
}

// -----

func.func @matmul_c_type(%a: memref<8x16xf16>, %b: memref<16x8xf16>, %c: memref<8x8xf16>) {
  // expected-error @+1 {{c must be f32}}
  attn.tile_matmul %a, %b into %c : memref<8x16xf16>, memref<16x8xf16>, memref<8x8xf16>
  return
}

// -----

func.func @mask_window(%s: memref<8x8xf32>, %i: index) {
  // expected-error @+1 {{sliding_window needs a window of at least 1}}
  attn.tile_mask %s rows %i cols %i valid %i sliding_window : memref<8x8xf32>
  return
}

// -----

func.func @mask_window_extra(%s: memref<8x8xf32>, %i: index) {
  // expected-error @+1 {{window is only valid with sliding_window}}
  attn.tile_mask %s rows %i cols %i valid %i causal window 3 : memref<8x8xf32>
  return
}

// -----

func.func @mask_type(%s: memref<8x8xf16>, %i: index) {
  // expected-error @+1 {{scores must be f32}}
  attn.tile_mask %s rows %i cols %i valid %i causal : memref<8x8xf16>
  return
}

// -----

func.func @bias_rank(%s: memref<8x8xf32>, %b: memref<1x1x1x8x8xf32>, %i: index) {
  // expected-error @+1 {{bias rank must be at most 4, got 5}}
  attn.tile_bias %s, %b[%i, %i, %i, %i] valid %i, %i scale 1.0 : memref<8x8xf32>, memref<1x1x1x8x8xf32>
  return
}

// -----

func.func @softmax_rows(%s: memref<8x8xf32>, %m: memref<4xf32>, %l: memref<8xf32>, %a: memref<8x16xf32>) {
  // expected-error @+1 {{max must have 8 rows, got 4}}
  attn.tile_softmax %s, %m, %l, %a : memref<8x8xf32>, memref<4xf32>, memref<8xf32>, memref<8x16xf32>
  return
}

// -----

func.func @softmax_acc(%s: memref<8x8xf32>, %m: memref<8xf32>, %l: memref<8xf32>, %a: memref<4x16xf32>) {
  // expected-error @+1 {{acc must have 8 rows, got 4}}
  attn.tile_softmax %s, %m, %l, %a : memref<8x8xf32>, memref<8xf32>, memref<8xf32>, memref<4x16xf32>
  return
}

// -----

func.func @store_cols(%a: memref<8x16xf32>, %l: memref<8xf32>, %o: memref<1x1x8x32xf16>, %i: index) {
  // expected-error @+1 {{acc columns (16) must equal the destination head_dim (32)}}
  attn.tile_store %a, %l to %o[%i, %i, %i] valid %i : memref<8x16xf32>, memref<8xf32>, memref<1x1x8x32xf16>
  return
}

// -----

func.func @store_rows(%a: memref<8x16xf32>, %l: memref<4xf32>, %o: memref<1x1x8x16xf16>, %i: index) {
  // expected-error @+1 {{acc and sum row counts differ}}
  attn.tile_store %a, %l to %o[%i, %i, %i] valid %i : memref<8x16xf32>, memref<4xf32>, memref<1x1x8x16xf16>
  return
}

// -----

func.func @matmul_transposed_k(%a: memref<4x128xf32>, %b: memref<?x64xbf16>, %c: memref<4x64xf32>) {
  // expected-error @+1 {{contraction extents differ: a is 4x128, b is ?x64 (transposed)}}
  attn.tile_matmul %a, %b transposed into %c : memref<4x128xf32>, memref<?x64xbf16>, memref<4x64xf32>
  return
}

// -----

func.func @matmul_transposed_c(%a: memref<4x128xf32>, %b: memref<32x128xbf16>, %c: memref<4x64xf32>) {
  // expected-error @+1 {{c must be 4x32}}
  attn.tile_matmul %a, %b transposed into %c : memref<4x128xf32>, memref<32x128xbf16>, memref<4x64xf32>
  return
}

// -----

func.func @matmul_a_type(%a: memref<4x128xbf16>, %b: memref<128x64xf32>, %c: memref<4x64xf32>) {
  // expected-error @+1 {{a must be f32 (a tile buffer)}}
  attn.tile_matmul %a, %b into %c : memref<4x128xbf16>, memref<128x64xf32>, memref<4x64xf32>
  return
}

// -----

func.func @matmul_prefetch_rows(%a: memref<4x32xf32>, %b: memref<?x32xbf16>, %c: memref<4x16xf32>,
                                %pf: memref<?x64xbf16>) {
  // expected-error @+1 {{prefetch rows have 64 elements, b's rows 32}}
  attn.tile_matmul %a, %b transposed into %c prefetch %pf : memref<?x64xbf16> : memref<4x32xf32>, memref<?x32xbf16>, memref<4x16xf32>
  return
}

// -----

func.func @matmul_prefetch_pairs(%a: memref<4x32xbf16>, %b: memref<16x32xbf16>, %c: memref<4x16xf32>,
                                 %pf: memref<?x32xbf16>) {
  // expected-error @+1 {{prefetch is for b read in place (kv-in-place), not a pairs tile}}
  attn.tile_matmul %a, %b pairs into %c prefetch %pf : memref<?x32xbf16> : memref<4x32xbf16>, memref<16x32xbf16>, memref<4x16xf32>
  return
}
