// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-amx amx=true" -canonicalize | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-amx amx=true" -convert-linalg-to-loops -expand-strided-metadata -lower-affine -convert-scf-to-cf -arith-expand="include-bf16=true" -convert-vector-to-llvm="enable-amx" -finalize-memref-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -reconcile-unrealized-casts | FileCheck %s --check-prefix=LLVM

// A pairs tile_matmul on AMX: blocks of 2 x 2 16 x 16 tiles of c (zeroed,
// or loaded when accumulating); per 32 contraction indices the block's two
// 16 x 32 bf16 tiles of a and two of the pair-packed b (unrolled: no tile
// value crosses a loop; 4 + 2 + 2 = the 8 tile registers), four tile_mulf,
// then the stores. The class is recorded on the module.
// CHECK: module attributes {attn.cpu = {amx, isa = "x86-64-v4-amx"
// CHECK-LABEL: func @qk
// CHECK: scf.for %[[J:.*]] = %c0 to %c64 step %c32
// CHECK:   %[[J1:.*]] = arith.addi %[[J]], %c16
// CHECK-COUNT-4: amx.tile_zero : !amx.tile<16x16xf32>
// CHECK:   %[[A0:.*]] = amx.tile_load %arg0[%c0, %c0] : memref<32x64xbf16> into !amx.tile<16x32xbf16>
// CHECK:   %[[A1:.*]] = amx.tile_load %arg0[%c16, %c0] : memref<32x64xbf16> into !amx.tile<16x32xbf16>
// CHECK:   %[[J2:.*]] = arith.muli %[[J]], %c2
// CHECK:   %[[B0:.*]] = amx.tile_load %arg1[%c0, %[[J2]]] : memref<32x128xbf16> into !amx.tile<16x32xbf16>
// CHECK:   %[[J12:.*]] = arith.muli %[[J1]], %c2
// CHECK:   %[[B1:.*]] = amx.tile_load %arg1[%c0, %[[J12]]] : memref<32x128xbf16> into !amx.tile<16x32xbf16>
// CHECK:   amx.tile_mulf %[[A0]], %[[B0]]
// CHECK:   amx.tile_mulf %[[A0]], %[[B1]]
// CHECK:   amx.tile_mulf %[[A1]], %[[B0]]
// CHECK:   amx.tile_mulf %[[A1]], %[[B1]]
// The second 32 contraction indices: b's pair rows 16..31.
// CHECK:   amx.tile_load %arg0[%c0, %c32]
// CHECK:   amx.tile_load %arg1[%c16, %{{.*}}]
// CHECK-COUNT-4: amx.tile_mulf
// CHECK:   amx.tile_store %arg2[%c0, %[[J]]], %{{.*}} : memref<32x64xf32>, !amx.tile<16x16xf32>
// CHECK:   amx.tile_store %arg2[%c0, %[[J1]]]
// CHECK:   amx.tile_store %arg2[%c16, %[[J]]]
// CHECK:   amx.tile_store %arg2[%c16, %[[J1]]]
// `scale`: the block's 32 rows x 2 vectors of c multiplied after the stores.
// CHECK:   scf.for %[[R:.*]] = %c0 to %c32 step %c1
// CHECK:     %[[V:.*]] = vector.load %arg2[%[[R]], %[[J]]] : memref<32x64xf32>, vector<16xf32>
// CHECK:     arith.mulf %[[V]], %cst : vector<16xf32>
// LLVM-LABEL: llvm.func @qk
// LLVM: llvm.call_intrinsic "llvm.x86.tdpbf16ps.internal"
func.func @qk(%a: memref<32x64xbf16>, %b: memref<32x128xbf16>, %c: memref<32x64xf32>) {
  attn.tile_matmul %a, %b pairs scale 0.125 into %c : memref<32x64xbf16>, memref<32x128xbf16>, memref<32x64xf32>
  return
}

// -----

