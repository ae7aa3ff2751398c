// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-lower-to-gpu{num-warps=4})"

// tile_lse on the GPU (attn-tile's lse form, hand-written here): it must
// read the online softmax's own max and sum, and write a kernel argument.
func.func @lse_of_another_max(%arg0: memref<1x1x64x64xf16>, %arg1: memref<1x1x64x64xf16>, %arg2: memref<1x1x64x64xf16>, %arg3: memref<1x1x64xf32>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c0 = arith.constant 0 : index
  %c64 = arith.constant 64 : index
  %q = memref.alloc() : memref<64x64xf32>
  %s = memref.alloc() : memref<64x64xf32>
  %acc = memref.alloc() : memref<64x64xf32>
  %max = memref.alloc() : memref<64xf32>
  %sum = memref.alloc() : memref<64xf32>
  %k = memref.alloc() : memref<64x64xf32>
  %v = memref.alloc() : memref<64x64xf32>
  %other = memref.alloc() : memref<64xf32>
  %local = memref.alloc() : memref<1x1x64xf32>
  linalg.fill ins(%cst_0 : f32) outs(%acc : memref<64x64xf32>)
  linalg.fill ins(%cst : f32) outs(%max : memref<64xf32>)
  linalg.fill ins(%cst_0 : f32) outs(%sum : memref<64xf32>)
  attn.copy_tile %arg0[%c0, %c0, %c0] to %q scale 1.250000e-01 valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.copy_tile %arg1[%c0, %c0, %c0] to %k transposed valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.copy_tile %arg1[%c0, %c0, %c0] to %v valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.tile_matmul %q, %k into %s : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  attn.tile_softmax %s, %max, %sum, %acc : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
  attn.tile_matmul %s, %v into %acc accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  attn.tile_store %acc, %sum to %arg2[%c0, %c0, %c0] valid %c64 : memref<64x64xf32>, memref<64xf32>, memref<1x1x64x64xf16>
  // expected-error @+1 {{attn-lower-to-gpu: tile_lse must read the running max and sum of tile_softmax}}
  attn.tile_lse %other, %sum to %arg3[%c0, %c0, %c0] valid %c64 : memref<64xf32>, memref<64xf32>, memref<1x1x64xf32>
  return
}

// -----

func.func @lse_into_a_local_buffer(%arg0: memref<1x1x64x64xf16>, %arg1: memref<1x1x64x64xf16>, %arg2: memref<1x1x64x64xf16>, %arg3: memref<1x1x64xf32>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c0 = arith.constant 0 : index
  %c64 = arith.constant 64 : index
  %q = memref.alloc() : memref<64x64xf32>
  %s = memref.alloc() : memref<64x64xf32>
  %acc = memref.alloc() : memref<64x64xf32>
  %max = memref.alloc() : memref<64xf32>
  %sum = memref.alloc() : memref<64xf32>
  %k = memref.alloc() : memref<64x64xf32>
  %v = memref.alloc() : memref<64x64xf32>
  %other = memref.alloc() : memref<64xf32>
  %local = memref.alloc() : memref<1x1x64xf32>
  linalg.fill ins(%cst_0 : f32) outs(%acc : memref<64x64xf32>)
  linalg.fill ins(%cst : f32) outs(%max : memref<64xf32>)
  linalg.fill ins(%cst_0 : f32) outs(%sum : memref<64xf32>)
  attn.copy_tile %arg0[%c0, %c0, %c0] to %q scale 1.250000e-01 valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.copy_tile %arg1[%c0, %c0, %c0] to %k transposed valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.copy_tile %arg1[%c0, %c0, %c0] to %v valid %c64 : memref<1x1x64x64xf16>, memref<64x64xf32>
  attn.tile_matmul %q, %k into %s : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  attn.tile_softmax %s, %max, %sum, %acc : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
  attn.tile_matmul %s, %v into %acc accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  attn.tile_store %acc, %sum to %arg2[%c0, %c0, %c0] valid %c64 : memref<64x64xf32>, memref<64xf32>, memref<1x1x64x64xf16>
  // expected-error @+1 {{attn-lower-to-gpu: tile_lse must write a function argument}}
  attn.tile_lse %max, %sum to %local[%c0, %c0, %c0] valid %c64 : memref<64xf32>, memref<64xf32>, memref<1x1x64xf32>
  return
}
