// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-lower-to-gpu{num-warps=4})"

// tile_combine on the GPU (hand-written here; attn-tile's split-kv form makes
// it): its buffers are kernel arguments, and it is alone in its grid (the
// whole grid becomes the combine kernel).
func.func @combine_from_local_buffers(%out: memref<1x2x4x64xf16>, %lse: memref<1x2x4xf32>) {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %part = memref.alloc() : memref<2x2x4x64xf32>
  %plse = memref.alloc() : memref<2x2x4xf32>
  // expected-error @+1 {{attn-lower-to-gpu: tile_combine's buffers must be function arguments}}
  attn.tile_combine %part, %plse splits %c2 to %out, %lse[%c0, %c0, %c0] valid %c4
      : memref<2x2x4x64xf32>, memref<2x2x4xf32>, memref<1x2x4x64xf16>, memref<1x2x4xf32>
  return
}

// -----

func.func @combine_beside_other_tile_ops(%out: memref<1x2x4x64xf16>, %lse: memref<1x2x4xf32>,
                                         %part: memref<2x2x4x64xf32>, %plse: memref<2x2x4xf32>,
                                         %go: i1) {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %m = memref.alloc() : memref<64xf32>
  scf.if %go {
    attn.tile_lse %m, %m to %lse[%c0, %c0, %c0] valid %c4 : memref<64xf32>, memref<64xf32>, memref<1x2x4xf32>
    // expected-error @+1 {{attn-lower-to-gpu: tile_combine must be alone in attn-tile's combine grid}}
    attn.tile_combine %part, %plse splits %c2 to %out, %lse[%c0, %c0, %c0] valid %c4
        : memref<2x2x4x64xf32>, memref<2x2x4xf32>, memref<1x2x4x64xf16>, memref<1x2x4xf32>
  }
  return
}
