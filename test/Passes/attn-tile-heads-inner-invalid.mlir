// RUN: attncc-opt %s -split-input-file -attn-tile="heads-inner=true" -verify-diagnostics

// heads-inner is the decode form of attn.ragged_attention: K/V read in place
// (kv-in-place), whose blocks are views and need no per-head buffers.
func.func @needs_kv_in_place(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>,
                             %v: tensor<1x4x?x32xf32>, %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf32> {
  // expected-error @+1 {{attn-tile: heads-inner needs kv-in-place (the decode form)}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// -----

// attn.attention's decode grid is (batch, KV head); heads-inner is not its form.
// expected-error @+1 {{attn-tile: heads-inner applies to attn.ragged_attention only}}
func.func @not_ragged(%q: tensor<1x4x1x32xf32>, %k: tensor<1x4x64x32xf32>,
                      %v: tensor<1x4x64x32xf32>) -> tensor<1x4x1x32xf32> {
  %o = attn.attention %q, %k, %v scale 0.125 mask none kv_group 1
      : tensor<1x4x1x32xf32>, tensor<1x4x64x32xf32>, tensor<1x4x64x32xf32> -> tensor<1x4x1x32xf32>
  return %o : tensor<1x4x1x32xf32>
}
