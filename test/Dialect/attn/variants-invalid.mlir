// RUN: attncc-opt %s -split-input-file -verify-diagnostics

func.func @softcap_zero(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{softcap must be positive and finite, got 0}}
  %0 = attn.attention %q, %q, %q scale 0.25 softcap 0.0 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @softcap_negative(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{softcap must be positive and finite, got -3}}
  %0 = attn.attention %q, %q, %q scale 0.25 softcap -3.0 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @window_sides_below_minus_one(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{window_sides must be >= -1 (-1: unbounded), got [-2, 0]}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask sliding_window window_sides [-2, 0] kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @window_sides_three(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{window_sides must be [left, right], got 3 values}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask sliding_window window_sides [1, 0, 2] kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @window_and_sides(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{window and window_sides are exclusive}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask sliding_window window 4 window_sides [3, 0] kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @sides_without_window_mask(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{window is only valid with mask kind 'sliding_window'}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask causal window_sides [3, 0] kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @window_mask_without_window(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{mask kind 'sliding_window' requires a window or window_sides}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask sliding_window kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @align_without_structured_mask(%q: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{align is only valid with mask kinds 'causal' and 'sliding_window'}}
  %0 = attn.attention %q, %q, %q scale 0.25 mask none align bottom_right kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @slopes_rank(%q: tensor<1x2x8x16xf32>, %s: tensor<1x2xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{alibi_slopes must be a rank-1 f32 tensor [query heads], got 'tensor<1x2xf32>'}}
  %0 = attn.attention %q, %q, %q alibi_slopes(%s : tensor<1x2xf32>) scale 0.25 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @slopes_f16(%q: tensor<1x2x8x16xf16>, %s: tensor<2xf16>) -> tensor<1x2x8x16xf16> {
  // expected-error @+1 {{alibi_slopes must be a rank-1 f32 tensor [query heads], got 'tensor<2xf16>'}}
  %0 = attn.attention %q, %q, %q alibi_slopes(%s : tensor<2xf16>) scale 0.25 mask none kv_group 1
      : tensor<1x2x8x16xf16>, tensor<1x2x8x16xf16>, tensor<1x2x8x16xf16> -> tensor<1x2x8x16xf16>
  return %0 : tensor<1x2x8x16xf16>
}

// -----

func.func @slopes_count(%q: tensor<1x2x8x16xf32>, %s: tensor<3xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{alibi_slopes has 3 elements, expected one per query head (2)}}
  %0 = attn.attention %q, %q, %q alibi_slopes(%s : tensor<3xf32>) scale 0.25 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @sinks_rank(%q: tensor<1x2x8x16xf32>, %s: tensor<f32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{sinks must be a rank-1 f32 tensor [query heads], got 'tensor<f32>'}}
  %0 = attn.attention %q, %q, %q sinks(%s : tensor<f32>) scale 0.25 mask none kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @sinks_count(%q: tensor<1x2x8x16xf32>, %s: tensor<4xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{sinks has 4 elements, expected one per query head (2)}}
  %0 = attn.attention %q, %q, %q sinks(%s : tensor<4xf32>) scale 0.25 mask causal kv_group 1
      : tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32>, tensor<1x2x8x16xf32> -> tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @tile_softcap_zero(%s: memref<8x8xf32>) {
  // expected-error @+1 {{cap must be positive and finite, got 0}}
  attn.tile_softcap %s cap 0.0 : memref<8x8xf32>
  return
}

// -----

func.func @tile_softcap_f16(%s: memref<8x8xf16>) {
  // expected-error @+1 {{scores must be f32}}
  attn.tile_softcap %s cap 2.0 : memref<8x8xf16>
  return
}

// -----

func.func @tile_alibi_f16(%s: memref<8x8xf16>, %sl: memref<2xf32>, %i: index) {
  // expected-error @+1 {{scores must be f32}}
  attn.tile_alibi %s, %sl[%i] rows %i cols %i offset %i : memref<8x8xf16>, memref<2xf32>
  return
}

// -----

func.func @tile_mask_sides(%s: memref<8x8xf32>, %i: index) {
  // expected-error @+1 {{window_sides must be [left, right], each >= -1}}
  attn.tile_mask %s rows %i cols %i valid %i sliding_window window_sides [-3, 0] : memref<8x8xf32>
  return
}

// -----

func.func @tile_mask_window_and_sides(%s: memref<8x8xf32>, %i: index) {
  // expected-error @+1 {{window and window_sides are exclusive}}
  attn.tile_mask %s rows %i cols %i valid %i sliding_window window 2 window_sides [1, 0] : memref<8x8xf32>
  return
}

// -----

func.func @tile_mask_sides_causal(%s: memref<8x8xf32>, %i: index) {
  // expected-error @+1 {{window is only valid with sliding_window}}
  attn.tile_mask %s rows %i cols %i valid %i causal window_sides [1, 0] : memref<8x8xf32>
  return
}

// -----

func.func @mask_align_bias(%s: tensor<1x2x8x16xf32>, %b: tensor<8x16xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{align is only valid with mask kinds 'causal' and 'sliding_window'}}
  %0 = attn.mask %s bias align bottom_right(%b : tensor<8x16xf32>) : tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @softmax_sinks_heads(%s: tensor<1x2x8x16xf32>, %k: tensor<3xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{sinks has 3 elements, expected one per head (2)}}
  %0 = attn.softmax %s axis -1 sinks(%k : tensor<3xf32>) : tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @softmax_sinks_dtype(%s: tensor<1x2x8x16xf32>, %k: tensor<2xf16>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{sinks must be a rank-1 f32 tensor [heads], got 'tensor<2xf16>'}}
  %0 = attn.softmax %s axis -1 sinks(%k : tensor<2xf16>) : tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}

// -----

func.func @softmax_sinks_axis(%s: tensor<1x2x8x16xf32>, %k: tensor<2xf32>) -> tensor<1x2x8x16xf32> {
  // expected-error @+1 {{sinks need scores [batch, heads, Lq, Lk] and the last axis}}
  %0 = attn.softmax %s axis 2 sinks(%k : tensor<2xf32>) : tensor<1x2x8x16xf32>
  return %0 : tensor<1x2x8x16xf32>
}
