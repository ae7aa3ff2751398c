// RUN: attncc-opt %s -split-input-file -attn-fuse | FileCheck %s

// The textbook chain, scale after Q K^T, softmax upcast and cast back.
// CHECK-LABEL: func @basic
// CHECK-SAME: (%[[Q:.*]]: tensor<1x8x128x64xf16>, %[[K:.*]]: tensor<1x8x256x64xf16>, %[[V:.*]]: tensor<1x8x256x64xf16>)
// CHECK-NEXT: %[[O:.*]] = attn.attention %[[Q]], %[[K]], %[[V]] scale 1.250000e-01 mask none kv_group 1 : {{.*}} -> tensor<1x8x128x64xf16>
// CHECK-NEXT: return %[[O]]
func.func @basic(%q: tensor<1x8x128x64xf16>, %k: tensor<1x8x256x64xf16>, %v: tensor<1x8x256x64xf16>) -> tensor<1x8x128x64xf16> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x8x128x64xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x256xf16>
  %t = attn.scale %s by 0.125 : tensor<1x8x128x256xf16>
  %f = attn.cast %t : tensor<1x8x128x256xf16> to tensor<1x8x128x256xf32>
  %p = attn.softmax %f axis 3 : tensor<1x8x128x256xf32>
  %h = attn.cast %p : tensor<1x8x128x256xf32> to tensor<1x8x128x256xf16>
  %o = attn.matmul %h, %v : tensor<1x8x128x256xf16>, tensor<1x8x256x64xf16> -> tensor<1x8x128x64xf16>
  return %o : tensor<1x8x128x64xf16>
}

// -----

