// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 amx=true" -verify-diagnostics
// RUN: not attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16" 2>&1 | FileCheck %s --check-prefix=NOAMX

// Pairs forms the AMX lowering cannot take: reported, nothing rewritten.
// Without the amx (or bf16-dot) option a pairs matmul is refused by name:
// NOAMX: error: 'attn.tile_matmul' op attn-lower-to-cpu: a pairs tile_matmul needs the amx or bf16-dot option (a target with AMX bf16 or AVX-512-BF16)
// NOAMX: error: 'attn.copy_tile' op attn-lower-to-cpu: a pairs copy needs whole blocks of 16 lanes

func.func @rows(%a: memref<8x64xbf16>, %b: memref<32x128xbf16>, %c: memref<8x64xf32>) {
  // expected-error @+1 {{attn-lower-to-cpu: a pairs tile_matmul on AMX needs static rows and columns that are multiples of 16 and a contraction extent that is a multiple of 32, got a 'memref<8x64xbf16>' and c 'memref<8x64xf32>'}}
  attn.tile_matmul %a, %b pairs into %c : memref<8x64xbf16>, memref<32x128xbf16>, memref<8x64xf32>
  return
}

// -----

func.func @copy_blocks(%k: memref<1x1x?x40xbf16>, %kt: memref<20x32xbf16>, %i: index) {
  // expected-error @+1 {{attn-lower-to-cpu: a pairs copy needs whole blocks of 16 lanes (head_dim and, transposed, the tile's keys), got 'memref<20x32xbf16>'}}
  attn.copy_tile %k[%i, %i, %i] to %kt transposed pairs valid %i : memref<1x1x?x40xbf16>, memref<20x32xbf16>
  return
}
