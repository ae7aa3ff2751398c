// RUN: attncc-opt %s -attn-tile="block-m=64 block-n=64 bf16-pairs=true" -attn-lower-to-gpu -verify-diagnostics

// The CPU's AMX layout (attn-tile bf16-pairs) is refused by name, before the
// GPU analysis.
func.func @attn(%q: tensor<1x2x128x64xbf16>, %k: tensor<1x2x128x64xbf16>, %v: tensor<1x2x128x64xbf16>) -> tensor<1x2x128x64xbf16> {
  // expected-error @+1 {{attn-lower-to-gpu: the CPU's bf16 pairs form (attn-tile bf16-pairs) is not supported by attn-lower-to-gpu}}
  %0 = attn.attention %q, %k, %v scale 0.125 mask none kv_group 1
      : tensor<1x2x128x64xbf16>, tensor<1x2x128x64xbf16>, tensor<1x2x128x64xbf16> -> tensor<1x2x128x64xbf16>
  return %0 : tensor<1x2x128x64xbf16>
}
