// RUN: attncc-opt %s | attncc-opt | FileCheck %s
// RUN: attncc-opt %s --mlir-print-op-generic | attncc-opt | FileCheck %s

// The score variants of attn.attention: alignment (printed only when not the
// default), window sides, soft-capping, ALiBi slopes and sinks.

// CHECK-LABEL: func @bottom_right_causal
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.250000e-01 mask causal align bottom_right kv_group 1
func.func @bottom_right_causal(%q: tensor<1x2x1x64xf16>, %k: tensor<1x2x128x64xf16>) -> tensor<1x2x1x64xf16> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal align bottom_right kv_group 1
      : tensor<1x2x1x64xf16>, tensor<1x2x128x64xf16>, tensor<1x2x128x64xf16> -> tensor<1x2x1x64xf16>
  return %0 : tensor<1x2x1x64xf16>
}

// CHECK-LABEL: func @top_left_is_default
// CHECK: attn.attention %{{.*}} scale 1.250000e-01 mask causal kv_group 1
// CHECK-NOT: align
func.func @top_left_is_default(%q: tensor<1x2x64x64xf16>) -> tensor<1x2x64x64xf16> {
  %0 = attn.attention %q, %q, %q scale 0.125 mask causal align top_left kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}

// CHECK-LABEL: func @everything
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} alibi_slopes(%{{.*}} : tensor<8xf32>) sinks(%{{.*}} : tensor<8xf32>) scale 1.250000e-01 softcap 3.000000e+01 mask sliding_window align bottom_right window_sides [15, -1] kv_group 4
func.func @everything(%q: tensor<?x8x?x64xbf16>, %k: tensor<?x2x?x64xbf16>, %sl: tensor<8xf32>,
                      %sk: tensor<8xf32>) -> tensor<?x8x?x64xbf16> {
  %0 = attn.attention %q, %k, %k alibi_slopes(%sl : tensor<8xf32>) sinks(%sk : tensor<8xf32>)
      scale 0.125 softcap 30.0 mask sliding_window align bottom_right window_sides [15, -1] kv_group 4
      : tensor<?x8x?x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?x2x?x64xbf16> -> tensor<?x8x?x64xbf16>
  return %0 : tensor<?x8x?x64xbf16>
}

// Bias and ALiBi together.
// CHECK-LABEL: func @bias_and_alibi
// CHECK: attn.attention %{{.*}} bias(%{{.*}} : tensor<1x1x64x64xf32>) alibi_slopes(%{{.*}} : tensor<?xf32>) scale
func.func @bias_and_alibi(%q: tensor<1x2x64x64xf32>, %b: tensor<1x1x64x64xf32>, %sl: tensor<?xf32>) -> tensor<1x2x64x64xf32> {
  %0 = attn.attention %q, %q, %q bias(%b : tensor<1x1x64x64xf32>) alibi_slopes(%sl : tensor<?xf32>) scale -0.5 mask bias kv_group 1
      : tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32> -> tensor<1x2x64x64xf32>
  return %0 : tensor<1x2x64x64xf32>
}

// Tile level.
// CHECK-LABEL: func @tile_variants
// CHECK: attn.tile_softcap %{{.*}} cap 5.000000e+01 : memref<32x16xf32>
// CHECK: attn.tile_alibi %{{.*}}, %{{.*}}[%{{.*}}] rows %{{.*}} cols %{{.*}} offset %{{.*}} : memref<32x16xf32>, memref<8xf32>
// CHECK: attn.tile_mask %{{.*}} valid %{{.*}} offset %{{.*}} causal : memref<32x16xf32>
// CHECK: attn.tile_mask %{{.*}} valid %{{.*}} sliding_window window_sides [3, 2] : memref<32x16xf32>
func.func @tile_variants(%s: memref<32x16xf32>, %sl: memref<8xf32>, %i: index) {
  attn.tile_softcap %s cap 50.0 : memref<32x16xf32>
  attn.tile_alibi %s, %sl[%i] rows %i cols %i offset %i : memref<32x16xf32>, memref<8xf32>
  attn.tile_mask %s rows %i cols %i valid %i offset %i causal : memref<32x16xf32>
  attn.tile_mask %s rows %i cols %i valid %i sliding_window window_sides [3, 2] : memref<32x16xf32>
  return
}

// The graph-level forms: attn.mask's alignment and attn.softmax's sinks.
// CHECK-LABEL: func @graph_level_variants
// CHECK: attn.mask %{{.*}} causal align bottom_right : tensor<1x8x4x32xf32>
// CHECK: attn.mask %{{.*}} sliding_window align bottom_right window 8 : tensor<1x8x4x32xf32>
// CHECK: attn.mask %{{.*}} causal : tensor<1x8x4x32xf32>
// CHECK: attn.softmax %{{.*}} axis -1 sinks(%{{.*}} : tensor<8xf32>) : tensor<1x8x4x32xf32>
func.func @graph_level_variants(%s: tensor<1x8x4x32xf32>, %sk: tensor<8xf32>) -> tensor<1x8x4x32xf32> {
  %a = attn.mask %s causal align bottom_right : tensor<1x8x4x32xf32>
  %b = attn.mask %a sliding_window align bottom_right window 8 : tensor<1x8x4x32xf32>
  %c = attn.mask %b causal align top_left : tensor<1x8x4x32xf32>
  %p = attn.softmax %c axis -1 sinks(%sk : tensor<8xf32>) : tensor<1x8x4x32xf32>
  return %p : tensor<1x8x4x32xf32>
}
