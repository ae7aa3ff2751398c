// RUN: attncc-opt %s -attn-tile="cpu-tasks=-1" -verify-diagnostics

// expected-error @+1 {{attn-tile: cpu-tasks must be >= 0 and min-task-work >= 1, got -1 and 1048576}}
func.func @attn(%q: tensor<1x2x64x64xf32>) -> tensor<1x2x64x64xf32> {
  %0 = attn.attention %q, %q, %q scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32>, tensor<1x2x64x64xf32> -> tensor<1x2x64x64xf32>
  return %0 : tensor<1x2x64x64xf32>
}
