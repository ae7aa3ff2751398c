// RUN: attncc-opt %s -attn-tile="kv-in-place=true heads-inner=true" -verify-diagnostics

// Every head's row tiles live through the KV loop: their count must be static.
func.func @dynamic_heads(%q: tensor<1x?x?x32xf32>, %k: tensor<1x?x?x32xf32>,
                         %v: tensor<1x?x?x32xf32>, %w: tensor<?x7xi32>) -> tensor<1x?x?x32xf32> {
  // expected-error @+1 {{attn-tile: heads-inner needs a static head count}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x?x?x32xf32>, tensor<1x?x?x32xf32>, tensor<1x?x?x32xf32> -> tensor<1x?x?x32xf32>
  return %o : tensor<1x?x?x32xf32>
}