// P V accumulates: c's tiles are loaded first.
// CHECK-LABEL: func @pv
// CHECK: %[[C:.*]] = amx.tile_load %arg2[%{{.*}}, %{{.*}}] : memref<32x64xf32> into !amx.tile<16x16xf32>
// CHECK: amx.tile_mulf %{{.*}}, %{{.*}}, %[[C]]
func.func @pv(%p: memref<32x64xbf16>, %v: memref<32x128xbf16, strided<[128, 1], offset: ?>>, %acc: memref<32x64xf32>) {
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<32x64xbf16>, memref<32x128xbf16, strided<[128, 1], offset: ?>>, memref<32x64xf32>
  return
}

// -----

// Pair-packed copies move bf16 as they are. V: rows 2t and 2t + 1
// interleaved per 16 columns. K: rows as 32-bit words,
// transposed 16 x 16 through registers (bitcasts around the shuffles).
// CHECK-LABEL: func @copies
// CHECK: vector.interleave %{{.*}}, %{{.*}} : vector<16xbf16> -> vector<32xbf16>
// CHECK: vector.store %{{.*}}, %arg3[%{{.*}}, %{{.*}}] : memref<32x128xbf16>, vector<32xbf16>
// CHECK: vector.bitcast %{{.*}} : vector<32xbf16> to vector<16xi32>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} {{.*}} : vector<16xi32>, vector<16xi32>
// CHECK: vector.bitcast %{{.*}} : vector<16xi32> to vector<32xbf16>
// CHECK: vector.store %{{.*}}, %arg2[%{{.*}}, %{{.*}}] : memref<32x128xbf16>, vector<32xbf16>
// CHECK-NOT: arith.extf
// CHECK-NOT: arith.truncf
func.func @copies(%k: memref<1x2x?x64xbf16>, %v: memref<1x2x?x64xbf16>, %kt: memref<32x128xbf16>,
                  %vt: memref<32x128xbf16>, %i: index, %n: index) {
  attn.copy_tile %v[%i, %i, %i] to %vt pairs valid %n : memref<1x2x?x64xbf16>, memref<32x128xbf16>
  attn.copy_tile %k[%i, %i, %i] to %kt transposed pairs valid %n : memref<1x2x?x64xbf16>, memref<32x128xbf16>
  return
}

// -----

// tile_convert: f32 rows rounded to bf16, W lanes at a time.
// CHECK-LABEL: func @convert
// CHECK: arith.truncf %{{.*}} : vector<16xf32> to vector<16xbf16>
func.func @convert(%s: memref<32x64xf32>, %p: memref<32x64xbf16>) {
  attn.tile_convert %s to %p : memref<32x64xf32>, memref<32x64xbf16>
  return
}

// -----

// A tile_convert right after the softmax of its source is fused into it: p
// is rounded to bf16 as it is stored into %p and never written back as f32
// (the scores are only read); a group of 16 rows rescales its acc rows only
// when some row's max moved (alpha != 1; exactly 1 where it did not).
// CHECK-LABEL: func @softmax_then_convert
// CHECK-NOT: attn.tile_convert
// CHECK: %[[MOVED:.*]] = vector.reduction <or>, %{{.*}} : vector<16xi1> into i1
// CHECK: arith.truncf %{{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: vector.store %{{.*}}, %arg4[%{{.*}}, %{{.*}}] : memref<16x64xbf16>, vector<16xbf16>
// CHECK: scf.if %[[MOVED]] {
// CHECK:   arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK:   vector.store %{{.*}}, %arg3[%{{.*}}, %{{.*}}] : memref<16x64xf32>, vector<16xf32>
// CHECK-NOT: vector.store %{{.*}}, %arg0
func.func @softmax_then_convert(%s: memref<16x64xf32>, %m: memref<16xf32>, %l: memref<16xf32>,
                                %acc: memref<16x64xf32>, %p: memref<16x64xbf16>) {
  attn.tile_softmax %s, %m, %l, %acc : memref<16x64xf32>, memref<16xf32>, memref<16xf32>, memref<16x64xf32>
  attn.tile_convert %s to %p : memref<16x64xf32>, memref<16x64xbf16>
  return
}
