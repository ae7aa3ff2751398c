// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 amx=true" -verify-diagnostics

// Pairs on K/V rows read in place are vdpbf16ps code (attn-tile
// kv-in-place-pairs is set for the AVX-512-BF16 class only): the AMX
// lowering refuses them by name instead of miscompiling them as AMX tiles.
func.func @qk(%a: memref<4x64xbf16>, %k: memref<?x64xbf16>, %s: memref<4x16xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: pairs on K/V rows read in place (kv-in-place) need the bf16-dot option (vdpbf16ps)}}
  attn.tile_matmul %a, %k transposed pairs scale 0.125 into %s : memref<4x64xbf16>, memref<?x64xbf16>, memref<4x16xf32>
  return
}

// -----

func.func @pv(%p: memref<4x16xbf16>, %v: memref<?x32xbf16>, %acc: memref<4x32xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: pairs on K/V rows read in place (kv-in-place) need the bf16-dot option (vdpbf16ps)}}
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<4x16xbf16>, memref<?x32xbf16>, memref<4x32xf32>
  return
}
