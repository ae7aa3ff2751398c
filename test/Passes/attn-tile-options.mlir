// RUN: attncc-opt %s -attn-tile="block-m=48" -verify-diagnostics

// expected-error @+1 {{attn-tile: block-m must be a power of two, got 48}}
func.func @f(%q: tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32> {
  %0 = attn.attention %q, %q, %q scale 0.25 mask none kv_group 1
      : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  return %0 : tensor<1x2x16x16xf32>
}
