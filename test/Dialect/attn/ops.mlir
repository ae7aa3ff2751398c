// RUN: attncc-opt %s | attncc-opt | FileCheck %s
// RUN: attncc-opt %s --mlir-print-op-generic | attncc-opt | FileCheck %s

// CHECK-LABEL: func @graph
func.func @graph(%q: tensor<2x8x128x64xf16>, %k: tensor<2x8x256x64xf16>,
                 %v: tensor<2x8x256x64xf16>, %b: tensor<1x1x128x256xf32>)
    -> tensor<2x8x128x64xf16> {
  // CHECK: attn.matmul %{{.*}}, %{{.*}} transpose_rhs : tensor<2x8x128x64xf16>, tensor<2x8x256x64xf16> -> tensor<2x8x128x256xf32>
  %s = attn.matmul %q, %k transpose_rhs : tensor<2x8x128x64xf16>, tensor<2x8x256x64xf16> -> tensor<2x8x128x256xf32>
  // CHECK: attn.scale %{{.*}} by 1.250000e-01 : tensor<2x8x128x256xf32>
  %t = attn.scale %s by 0.125 : tensor<2x8x128x256xf32>
  // CHECK: attn.mask %{{.*}} causal : tensor<2x8x128x256xf32>
  %c = attn.mask %t causal : tensor<2x8x128x256xf32>
  // CHECK: attn.mask %{{.*}} sliding_window window 64 : tensor<2x8x128x256xf32>
  %w = attn.mask %c sliding_window window 64 : tensor<2x8x128x256xf32>
  // CHECK: attn.mask %{{.*}} bias(%{{.*}} : tensor<1x1x128x256xf32>) : tensor<2x8x128x256xf32>
  %m = attn.mask %w bias(%b : tensor<1x1x128x256xf32>) : tensor<2x8x128x256xf32>
  // CHECK: attn.softmax %{{.*}} axis -1 : tensor<2x8x128x256xf32>
  %p = attn.softmax %m axis -1 : tensor<2x8x128x256xf32>
  // CHECK: attn.cast %{{.*}} : tensor<2x8x256x64xf16> to tensor<2x8x256x64xf32>
  %vf = attn.cast %v : tensor<2x8x256x64xf16> to tensor<2x8x256x64xf32>
  // CHECK: attn.matmul %{{.*}}, %{{.*}} : tensor<2x8x128x256xf32>, tensor<2x8x256x64xf32> -> tensor<2x8x128x64xf32>
  %o = attn.matmul %p, %vf : tensor<2x8x128x256xf32>, tensor<2x8x256x64xf32> -> tensor<2x8x128x64xf32>
  %h = attn.cast %o : tensor<2x8x128x64xf32> to tensor<2x8x128x64xf16>
  return %h : tensor<2x8x128x64xf16>
}

// CHECK-LABEL: func @repeat
func.func @repeat(%k: tensor<1x2x16x64xbf16>) -> tensor<1x8x16x64xbf16> {
  // CHECK: attn.repeat_heads %{{.*}} by 4 : tensor<1x2x16x64xbf16> -> tensor<1x8x16x64xbf16>
  %r = attn.repeat_heads %k by 4 : tensor<1x2x16x64xbf16> -> tensor<1x8x16x64xbf16>
  return %r : tensor<1x8x16x64xbf16>
}

// CHECK-LABEL: func @fused
func.func @fused(%q: tensor<1x32x128x64xf16>, %k: tensor<1x8x100x64xf16>,
                 %v: tensor<1x8x100x128xf16>, %b: tensor<128x100xf32>,
                 %dq: tensor<?x4x?x64xf32>, %dk: tensor<?x1x?x64xf32>) {
  // CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.250000e-01 mask causal kv_group 4 : tensor<1x32x128x64xf16>, tensor<1x8x100x64xf16>, tensor<1x8x100x128xf16> -> tensor<1x32x128x128xf16>
  %0 = attn.attention %q, %k, %v scale 0.125 mask causal kv_group 4
      : tensor<1x32x128x64xf16>, tensor<1x8x100x64xf16>, tensor<1x8x100x128xf16> -> tensor<1x32x128x128xf16>
  // CHECK: attn.attention {{.*}} mask sliding_window window 32 kv_group 4
  %1 = attn.attention %q, %k, %v scale 0.125 mask sliding_window window 32 kv_group 4
      : tensor<1x32x128x64xf16>, tensor<1x8x100x64xf16>, tensor<1x8x100x128xf16> -> tensor<1x32x128x128xf32>
  // CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<128x100xf32>) scale 1.000000e+00 mask bias kv_group 4
  %2 = attn.attention %q, %k, %v bias(%b : tensor<128x100xf32>) scale 1.0 mask bias kv_group 4
      : tensor<1x32x128x64xf16>, tensor<1x8x100x64xf16>, tensor<1x8x100x128xf16> -> tensor<1x32x128x128xf16>
  // Dynamic batch and sequence lengths; MQA (one KV head).
  // CHECK: attn.attention {{.*}} mask none kv_group 4 : tensor<?x4x?x64xf32>, tensor<?x1x?x64xf32>
  %3 = attn.attention %dq, %dk, %dk scale 0.125 mask none kv_group 4
      : tensor<?x4x?x64xf32>, tensor<?x1x?x64xf32>, tensor<?x1x?x64xf32> -> tensor<?x4x?x64xf32>
  return
}

// Quantized KV caches: fp8 key and value under a wider query and result.
// CHECK-LABEL: func @fp8_kv
func.func @fp8_kv(%q: tensor<?x32x?x128xbf16>, %k: tensor<?x8x?x128xf8E4M3FN>,
                  %k2: tensor<?x8x?x128xf8E5M2>) {
  // CHECK: attn.attention {{.*}} : tensor<?x32x?x128xbf16>, tensor<?x8x?x128xf8E4M3FN>, tensor<?x8x?x128xf8E4M3FN> -> tensor<?x32x?x128xbf16>
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal align bottom_right kv_group 4
      : tensor<?x32x?x128xbf16>, tensor<?x8x?x128xf8E4M3FN>, tensor<?x8x?x128xf8E4M3FN> -> tensor<?x32x?x128xbf16>
  // CHECK: attn.attention {{.*}} : tensor<?x32x?x128xbf16>, tensor<?x8x?x128xf8E5M2>, tensor<?x8x?x128xf8E5M2> -> tensor<?x32x?x128xf32>
  %1 = attn.attention %q, %k2, %k2 scale 0.125 mask none kv_group 4
      : tensor<?x32x?x128xbf16>, tensor<?x8x?x128xf8E5M2>, tensor<?x8x?x128xf8E5M2> -> tensor<?x32x?x128xf32>
  return
}
