// RUN: attncc-opt %s -split-input-file -verify-diagnostics --pass-pipeline="builtin.module(attn-lower-to-gpu{num-warps=4})"

// The GPU plan's checks of attn.gather_tile (paged K/V through a block table)
// on hand-edited tile programs: the form attn-tile produces for a paged
// attn.ragged_attention (test/Passes/attn-lower-to-gpu-ragged.mlir), with one
// thing changed each.

// A gather into the score tile.
func.func @gather_into_scores(%arg0: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, %arg1: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg2: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg3: memref<?x7xi32>, %arg4: memref<?x?xi32>, %arg5: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>) attributes {attn.ragged} {
  %c63 = arith.constant 63 : index
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c6 = arith.constant 6 : index
  %c5 = arith.constant 5 : index
  %c3 = arith.constant 3 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %dim = memref.dim %arg3, %c0 : memref<?x7xi32>
  scf.parallel (%arg6, %arg7) = (%c0, %c0) to (%dim, %c4) step (%c1, %c1) {
    %0 = memref.load %arg3[%arg6, %c0] : memref<?x7xi32>
    %1 = arith.index_cast %0 : i32 to index
    %2 = memref.load %arg3[%arg6, %c1] : memref<?x7xi32>
    %3 = arith.index_cast %2 : i32 to index
    %4 = memref.load %arg3[%arg6, %c2] : memref<?x7xi32>
    %5 = arith.index_cast %4 : i32 to index
    %6 = memref.load %arg3[%arg6, %c3] : memref<?x7xi32>
    %7 = arith.index_cast %6 : i32 to index
    %8 = memref.load %arg3[%arg6, %c4] : memref<?x7xi32>
    %9 = arith.index_cast %8 : i32 to index
    %10 = memref.load %arg3[%arg6, %c5] : memref<?x7xi32>
    %11 = arith.index_cast %10 : i32 to index
    %12 = memref.load %arg3[%arg6, %c6] : memref<?x7xi32>
    %13 = arith.index_cast %12 : i32 to index
    %14 = arith.divui %arg7, %c2 : index
    %alloc = memref.alloc() : memref<64x64xf32>
    %alloc_1 = memref.alloc() : memref<64x64xf32>
    %alloc_2 = memref.alloc() : memref<64x64xf32>
    %alloc_3 = memref.alloc() : memref<64xf32>
    %alloc_4 = memref.alloc() : memref<64xf32>
    %alloc_5 = memref.alloc() : memref<64x64xf32>
    %alloc_6 = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%alloc_2 : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%alloc_3 : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%alloc_4 : memref<64xf32>)
    attn.copy_tile %arg0[%1, %arg7, %3] to %alloc scale 1.250000e-01 valid %5 : memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, memref<64x64xf32>
    %15 = arith.addi %13, %c64 : index
    %16 = arith.minsi %11, %15 : index
    %17 = arith.maxsi %16, %c0 : index
    scf.for %arg8 = %c0 to %17 step %c64 {
      %18 = arith.subi %11, %arg8 : index
      %19 = arith.addi %9, %arg8 : index
      // expected-error @+1 {{attn-lower-to-gpu: gather_tile into a buffer that is neither K nor V}}
      attn.gather_tile %arg1[%arg4[%7], %14, %19] to %alloc_1 transposed valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.gather_tile %arg2[%arg4[%7], %14, %19] to %alloc_6 valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.tile_matmul %alloc, %alloc_5 into %alloc_1 : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
      %20 = arith.addi %arg8, %c64 : index
      %21 = arith.cmpi sgt, %20, %11 : index
      %22 = arith.addi %arg8, %c63 : index
      %23 = arith.cmpi sgt, %22, %13 : index
      %24 = arith.ori %21, %23 : i1
      scf.if %24 {
        attn.tile_mask %alloc_1 rows %13 cols %arg8 valid %18 sliding_window window_sides [-1, 0] : memref<64x64xf32>
      }
      attn.tile_softmax %alloc_1, %alloc_3, %alloc_4, %alloc_2 : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
      attn.tile_matmul %alloc_1, %alloc_6 into %alloc_2 accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    } {attn.kv_loop}
    attn.tile_store %alloc_2, %alloc_4 to %arg5[%1, %arg7, %3] valid %5 : memref<64x64xf32>, memref<64xf32>, memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>
    memref.dealloc %alloc : memref<64x64xf32>
    memref.dealloc %alloc_1 : memref<64x64xf32>
    memref.dealloc %alloc_2 : memref<64x64xf32>
    memref.dealloc %alloc_3 : memref<64xf32>
    memref.dealloc %alloc_4 : memref<64xf32>
    memref.dealloc %alloc_5 : memref<64x64xf32>
    memref.dealloc %alloc_6 : memref<64x64xf32>
    scf.reduce 
  } {attn.grid}
  return
}

