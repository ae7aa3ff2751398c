// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @matmul_rank(%a: tensor<4xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{operands must have rank >= 2, got 1}}
  %0 = attn.matmul %a, %b : tensor<4xf32>, tensor<4xf32> -> tensor<4xf32>
  return
}

// -----

func.func @matmul_rank_mismatch(%a: tensor<2x4x8xf32>, %b: tensor<4x8xf32>) {
  // expected-error @+1 {{operands and result must have the same rank, got 3, 2 and 3}}
  %0 = attn.matmul %a, %b : tensor<2x4x8xf32>, tensor<4x8xf32> -> tensor<2x4x4xf32>
  return
}

// -----

func.func @matmul_batch(%a: tensor<2x4x8xf32>, %b: tensor<3x8x4xf32>) {
  // expected-error @+1 {{batch dimension 0 differs: 2 vs 3 -> 2}}
  %0 = attn.matmul %a, %b : tensor<2x4x8xf32>, tensor<3x8x4xf32> -> tensor<2x4x4xf32>
  return
}

// -----

func.func @matmul_contraction(%a: tensor<1x4x8xf32>, %b: tensor<1x4x16xf32>) {
  // expected-error @+1 {{contraction dimensions differ: lhs has 8, rhs has 16}}
  %0 = attn.matmul %a, %b transpose_rhs : tensor<1x4x8xf32>, tensor<1x4x16xf32> -> tensor<1x4x4xf32>
  return
}

// -----

func.func @matmul_result(%a: tensor<1x4x8xf32>, %b: tensor<1x8x16xf32>) {
  // expected-error @+1 {{result shape must end in 4x16}}
  %0 = attn.matmul %a, %b : tensor<1x4x8xf32>, tensor<1x8x16xf32> -> tensor<1x4x8xf32>
  return
}

// -----

func.func @matmul_int(%a: tensor<1x4x8xi32>, %b: tensor<1x8x16xi32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of floating-point values}}
  %0 = attn.matmul %a, %b : tensor<1x4x8xi32>, tensor<1x8x16xi32> -> tensor<1x4x16xi32>
  return
}

// -----

func.func @scale_inf(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{scale must be finite}}
  %0 = attn.scale %a by 0x7FF0000000000000 : tensor<4x4xf32>
  return
}

// -----

func.func @mask_rank(%a: tensor<4xf32>) {
  // expected-error @+1 {{scores must have rank >= 2, got 1}}
  %0 = attn.mask %a causal : tensor<4xf32>
  return
}

// -----

func.func @mask_none(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{mask kind 'none' is not a mask}}
  %0 = attn.mask %a none : tensor<4x4xf32>
  return
}

// -----

func.func @mask_bias_missing(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{mask kind 'bias' requires a bias operand}}
  %0 = attn.mask %a bias : tensor<4x4xf32>
  return
}

// -----

func.func @mask_bias_unexpected(%a: tensor<4x4xf32>, %b: tensor<4x4xf32>) {
  // expected-error @+1 {{has a bias operand but mask kind is not 'bias'}}
  %0 = attn.mask %a causal(%b : tensor<4x4xf32>) : tensor<4x4xf32>
  return
}

// -----

func.func @mask_window_missing(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{mask kind 'sliding_window' requires a window}}
  %0 = attn.mask %a sliding_window : tensor<4x4xf32>
  return
}

// -----

func.func @mask_window_zero(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{window must be at least 1, got 0}}
  %0 = attn.mask %a sliding_window window 0 : tensor<4x4xf32>
  return
}

// -----

func.func @mask_window_unexpected(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{window is only valid with mask kind 'sliding_window'}}
  %0 = attn.mask %a causal window 4 : tensor<4x4xf32>
  return
}

// -----

func.func @mask_bias_rank(%a: tensor<4x4xf32>, %b: tensor<1x4x4xf32>) {
  // expected-error @+1 {{bias rank 3 exceeds the scores' rank 2}}
  %0 = attn.mask %a bias(%b : tensor<1x4x4xf32>) : tensor<4x4xf32>
  return
}

