// RUN: attncc-opt %s -attn-unroll="factor=2 loop=q" -verify-diagnostics

// expected-error @+1 {{attn-unroll: unknown loop 'q' (expected 'kv')}}
func.func @bad_loop() {
  return
}
