// RUN: attncc-opt %s -split-input-file -attn-pipeline=num-stages=0 -verify-diagnostics

// expected-error @+1 {{attn-pipeline: num-stages must be in [1, 8], got 0}}
func.func @bad_stages() {
  return
}