// -----

// A block table allocated in the kernel (cp.async reads global memory the
// launch passes in).
func.func @table_not_an_argument(%arg0: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, %arg1: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg2: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg3: memref<?x7xi32>, %arg4: memref<?x?xi32>, %arg5: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>) attributes {attn.ragged} {
  %c63 = arith.constant 63 : index
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c6 = arith.constant 6 : index
  %c5 = arith.constant 5 : index
  %c3 = arith.constant 3 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %dim = memref.dim %arg3, %c0 : memref<?x7xi32>
  scf.parallel (%arg6, %arg7) = (%c0, %c0) to (%dim, %c4) step (%c1, %c1) {
    %0 = memref.load %arg3[%arg6, %c0] : memref<?x7xi32>
    %1 = arith.index_cast %0 : i32 to index
    %2 = memref.load %arg3[%arg6, %c1] : memref<?x7xi32>
    %3 = arith.index_cast %2 : i32 to index
    %4 = memref.load %arg3[%arg6, %c2] : memref<?x7xi32>
    %5 = arith.index_cast %4 : i32 to index
    %6 = memref.load %arg3[%arg6, %c3] : memref<?x7xi32>
    %7 = arith.index_cast %6 : i32 to index
    %8 = memref.load %arg3[%arg6, %c4] : memref<?x7xi32>
    %9 = arith.index_cast %8 : i32 to index
    %10 = memref.load %arg3[%arg6, %c5] : memref<?x7xi32>
    %11 = arith.index_cast %10 : i32 to index
    %12 = memref.load %arg3[%arg6, %c6] : memref<?x7xi32>
    %13 = arith.index_cast %12 : i32 to index
    %14 = arith.divui %arg7, %c2 : index
    %table = memref.alloc(%c1, %c1) : memref<?x?xi32>
    %alloc = memref.alloc() : memref<64x64xf32>
    %alloc_1 = memref.alloc() : memref<64x64xf32>
    %alloc_2 = memref.alloc() : memref<64x64xf32>
    %alloc_3 = memref.alloc() : memref<64xf32>
    %alloc_4 = memref.alloc() : memref<64xf32>
    %alloc_5 = memref.alloc() : memref<64x64xf32>
    %alloc_6 = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%alloc_2 : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%alloc_3 : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%alloc_4 : memref<64xf32>)
    attn.copy_tile %arg0[%1, %arg7, %3] to %alloc scale 1.250000e-01 valid %5 : memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, memref<64x64xf32>
    %15 = arith.addi %13, %c64 : index
    %16 = arith.minsi %11, %15 : index
    %17 = arith.maxsi %16, %c0 : index
    scf.for %arg8 = %c0 to %17 step %c64 {
      %18 = arith.subi %11, %arg8 : index
      %19 = arith.addi %9, %arg8 : index
      // expected-error @+1 {{attn-lower-to-gpu: gather_tile's cache and block table must be kernel arguments}}
      attn.gather_tile %arg1[%table[%7], %14, %19] to %alloc_5 transposed valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.gather_tile %arg2[%arg4[%7], %14, %19] to %alloc_6 valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.tile_matmul %alloc, %alloc_5 into %alloc_1 : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
      %20 = arith.addi %arg8, %c64 : index
      %21 = arith.cmpi sgt, %20, %11 : index
      %22 = arith.addi %arg8, %c63 : index
      %23 = arith.cmpi sgt, %22, %13 : index
      %24 = arith.ori %21, %23 : i1
      scf.if %24 {
        attn.tile_mask %alloc_1 rows %13 cols %arg8 valid %18 sliding_window window_sides [-1, 0] : memref<64x64xf32>
      }
      attn.tile_softmax %alloc_1, %alloc_3, %alloc_4, %alloc_2 : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
      attn.tile_matmul %alloc_1, %alloc_6 into %alloc_2 accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    } {attn.kv_loop}
    attn.tile_store %alloc_2, %alloc_4 to %arg5[%1, %arg7, %3] valid %5 : memref<64x64xf32>, memref<64xf32>, memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>
    memref.dealloc %alloc : memref<64x64xf32>
    memref.dealloc %alloc_1 : memref<64x64xf32>
    memref.dealloc %alloc_2 : memref<64x64xf32>
    memref.dealloc %alloc_3 : memref<64xf32>
    memref.dealloc %alloc_4 : memref<64xf32>
    memref.dealloc %alloc_5 : memref<64x64xf32>
    memref.dealloc %alloc_6 : memref<64x64xf32>
    scf.reduce 
  } {attn.grid}
  return
}

// -----

