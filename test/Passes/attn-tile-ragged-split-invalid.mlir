// RUN: attncc-opt %s -attn-tile="split-kv=true" -verify-diagnostics

// Split-KV is attn.attention's form: a ragged work item has its own KV range,
// so a split count per call does not apply (docs/ragged-paged.md).
func.func @split_kv_refused(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>,
                            %v: tensor<1x4x?x32xf32>, %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf32> {
  // expected-error @+1 {{attn-tile: split-kv is not supported for attn.ragged_attention}}
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125 kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}
