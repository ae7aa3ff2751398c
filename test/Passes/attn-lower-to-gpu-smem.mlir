// RUN: attncc-opt %s -verify-diagnostics --pass-pipeline="builtin.module(attn-tile{block-m=256 block-n=256},canonicalize,cse,func.func(attn-pipeline{num-stages=4}),attn-lower-to-gpu{num-warps=16})"

// 256 x 128 Q + 4 x 2 x 256 x 128 K/V tiles = 589824 bytes: more than a block may use.
func.func @too_much_shared_memory(%q: tensor<1x1x512x128xf16>, %k: tensor<1x1x2048x128xf16>) -> tensor<1x1x512x128xf16> {
  // expected-error @+1 {{attn-lower-to-gpu: the tiles need 589824 bytes of shared memory, more than sm_80 allows per block (166912); use fewer stages or smaller blocks}}
  %0 = attn.attention %q, %k, %k scale 0.125 mask none kv_group 1
      : tensor<1x1x512x128xf16>, tensor<1x1x2048x128xf16>, tensor<1x1x2048x128xf16> -> tensor<1x1x512x128xf16>
  return %0 : tensor<1x1x512x128xf16>
}