// K's tile gathered from two caches.
func.func @two_caches_into_k(%arg0: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, %arg1: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg2: memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, %arg3: memref<?x7xi32>, %arg4: memref<?x?xi32>, %arg5: memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>) attributes {attn.ragged} {
  %c63 = arith.constant 63 : index
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %c6 = arith.constant 6 : index
  %c5 = arith.constant 5 : index
  %c3 = arith.constant 3 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %dim = memref.dim %arg3, %c0 : memref<?x7xi32>
  scf.parallel (%arg6, %arg7) = (%c0, %c0) to (%dim, %c4) step (%c1, %c1) {
    %0 = memref.load %arg3[%arg6, %c0] : memref<?x7xi32>
    %1 = arith.index_cast %0 : i32 to index
    %2 = memref.load %arg3[%arg6, %c1] : memref<?x7xi32>
    %3 = arith.index_cast %2 : i32 to index
    %4 = memref.load %arg3[%arg6, %c2] : memref<?x7xi32>
    %5 = arith.index_cast %4 : i32 to index
    %6 = memref.load %arg3[%arg6, %c3] : memref<?x7xi32>
    %7 = arith.index_cast %6 : i32 to index
    %8 = memref.load %arg3[%arg6, %c4] : memref<?x7xi32>
    %9 = arith.index_cast %8 : i32 to index
    %10 = memref.load %arg3[%arg6, %c5] : memref<?x7xi32>
    %11 = arith.index_cast %10 : i32 to index
    %12 = memref.load %arg3[%arg6, %c6] : memref<?x7xi32>
    %13 = arith.index_cast %12 : i32 to index
    %14 = arith.divui %arg7, %c2 : index
    %alloc = memref.alloc() : memref<64x64xf32>
    %alloc_1 = memref.alloc() : memref<64x64xf32>
    %alloc_2 = memref.alloc() : memref<64x64xf32>
    %alloc_3 = memref.alloc() : memref<64xf32>
    %alloc_4 = memref.alloc() : memref<64xf32>
    %alloc_5 = memref.alloc() : memref<64x64xf32>
    %alloc_6 = memref.alloc() : memref<64x64xf32>
    linalg.fill ins(%cst_0 : f32) outs(%alloc_2 : memref<64x64xf32>)
    linalg.fill ins(%cst : f32) outs(%alloc_3 : memref<64xf32>)
    linalg.fill ins(%cst_0 : f32) outs(%alloc_4 : memref<64xf32>)
    attn.copy_tile %arg0[%1, %arg7, %3] to %alloc scale 1.250000e-01 valid %5 : memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>, memref<64x64xf32>
    %15 = arith.addi %13, %c64 : index
    %16 = arith.minsi %11, %15 : index
    %17 = arith.maxsi %16, %c0 : index
    scf.for %arg8 = %c0 to %17 step %c64 {
      %18 = arith.subi %11, %arg8 : index
      %19 = arith.addi %9, %arg8 : index
      attn.gather_tile %arg1[%arg4[%7], %14, %19] to %alloc_5 transposed valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      // expected-error @+1 {{attn-lower-to-gpu: all copies into one tile buffer must read the same tensor}}
      attn.gather_tile %arg2[%arg4[%7], %14, %19] to %alloc_5 transposed valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.gather_tile %arg2[%arg4[%7], %14, %19] to %alloc_6 valid %18 : memref<?x2x?x64xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<64x64xf32>
      attn.tile_matmul %alloc, %alloc_5 into %alloc_1 : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
      %20 = arith.addi %arg8, %c64 : index
      %21 = arith.cmpi sgt, %20, %11 : index
      %22 = arith.addi %arg8, %c63 : index
      %23 = arith.cmpi sgt, %22, %13 : index
      %24 = arith.ori %21, %23 : i1
      scf.if %24 {
        attn.tile_mask %alloc_1 rows %13 cols %arg8 valid %18 sliding_window window_sides [-1, 0] : memref<64x64xf32>
      }
      attn.tile_softmax %alloc_1, %alloc_3, %alloc_4, %alloc_2 : memref<64x64xf32>, memref<64xf32>, memref<64xf32>, memref<64x64xf32>
      attn.tile_matmul %alloc_1, %alloc_6 into %alloc_2 accumulate : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
    } {attn.kv_loop}
    attn.tile_store %alloc_2, %alloc_4 to %arg5[%1, %arg7, %3] valid %5 : memref<64x64xf32>, memref<64xf32>, memref<1x4x?x64xf16, strided<[?, ?, ?, 1]>>
    memref.dealloc %alloc : memref<64x64xf32>
    memref.dealloc %alloc_1 : memref<64x64xf32>
    memref.dealloc %alloc_2 : memref<64x64xf32>
    memref.dealloc %alloc_3 : memref<64xf32>
    memref.dealloc %alloc_4 : memref<64xf32>
    memref.dealloc %alloc_5 : memref<64x64xf32>
    memref.dealloc %alloc_6 : memref<64x64xf32>
    scf.reduce 
  } {attn.grid}
  return
}

