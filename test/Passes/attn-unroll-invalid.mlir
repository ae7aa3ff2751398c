// RUN: attncc-opt %s -split-input-file -attn-unroll=factor=0 -verify-diagnostics

// expected-error @+1 {{attn-unroll: factor must be in [1, 16], got 0}}
func.func @bad_factor() {
  return
}
