// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-bf16 bf16-dot=true" -canonicalize | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-bf16 bf16-dot=true" -convert-linalg-to-loops -expand-strided-metadata -lower-affine -convert-scf-to-cf -arith-expand="include-bf16=false" -convert-vector-to-llvm="enable-x86vector" -finalize-memref-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -reconcile-unrealized-casts | FileCheck %s --check-prefix=LLVM

// A pairs tile_matmul on AVX-512-BF16: register blocks of 6 rows x 4 vectors
// of c (24 accumulators, zero here); per pair index t, row t of the
// pair-packed b as 4 loads of 32 bf16, and per row of a its pair
// (a[i, 2t], a[i, 2t + 1]) broadcast as one 32-bit word; one
// x86vector.avx512.dot (vdpbf16ps) per accumulator. `scale` multiplies the
// accumulators as they are stored. 32 rows = 5 blocks of 6 and one of 2.
// CHECK: module attributes {attn.cpu = {bf16_dot, isa = "x86-64-v4-bf16"
// CHECK-LABEL: func @qk
// CHECK: scf.for %[[I:.*]] = %c0 to %c30 step %c6
// CHECK:   scf.for %[[T:.*]] = %c0 to %c32 step %c1 iter_args
// CHECK:     vector.load %arg1[%[[T]], %c0] : memref<32x128xbf16>, vector<32xbf16>
// CHECK:     vector.load %arg1[%[[T]], %c32] : memref<32x128xbf16>, vector<32xbf16>
// CHECK:     vector.load %arg1[%[[T]], %c64] : memref<32x128xbf16>, vector<32xbf16>
// CHECK:     vector.load %arg1[%[[T]], %c96] : memref<32x128xbf16>, vector<32xbf16>
// CHECK:     %[[K:.*]] = arith.muli %[[T]], %c2
// CHECK:     %[[PAIR:.*]] = vector.load %arg0[%[[I]], %[[K]]] : memref<32x64xbf16>, vector<2xbf16>
// CHECK:     %[[W:.*]] = vector.bitcast %[[PAIR]] : vector<2xbf16> to vector<1xi32>
// CHECK:     %[[S:.*]] = vector.extract %[[W]][0] : i32 from vector<1xi32>
// CHECK:     %[[B:.*]] = vector.broadcast %[[S]] : i32 to vector<16xi32>
// CHECK:     %[[A:.*]] = vector.bitcast %[[B]] : vector<16xi32> to vector<32xbf16>
// CHECK-COUNT-4: x86vector.avx512.dot %{{.*}}, %[[A]], %{{.*}} : vector<32xbf16> -> vector<16xf32>
// CHECK-COUNT-20: x86vector.avx512.dot
// CHECK:     scf.yield
// CHECK-COUNT-24: arith.mulf %{{.*}}, %cst{{.*}} : vector<16xf32>
// The remaining 2 rows: one block of 2 x 4.
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c1 iter_args
// CHECK-COUNT-8: x86vector.avx512.dot
// LLVM-LABEL: llvm.func @qk
// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
func.func @qk(%a: memref<32x64xbf16>, %b: memref<32x128xbf16>, %c: memref<32x64xf32>) {
  attn.tile_matmul %a, %b pairs scale 0.125 into %c : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
  return
}

// -----

// P V accumulates: the accumulators start from c; 128 columns are two
// groups of 4 vectors.
// CHECK-LABEL: func @pv
// CHECK: vector.load %arg2[%{{.*}}, %c0{{.*}}] : memref<32x128xf32>, vector<16xf32>
// CHECK: x86vector.avx512.dot
// CHECK-NOT: arith.mulf
// CHECK: vector.load %arg2[%{{.*}}, %c64{{.*}}] : memref<32x128xf32>, vector<16xf32>
func.func @pv(%p: memref<32x64xbf16>, %v: memref<32x256xbf16>, %acc: memref<32x128xf32>) {
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<32x64xbf16>, memref<32x256xbf16>, memref<32x128xf32>
  return
}
