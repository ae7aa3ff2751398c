// An op of an unregistered dialect (it has no Dialect object) inside the KV
// loop of a tile program: attn-pipeline, attn-unroll and attn-lower-to-gpu
// used to crash on its null dialect; now they handle it as any foreign op.
// RUN: attncc-opt %s -allow-unregistered-dialect -attn-pipeline | FileCheck %s --check-prefix=PIPE
// RUN: attncc-opt %s -allow-unregistered-dialect -attn-unroll="factor=2" | FileCheck %s --check-prefix=UNROLL
// RUN: attncc-opt %s -allow-unregistered-dialect -attn-pipeline -attn-lower-to-gpu="chip=sm_80 num-warps=1" 2>&1 | FileCheck %s --check-prefix=GPU
// RUN: attncc-opt %s -allow-unregistered-dialect -attn-pipeline -attn-lower-to-cpu 2>&1 | FileCheck %s --check-prefix=CPU
// PIPE: "foo.bar"
// UNROLL-COUNT-2: "foo.bar"
// GPU: {{"foo.bar"|error}}
// CPU: "foo.bar"
module {
  func.func @f(%arg0: memref<1x2x64x64xf16>, %arg1: memref<1x2x64x64xf16>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c16 = arith.constant 16 : index
    %c64 = arith.constant 64 : index
    %c0_0 = arith.constant 0 : index
    %dim = memref.dim %arg0, %c0_0 : memref<1x2x64x64xf16>
    %c1_1 = arith.constant 1 : index
    %dim_2 = memref.dim %arg0, %c1_1 : memref<1x2x64x64xf16>
    %c2 = arith.constant 2 : index
    %dim_3 = memref.dim %arg0, %c2 : memref<1x2x64x64xf16>
    %c2_4 = arith.constant 2 : index
    %dim_5 = memref.dim %arg0, %c2_4 : memref<1x2x64x64xf16>
    %c15 = arith.constant 15 : index
    %0 = arith.addi %dim_3, %c15 : index
    %1 = arith.divui %0, %c16 : index
    %c1_6 = arith.constant 1 : index
    scf.parallel (%arg2, %arg3, %arg4) = (%c0, %c0, %c0) to (%dim, %dim_2, %1) step (%c1, %c1, %c1) {
      %2 = arith.divui %arg3, %c1_6 : index
      %3 = arith.muli %arg4, %c16 : index
      %4 = arith.subi %dim_3, %3 : index
      %alloc = memref.alloc() : memref<16x64xf32>
      %alloc_7 = memref.alloc() : memref<16x64xf32>
      %alloc_8 = memref.alloc() : memref<16x64xf32>
      %alloc_9 = memref.alloc() : memref<16xf32>
      %alloc_10 = memref.alloc() : memref<16xf32>
      %alloc_11 = memref.alloc() : memref<64x64xf32>
      %alloc_12 = memref.alloc() : memref<64x64xf32>
      %cst = arith.constant 0.000000e+00 : f32
      linalg.fill ins(%cst : f32) outs(%alloc_8 : memref<16x64xf32>)
      %cst_13 = arith.constant 0xFF800000 : f32
      linalg.fill ins(%cst_13 : f32) outs(%alloc_9 : memref<16xf32>)
      %cst_14 = arith.constant 0.000000e+00 : f32
      linalg.fill ins(%cst_14 : f32) outs(%alloc_10 : memref<16xf32>)
      attn.copy_tile %arg0[%arg2, %arg3, %3] to %alloc scale 2.500000e-01 valid %4 : memref<1x2x64x64xf16>, memref<16x64xf32>
      scf.for %arg5 = %c0 to %dim_5 step %c64 {
        %5 = arith.subi %dim_5, %arg5 : index
        "foo.bar"() : () -> ()
        attn.copy_tile %arg0[%arg2, %2, %arg5] to %alloc_11 transposed valid %5 : memref<1x2x64x64xf16>, memref<64x64xf32>
        attn.copy_tile %arg0[%arg2, %2, %arg5] to %alloc_12 valid %5 : memref<1x2x64x64xf16>, memref<64x64xf32>
        attn.tile_matmul %alloc, %alloc_11 into %alloc_7 : memref<16x64xf32>, memref<64x64xf32>, memref<16x64xf32>
        %6 = arith.addi %arg5, %c64 : index
        %7 = arith.cmpi sgt, %6, %dim_5 : index
        scf.if %7 {
          attn.tile_mask %alloc_7 rows %3 cols %arg5 valid %5 none : memref<16x64xf32>
        }
        attn.tile_softmax %alloc_7, %alloc_9, %alloc_10, %alloc_8 : memref<16x64xf32>, memref<16xf32>, memref<16xf32>, memref<16x64xf32>
        attn.tile_matmul %alloc_7, %alloc_12 into %alloc_8 accumulate : memref<16x64xf32>, memref<64x64xf32>, memref<16x64xf32>
      } {attn.kv_loop}
      attn.tile_store %alloc_8, %alloc_10 to %arg1[%arg2, %arg3, %3] valid %4 : memref<16x64xf32>, memref<16xf32>, memref<1x2x64x64xf16>
      memref.dealloc %alloc : memref<16x64xf32>
      memref.dealloc %alloc_7 : memref<16x64xf32>
      memref.dealloc %alloc_8 : memref<16x64xf32>
      memref.dealloc %alloc_9 : memref<16xf32>
      memref.dealloc %alloc_10 : memref<16xf32>
      memref.dealloc %alloc_11 : memref<64x64xf32>
      memref.dealloc %alloc_12 : memref<64x64xf32>
      scf.reduce 
    } {attn.grid}
    return
  }
}

