// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @lse_rows(%m: memref<8xf32>, %l: memref<4xf32>, %o: memref<1x1x8xf32>, %i: index) {
  // expected-error @+1 {{max and sum row counts differ}}
  attn.tile_lse %m, %l to %o[%i, %i, %i] valid %i : memref<8xf32>, memref<4xf32>, memref<1x1x8xf32>
  return
}

// -----

func.func @lse_f16(%m: memref<8xf32>, %l: memref<8xf32>, %o: memref<1x1x8xf16>, %i: index) {
  // expected-error @+1 {{operand #2 must be 3D memref of 32-bit float values}}
  attn.tile_lse %m, %l to %o[%i, %i, %i] valid %i : memref<8xf32>, memref<8xf32>, memref<1x1x8xf16>
  return
}

// -----

func.func @combine_part_f16(%p: memref<?x2x8x16xf16>, %pl: memref<?x2x8xf32>, %o: memref<1x2x8x16xf16>,
                            %lse: memref<1x2x8xf32>, %i: index) {
  // expected-error @+1 {{part must be f32, got 'f16'}}
  attn.tile_combine %p, %pl splits %i to %o, %lse[%i, %i, %i] valid %i
      : memref<?x2x8x16xf16>, memref<?x2x8xf32>, memref<1x2x8x16xf16>, memref<1x2x8xf32>
  return
}

// -----

func.func @combine_head_dim(%p: memref<?x2x8x32xf32>, %pl: memref<?x2x8xf32>, %o: memref<1x2x8x16xf16>,
                            %lse: memref<1x2x8xf32>, %i: index) {
  // expected-error @+1 {{part head_dim (32) must equal the destination head_dim (16)}}
  attn.tile_combine %p, %pl splits %i to %o, %lse[%i, %i, %i] valid %i
      : memref<?x2x8x32xf32>, memref<?x2x8xf32>, memref<1x2x8x16xf16>, memref<1x2x8xf32>
  return
}

// -----

func.func @combine_heads(%p: memref<?x4x8x16xf32>, %pl: memref<?x2x8xf32>, %o: memref<1x2x8x16xf16>,
                         %lse: memref<1x2x8xf32>, %i: index) {
  // expected-error @+1 {{part, part_lse, dest and lse must have the same heads}}
  attn.tile_combine %p, %pl splits %i to %o, %lse[%i, %i, %i] valid %i
      : memref<?x4x8x16xf32>, memref<?x2x8xf32>, memref<1x2x8x16xf16>, memref<1x2x8xf32>
  return
}

// -----

func.func @combine_sinks_rank(%p: memref<?x2x8x16xf32>, %pl: memref<?x2x8xf32>, %s: memref<2x1xf32>,
                              %o: memref<1x2x8x16xf16>, %lse: memref<1x2x8xf32>, %i: index) {
  // expected-error @+1 {{operand #2 must be 1D memref of 32-bit float values}}
  attn.tile_combine %p, %pl sinks %s : memref<2x1xf32> splits %i to %o, %lse[%i, %i, %i] valid %i
      : memref<?x2x8x16xf32>, memref<?x2x8xf32>, memref<1x2x8x16xf16>, memref<1x2x8xf32>
  return
}
