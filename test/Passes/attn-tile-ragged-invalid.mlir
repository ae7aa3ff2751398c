// RUN: attncc-opt %s -split-input-file -attn-tile -verify-diagnostics
// The in-place (decode) form checks the same function shape before building anything.
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 kv-in-place=true" -verify-diagnostics

func.func @not_an_argument(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>,
                           %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf32> {
  // expected-error @+1 {{attn-tile: function 'not_an_argument' must compute one attn.ragged_attention on its arguments; cannot tile 'attn.scale'}}
  %q2 = attn.scale %q by 2.0 : tensor<1x4x?x32xf32>
  %o = attn.ragged_attention %q2, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}

// -----

func.func @result_not_returned(%q: tensor<1x4x?x32xf16>, %k: tensor<?x2x16x32xf16>,
                               %v: tensor<?x2x16x32xf16>, %w: tensor<?x7xi32>,
                               %bt: tensor<?x?xi32>) -> tensor<1x4x?x32xf16> {
  // expected-error @+1 {{attn-tile: the function must return the attention result}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      scale 0.125 kv_group 2
      : tensor<1x4x?x32xf16>, tensor<?x2x16x32xf16>, tensor<?x2x16x32xf16> -> tensor<1x4x?x32xf16>
  return %q : tensor<1x4x?x32xf16>
}
