// RUN: attncc-opt %s -split-input-file -verify-diagnostics -attn-lower-to-gpu

// What attn-lower-to-gpu still refuses of the score variants: tile programs
// (hand-written) whose tile_softcap / tile_alibi do not fit the kernel. The
// variants attn-tile produces lower (attn-lower-to-gpu-variants.mlir).

// Soft-capping must apply to the score tile (the one the softmax reads).
func.func @softcap_of_the_accumulator(%arg0: memref<1x2x64x64xf16>, %arg1: memref<1x2x64x64xf16>, %arg2: memref<2xf32>, %arg3: memref<1x2x64x64xf16>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%arg4) = (%c0) to (%c2) step (%c1) {
    %q = memref.alloc() : memref<64x64xf32>
    %s = memref.alloc() : memref<64x64xf32>
    %acc = memref.alloc() : memref<64x64xf32>
    %mx = memref.alloc() : memref<64xf32>
    %sum = memref.alloc() : memref<64xf32>
    %k = memref.alloc() : memref<64x64xf32>
    %v = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%acc : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%mx : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%sum : memref<64xf32>)
    attn.copy_tile %arg0[%c0, %arg4, %c0] to %q scale 1.250000e-01 valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %k transposed valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %v valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.tile_matmul %q, %k into %s : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    // expected-error @+1 {{attn-lower-to-gpu: tile_softcap must cap the score tile}}
    attn.tile_softcap %acc cap 3.000000e+01 : memref<64x64xf32>
    attn.tile_softmax %s, %mx, %sum, %acc : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
    attn.tile_matmul %s, %v into %acc accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    attn.tile_store %acc, %sum to %arg3[%c0, %arg4, %c0] valid %c64 : memref<64x64xf32>, memref<64xf32>, memref<1x2x64x64xf16>
    scf.reduce
  }
  return
}

// -----

// ALiBi must add to the score tile.
func.func @alibi_of_the_q_tile(%arg0: memref<1x2x64x64xf16>, %arg1: memref<1x2x64x64xf16>, %arg2: memref<2xf32>, %arg3: memref<1x2x64x64xf16>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%arg4) = (%c0) to (%c2) step (%c1) {
    %q = memref.alloc() : memref<64x64xf32>
    %s = memref.alloc() : memref<64x64xf32>
    %acc = memref.alloc() : memref<64x64xf32>
    %mx = memref.alloc() : memref<64xf32>
    %sum = memref.alloc() : memref<64xf32>
    %k = memref.alloc() : memref<64x64xf32>
    %v = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%acc : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%mx : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%sum : memref<64xf32>)
    attn.copy_tile %arg0[%c0, %arg4, %c0] to %q scale 1.250000e-01 valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %k transposed valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %v valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.tile_matmul %q, %k into %s : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    // expected-error @+1 {{attn-lower-to-gpu: tile_alibi must add to the score tile}}
    attn.tile_alibi %q, %arg2[%arg4] rows %c0 cols %c0 offset %c0 : memref<64x64xf32>, memref<2xf32>
    attn.tile_softmax %s, %mx, %sum, %acc : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
    attn.tile_matmul %s, %v into %acc accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    attn.tile_store %acc, %sum to %arg3[%c0, %arg4, %c0] valid %c64 : memref<64x64xf32>, memref<64xf32>, memref<1x2x64x64xf16>
    scf.reduce
  }
  return
}

// -----

// The kernel reads the slopes from global memory: a buffer made inside the grid is refused.
func.func @alibi_slopes_in_the_kernel(%arg0: memref<1x2x64x64xf16>, %arg1: memref<1x2x64x64xf16>, %arg2: memref<2xf32>, %arg3: memref<1x2x64x64xf16>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%arg4) = (%c0) to (%c2) step (%c1) {
    %q = memref.alloc() : memref<64x64xf32>
    %s = memref.alloc() : memref<64x64xf32>
    %acc = memref.alloc() : memref<64x64xf32>
    %mx = memref.alloc() : memref<64xf32>
    %sum = memref.alloc() : memref<64xf32>
    %k = memref.alloc() : memref<64x64xf32>
    %v = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%acc : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%mx : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%sum : memref<64xf32>)
    attn.copy_tile %arg0[%c0, %arg4, %c0] to %q scale 1.250000e-01 valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %k transposed valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.copy_tile %arg1[%c0, %arg4, %c0] to %v valid %c64 : memref<1x2x64x64xf16>, memref<64x64xf32>
    attn.tile_matmul %q, %k into %s : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    %slopes = memref.alloc() : memref<2xf32>
    // expected-error @+1 {{attn-lower-to-gpu: the ALiBi slopes must be a function argument in global memory}}
    attn.tile_alibi %s, %slopes[%arg4] rows %c0 cols %c0 offset %c0 : memref<64x64xf32>, memref<2xf32>
    attn.tile_softmax %s, %mx, %sum, %acc : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
    attn.tile_matmul %s, %v into %acc accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    attn.tile_store %acc, %sum to %arg3[%c0, %arg4, %c0] valid %c64 : memref<64x64xf32>, memref<64xf32>, memref<1x2x64x64xf16>
    scf.reduce
  }
  return
}