// Scale on Q and on the scores multiply; a causal mask before the scale.
// CHECK-LABEL: func @scaled_q_causal
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} scale 2.500000e-01 mask causal kv_group 1
// CHECK-NOT: attn.softmax
func.func @scaled_q_causal(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %qs = attn.scale %q by 0.5 : tensor<1x2x16x64xf32>
  %s = attn.matmul %qs, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %m = attn.mask %s causal : tensor<1x2x16x16xf32>
  %t = attn.scale %m by 0.5 : tensor<1x2x16x16xf32>
  %p = attn.softmax %t axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// A bias added before the scale is scaled with the scores.
// CHECK-LABEL: func @bias_then_scale
// CHECK-SAME: %[[B:[a-z0-9]+]]: tensor<16x16xf32>
// CHECK: %[[SB:.*]] = attn.scale %[[B]] by 1.250000e-01 : tensor<16x16xf32>
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} bias(%[[SB]] : tensor<16x16xf32>) scale 1.250000e-01 mask bias kv_group 1
func.func @bias_then_scale(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>, %b: tensor<16x16xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %m = attn.mask %s bias(%b : tensor<16x16xf32>) : tensor<1x2x16x16xf32>
  %t = attn.scale %m by 0.125 : tensor<1x2x16x16xf32>
  %p = attn.softmax %t axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// GQA: K and V repeated 4x become kv_group 4 on the un-repeated tensors;
// the final cast folds into the fused op.
// CHECK-LABEL: func @gqa_sliding
// CHECK-SAME: (%[[Q:.*]]: tensor<1x8x32x64xbf16>, %[[K:.*]]: tensor<1x2x32x64xbf16>, %[[V:.*]]: tensor<1x2x32x64xbf16>)
// CHECK-NEXT: %[[O:.*]] = attn.attention %[[Q]], %[[K]], %[[V]] scale 1.250000e-01 mask sliding_window window 8 kv_group 4 : {{.*}} -> tensor<1x8x32x64xbf16>
// CHECK-NEXT: return %[[O]]
func.func @gqa_sliding(%q: tensor<1x8x32x64xbf16>, %k: tensor<1x2x32x64xbf16>, %v: tensor<1x2x32x64xbf16>) -> tensor<1x8x32x64xbf16> {
  %kr = attn.repeat_heads %k by 4 : tensor<1x2x32x64xbf16> -> tensor<1x8x32x64xbf16>
  %vr = attn.repeat_heads %v by 4 : tensor<1x2x32x64xbf16> -> tensor<1x8x32x64xbf16>
  %s = attn.matmul %q, %kr transpose_rhs : tensor<1x8x32x64xbf16>, tensor<1x8x32x64xbf16> -> tensor<1x8x32x32xf32>
  %t = attn.scale %s by 0.125 : tensor<1x8x32x32xf32>
  %m = attn.mask %t sliding_window window 8 : tensor<1x8x32x32xf32>
  %p = attn.softmax %m axis -1 : tensor<1x8x32x32xf32>
  %vf = attn.cast %vr : tensor<1x8x32x64xbf16> to tensor<1x8x32x64xf32>
  %o = attn.matmul %p, %vf : tensor<1x8x32x32xf32>, tensor<1x8x32x64xf32> -> tensor<1x8x32x64xf32>
  %c = attn.cast %o : tensor<1x8x32x64xf32> to tensor<1x8x32x64xbf16>
  return %c : tensor<1x8x32x64xbf16>
}

// -----

// Not attention: softmax over the query axis is left alone.
// CHECK-LABEL: func @wrong_axis
// CHECK-NOT: attn.attention
// CHECK: attn.softmax
func.func @wrong_axis(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %p = attn.softmax %s axis 2 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// Not attention: Q @ K without the transpose.
// CHECK-LABEL: func @no_transpose
// CHECK-NOT: attn.attention
func.func @no_transpose(%q: tensor<1x2x16x16xf32>, %k: tensor<1x2x16x16xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  %p = attn.softmax %s axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// A narrowing cast on V would change the numbers: not fused.
// CHECK-LABEL: func @narrowing_v
// CHECK-NOT: attn.attention
func.func @narrowing_v(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf16> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %p = attn.softmax %s axis -1 : tensor<1x2x16x16xf32>
  %ph = attn.cast %p : tensor<1x2x16x16xf32> to tensor<1x2x16x16xf16>
  %vh = attn.cast %v : tensor<1x2x16x64xf32> to tensor<1x2x16x64xf16>
  %o = attn.matmul %ph, %vh : tensor<1x2x16x16xf16>, tensor<1x2x16x64xf16> -> tensor<1x2x16x64xf16>
  return %o : tensor<1x2x16x64xf16>
}

// -----

// Soft-capping written out (Gemma 2): c * tanh(s * scale / c) before the mask
// becomes softcap c; the fused scale is the product of all scales.
// CHECK-LABEL: func @softcap
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.250000e-01 softcap 3.000000e+01 mask causal kv_group 1
// CHECK-NOT: attn.tanh
func.func @softcap(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %a = attn.scale %s by 0.125 : tensor<1x2x16x16xf32>
  %b = attn.scale %a by 0.033333333333333333 : tensor<1x2x16x16xf32>
  %t = attn.tanh %b : tensor<1x2x16x16xf32>
  %c = attn.scale %t by 30.0 : tensor<1x2x16x16xf32>
  %m = attn.mask %c causal : tensor<1x2x16x16xf32>
  %p = attn.softmax %m axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// A mask before the tanh is not a soft-cap (tanh(-inf) = -1 masks nothing):
// the chain stays unfused.
// CHECK-LABEL: func @mask_before_tanh
// CHECK-NOT: attn.attention
// CHECK: attn.tanh
func.func @mask_before_tanh(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %m = attn.mask %s causal : tensor<1x2x16x16xf32>
  %t = attn.tanh %m : tensor<1x2x16x16xf32>
  %c = attn.scale %t by 30.0 : tensor<1x2x16x16xf32>
  %p = attn.softmax %c axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// A negative scale on the tanh is no soft-cap either.
// CHECK-LABEL: func @negative_cap
// CHECK-NOT: attn.attention
func.func @negative_cap(%q: tensor<1x2x16x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x16x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x16x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x16xf32>
  %t = attn.tanh %s : tensor<1x2x16x16xf32>
  %c = attn.scale %t by -3.0 : tensor<1x2x16x16xf32>
  %p = attn.softmax %c axis -1 : tensor<1x2x16x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x16x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x16x64xf32>
  return %o : tensor<1x2x16x64xf32>
}

// -----

// A bottom-right causal mask and a softmax with sinks (gpt-oss's sink column,
// as the frontend captures it) move to the fused op.
// CHECK-LABEL: func @bottom_right_sinks
// CHECK-SAME: %[[SK:[a-z0-9]+]]: tensor<2xf32>
// CHECK-NEXT: %[[O:.*]] = attn.attention %{{.*}}, %{{.*}}, %{{.*}} sinks(%[[SK]] : tensor<2xf32>) scale 1.250000e-01 mask causal align bottom_right kv_group 1
// CHECK-NEXT: return %[[O]]
func.func @bottom_right_sinks(%q: tensor<1x2x4x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>, %sk: tensor<2xf32>) -> tensor<1x2x4x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x4x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x4x16xf32>
  %t = attn.scale %s by 0.125 : tensor<1x2x4x16xf32>
  %m = attn.mask %t causal align bottom_right : tensor<1x2x4x16xf32>
  %p = attn.softmax %m axis -1 sinks(%sk : tensor<2xf32>) : tensor<1x2x4x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x4x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x4x64xf32>
  return %o : tensor<1x2x4x64xf32>
}

// -----

// A bottom-right sliding window keeps its window and alignment; the tanh
// soft-cap folds as well.
// CHECK-LABEL: func @bottom_right_window_softcap
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.250000e-01 softcap 3.000000e+01 mask sliding_window align bottom_right window 4 kv_group 1
// CHECK-NOT: attn.tanh
func.func @bottom_right_window_softcap(%q: tensor<1x2x4x64xf32>, %k: tensor<1x2x16x64xf32>, %v: tensor<1x2x16x64xf32>) -> tensor<1x2x4x64xf32> {
  %s = attn.matmul %q, %k transpose_rhs : tensor<1x2x4x64xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x4x16xf32>
  %a = attn.scale %s by 0.125 : tensor<1x2x4x16xf32>
  %b = attn.scale %a by 0.033333333333333333 : tensor<1x2x4x16xf32>
  %t = attn.tanh %b : tensor<1x2x4x16xf32>
  %c = attn.scale %t by 30.0 : tensor<1x2x4x16xf32>
  %m = attn.mask %c sliding_window align bottom_right window 4 : tensor<1x2x4x16xf32>
  %p = attn.softmax %m axis -1 : tensor<1x2x4x16xf32>
  %o = attn.matmul %p, %v : tensor<1x2x4x16xf32>, tensor<1x2x16x64xf32> -> tensor<1x2x4x64xf32>
  return %o : tensor<1x2x4x64xf32>
}
