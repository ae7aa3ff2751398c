// RUN: attncc-opt %s -verify-diagnostics -attn-lower-to-gpu

// The pass runs on the tile program: graph-level ops are a clear error.
func.func @untiled(%q: tensor<1x2x64x64xf16>, %k: tensor<1x2x64x64xf16>) -> tensor<1x2x64x64xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: function 'untiled' still has graph-level attn ops (run attn-fuse and attn-tile first)}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16>, tensor<1x2x64x64xf16> -> tensor<1x2x64x64xf16>
  return %0 : tensor<1x2x64x64xf16>
}
