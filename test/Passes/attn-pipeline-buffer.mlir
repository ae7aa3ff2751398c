// RUN: attncc-opt %s -split-input-file -attn-pipeline=num-stages=2 -verify-diagnostics

func.func @buffer_escapes(%k: memref<1x1x128x16xf32>) {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c128 = arith.constant 128 : index
  // expected-error @+1 {{attn-pipeline: a K/V tile buffer is used outside the KV loop}}
  %kt = memref.alloc() : memref<16x16xf32>
  scf.for %n0 = %c0 to %c128 step %c16 {
    attn.copy_tile %k[%c0, %c0, %n0] to %kt valid %c16 : memref<1x1x128x16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  %v = memref.load %kt[%c0, %c0] : memref<16x16xf32>
  return
}
