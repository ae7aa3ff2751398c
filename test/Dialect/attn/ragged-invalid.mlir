// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @work_columns(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                        %w: tensor<?x6xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{work must be [blocks, 7] (qb, qr, qn, kb, kr, kn, pos)}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x6xi32>) scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @work_i64(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                    %w: tensor<?x7xi64>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{operand #3 must be ranked tensor of 32-bit signless integer values}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi64>) scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @table_rank(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x?x32xf16>, %v: tensor<?x2x?x32xf16>,
                      %w: tensor<?x7xi32>, %bt: tensor<?xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{block_table must be [sequences, max_pages]}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x?x32xf16>, tensor<?x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @group(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                 %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{query heads (4) must be kv_group (1) x KV heads (2)}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @sides(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                 %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{window_sides must be [left, right], each >= -1}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125
      window_sides [-3, 0] kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @head_dim(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x16xf16>, %v: tensor<1x2x?x16xf16>,
                    %w: tensor<?x7xi32>) -> tensor<1x4x?x16xf16> {
  // expected-error @+1 {{query and key head_dim differ}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x16xf16>, tensor<1x2x?x16xf16> -> tensor<1x4x?x16xf16>
  return %o : tensor<1x4x?x16xf16>
}

// -----

func.func @sinks(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                 %w: tensor<?x7xi32>, %s: tensor<2xf32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{sinks must be an f32 tensor with one element per query head}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) sinks(%s : tensor<2xf32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

func.func @gather_head_dim(%c: memref<?x2x?x32xf16>, %bt: memref<?x?xi32>, %buf: memref<16x16xf32>,
                           %s: index, %h: index, %r: index, %n: index) {
  // expected-error @+1 {{tile rows (16) must equal the source head_dim (32)}}
  attn.gather_tile %c[%bt[%s], %h, %r] to %buf transposed valid %n
      : memref<?x2x?x32xf16>, memref<?x?xi32>, memref<16x16xf32>
  return
}
