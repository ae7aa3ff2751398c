// An op of an unregistered dialect (it has no Dialect object) beside the
// attention: attn-tile and attn-lower-to-gpu used to crash on its null
// dialect; now they say what they cannot do.
// RUN: attncc-opt %s -allow-unregistered-dialect -attn-tile -verify-diagnostics
// RUN: not attncc-opt %s -allow-unregistered-dialect -attn-lower-to-gpu="chip=sm_80" 2>&1 | FileCheck %s --check-prefix=GPU
// GPU: error: attn-lower-to-gpu: function 'f' still has graph-level attn ops (run attn-fuse and attn-tile first)
func.func @f(%q: tensor<1x2x16x16xf16>) -> tensor<1x2x16x16xf16> {
  // expected-error @+1 {{attn-tile: function 'f' must compute one attn.attention on its arguments (run attn-fuse first); cannot tile 'foo.bar'}}
  "foo.bar"() : () -> ()
  %0 = attn.attention %q, %q, %q scale 0.25 mask none kv_group 1
      : tensor<1x2x16x16xf16>, tensor<1x2x16x16xf16>, tensor<1x2x16x16xf16> -> tensor<1x2x16x16xf16>
  return %0 : tensor<1x2x16x16xf16>
}