// -----

func.func @mask_bias_broadcast(%a: tensor<2x4x4xf32>, %b: tensor<3x4xf32>) {
  // expected-error @+1 {{bias dimension 0 (3) does not broadcast to scores dimension 1 (4)}}
  %0 = attn.mask %a bias(%b : tensor<3x4xf32>) : tensor<2x4x4xf32>
  return
}

// -----

func.func @softmax_axis(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{axis 2 is out of range for rank 2}}
  %0 = attn.softmax %a axis 2 : tensor<4x4xf32>
  return
}

// -----

func.func @softmax_axis_neg(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{axis -3 is out of range for rank 2}}
  %0 = attn.softmax %a axis -3 : tensor<4x4xf32>
  return
}

// -----

func.func @cast_shape(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{cast must keep the shape}}
  %0 = attn.cast %a : tensor<4x4xf32> to tensor<4x8xf16>
  return
}

// -----

func.func @repeat_rank(%a: tensor<4x4xf32>) {
  // expected-error @+1 {{operand and result must have rank 4 [batch, heads, seq, head_dim]}}
  %0 = attn.repeat_heads %a by 2 : tensor<4x4xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @repeat_count(%a: tensor<1x2x4x4xf32>) {
  // expected-error @+1 {{repeats must be at least 1, got 0}}
  %0 = attn.repeat_heads %a by 0 : tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  return
}

// -----

func.func @repeat_heads(%a: tensor<1x2x4x4xf32>) {
  // expected-error @+1 {{result heads must be 2 x 2 = 4, got 6}}
  %0 = attn.repeat_heads %a by 2 : tensor<1x2x4x4xf32> -> tensor<1x6x4x4xf32>
  return
}

// -----

func.func @repeat_dims(%a: tensor<1x2x4x4xf32>) {
  // expected-error @+1 {{dimension 2 must be unchanged}}
  %0 = attn.repeat_heads %a by 2 : tensor<1x2x4x4xf32> -> tensor<1x4x8x4xf32>
  return
}

// -----

func.func @repeat_type(%a: tensor<1x2x4x4xf32>) {
  // expected-error @+1 {{element type must be unchanged}}
  %0 = attn.repeat_heads %a by 2 : tensor<1x2x4x4xf32> -> tensor<1x4x4x4xf16>
  return
}

// -----

func.func @att_rank(%q: tensor<8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{query must have rank 4 [batch, heads, seq, head_dim], got rank 3}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_batch(%q: tensor<2x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{batch sizes differ}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<2x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<2x8x128x64xf16>
  return
}

// -----

func.func @att_kv_heads(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>, %v: tensor<1x4x128x64xf16>) {
  // expected-error @+1 {{key and value head counts differ: 8 vs 4}}
  %0 = attn.attention %q, %k, %v scale 1.0 mask none kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x4x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_kv_seq(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>, %v: tensor<1x8x64x64xf16>) {
  // expected-error @+1 {{key and value sequence lengths differ: 128 vs 64}}
  %0 = attn.attention %q, %k, %v scale 1.0 mask none kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x64x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_head_dim(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x128xf16>) {
  // expected-error @+1 {{query and key head_dim differ: 64 vs 128}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x128xf16>, tensor<1x8x128x128xf16> -> tensor<1x8x128x128xf16>
  return
}

// -----

func.func @att_result(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{result must be [batch, query heads, query seq, value head_dim]}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x64x64xf16>
  return
}

// -----

func.func @att_group_multiple(%q: tensor<1x6x128x64xf16>, %k: tensor<1x4x128x64xf16>) {
  // expected-error @+1 {{query heads (6) must be a multiple of KV heads (4)}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x6x128x64xf16>, tensor<1x4x128x64xf16>, tensor<1x4x128x64xf16> -> tensor<1x6x128x64xf16>
  return
}

// -----

func.func @att_group_value(%q: tensor<1x8x128x64xf16>, %k: tensor<1x2x128x64xf16>) {
  // expected-error @+1 {{kv_group 2 does not match query heads / KV heads = 4}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 2
      : tensor<1x8x128x64xf16>, tensor<1x2x128x64xf16>, tensor<1x2x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_group_zero(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{kv_group must be at least 1, got 0}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 0
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_scale(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{scale must be finite}}
  %0 = attn.attention %q, %k, %k scale 0x7FF8000000000000 mask none kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_window(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{mask kind 'sliding_window' requires a window}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask sliding_window kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_bias_missing(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x128x64xf16>) {
  // expected-error @+1 {{mask kind 'bias' requires a bias operand}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask bias kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16>, tensor<1x8x128x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

func.func @att_bias_shape(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x96x64xf16>, %b: tensor<128x128xf32>) {
  // expected-error @+1 {{bias dimension 1 (128) does not broadcast to scores dimension 3 (96)}}
  %0 = attn.attention %q, %k, %k bias(%b : tensor<128x128xf32>) scale 1.0 mask bias kv_group 1
      : tensor<1x8x128x64xf16>, tensor<1x8x96x64xf16>, tensor<1x8x96x64xf16> -> tensor<1x8x128x64xf16>
  return
}

// -----

// Query heads with zero KV heads (the head check used to divide by zero: SIGFPE).
func.func @zero_kv_heads(%q: tensor<1x2x8x16xf32>, %k: tensor<1x0x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{query heads (2) with no KV heads}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x0x8x16xf32>, tensor<1x0x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

// Shapes whose byte size overflows int64 (strides computed while lowering
// used to hit MLIR's overflow assertion).
func.func @huge(%q: tensor<1x2x4611686018427387904x64xf16>) -> tensor<1x2x4611686018427387904x64xf16> {
  // expected-error @+1 {{query has more elements than a 64-bit byte size can count}}
  %0 = attn.attention %q, %q, %q scale 1.0 mask none kv_group 1
      : tensor<1x2x4611686018427387904x64xf16>, tensor<1x2x4611686018427387904x64xf16>, tensor<1x2x4611686018427387904x64xf16> -> tensor<1x2x4611686018427387904x64xf16>
  return %0 : tensor<1x2x4611686018427387904x64xf16>
}

// -----

func.func @att_fp8_query(%q: tensor<1x8x16x64xf8E4M3FN>, %k: tensor<1x8x16x64xf8E4M3FN>) {
  // expected-error @+1 {{query element type 'f8E4M3FN' is too narrow: 8-bit floats are for key and value only}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x8x16x64xf8E4M3FN>, tensor<1x8x16x64xf8E4M3FN>, tensor<1x8x16x64xf8E4M3FN> -> tensor<1x8x16x64xf32>
  return
}

// -----

func.func @att_fp8_result(%q: tensor<1x8x16x64xf32>, %k: tensor<1x8x16x64xf8E4M3FN>) {
  // expected-error @+1 {{result element type 'f8E5M2' is too narrow: 8-bit floats are for key and value only}}
  %0 = attn.attention %q, %k, %k scale 1.0 mask none kv_group 1
      : tensor<1x8x16x64xf32>, tensor<1x8x16x64xf8E4M3FN>, tensor<1x8x16x64xf8E4M3FN> -> tensor<1x8x16x64xf8E5M2>
  return
}

// -----

func.func @att_fp8_mixed_kv(%q: tensor<1x8x16x64xf32>, %k: tensor<1x8x16x64xf8E4M3FN>, %v: tensor<1x8x16x64xf16>) {
  // expected-error @+1 {{key and value must share an 8-bit element type, got 'f8E4M3FN' and 'f16'}}
  %0 = attn.attention %q, %k, %v scale 1.0 mask none kv_group 1
      : tensor<1x8x16x64xf32>, tensor<1x8x16x64xf8E4M3FN>, tensor<1x8x16x64xf16> -> tensor<1x8x16x64xf32>
  return
}
