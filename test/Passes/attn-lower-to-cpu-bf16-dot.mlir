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

// -----

// kv-in-place pairs, Q K^T on K rows as stored (`transposed pairs`, the bf16
// decode form): the dot-product block of 4 rows x 4 keys, each partial sum
// one vdpbf16ps per 32 bf16 of a row of a and of K (no widening), the 16
// sums reduced by one shuffle tree and scaled once.
// CHECK-LABEL: func @qk_in_place
// CHECK: scf.for %[[J:.*]] = %c0 to %{{.*}} step %c4
// CHECK:   scf.for %[[K:.*]] = %c0 to %c64 step %c32 iter_args
// CHECK:     %[[K0:.*]] = vector.load %arg1[%[[J]], %[[K]]] : memref<?x64xbf16, strided<[512, 1], offset: ?>>, vector<32xbf16>
// CHECK-COUNT-3: vector.load %arg1
// CHECK:     %[[A0:.*]] = vector.load %arg0[%c0, %[[K]]] : memref<4x64xbf16>, vector<32xbf16>
// CHECK:     x86vector.avx512.dot %{{.*}}, %[[A0]], %[[K0]] : vector<32xbf16> -> vector<16xf32>
// CHECK-COUNT-15: x86vector.avx512.dot
// CHECK:     scf.yield
// CHECK:   vector.shuffle
// CHECK:   arith.addf %{{.*}}, %{{.*}} fastmath<reassoc> : vector<16xf32>
// CHECK:   %[[SC:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK:   vector.extract_strided_slice %[[SC]] {offsets = [0], sizes = [4], strides = [1]}
// The keys past the last 4: one key at a time, its 4 sums reduced and scaled.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1
// CHECK-COUNT-4: x86vector.avx512.dot
// LLVM-LABEL: llvm.func @qk_in_place
// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
func.func @qk_in_place(%a: memref<4x64xbf16>, %k: memref<?x64xbf16, strided<[512, 1], offset: ?>>, %s: memref<4x16xf32>) {
  attn.tile_matmul %a, %k transposed pairs scale 0.125 into %s : memref<4x64xbf16>, memref<?x64xbf16, strided<[512, 1], offset: ?>>, memref<4x16xf32>
  return
}

// -----

// kv-in-place pairs, P V on V rows as stored: per key pair, rows k and k + 1
// loaded 16 columns at a time and interleaved into (v[k, n], v[k + 1, n])
// pairs, each row's (p[i, k], p[i, k + 1]) broadcast as one 32-bit word; an
// odd last key (a loop of at most one step) pairs with zeros in v and in p.
// CHECK-LABEL: func @pv_in_place
// CHECK: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<16xbf16>
// CHECK: %[[DIM:.*]] = memref.dim %arg1, %c0
// CHECK: %[[HALF:.*]] = arith.divui %[[DIM]], %c2
// CHECK: %[[EVEN:.*]] = arith.muli %[[HALF]], %c2
// CHECK: scf.for %[[K:.*]] = %c0 to %[[EVEN]] step %c2 iter_args
// CHECK:   %[[K1:.*]] = arith.addi %[[K]], %c1
// CHECK:   %[[LO:.*]] = vector.load %arg1[%[[K]], %c0] : {{.*}}, vector<16xbf16>
// CHECK:   %[[HI:.*]] = vector.load %arg1[%[[K1]], %c0] : {{.*}}, vector<16xbf16>
// CHECK:   %[[B:.*]] = vector.interleave %[[LO]], %[[HI]] : vector<16xbf16> -> vector<32xbf16>
// CHECK:   vector.interleave
// CHECK:   %[[PAIR:.*]] = vector.load %arg0[%c0, %[[K]]] : memref<4x16xbf16>, vector<2xbf16>
// CHECK:   vector.bitcast %[[PAIR]] : vector<2xbf16> to vector<1xi32>
// CHECK:   %[[W:.*]] = vector.broadcast %{{.*}} : i32 to vector<16xi32>
// CHECK:   %[[A:.*]] = vector.bitcast %[[W]] : vector<16xi32> to vector<32xbf16>
// CHECK:   x86vector.avx512.dot %{{.*}}, %[[A]], %[[B]]
// CHECK-COUNT-7: x86vector.avx512.dot
// CHECK: scf.for %[[T:.*]] = %[[EVEN]] to %[[DIM]] step %c1
// CHECK:   %[[L:.*]] = vector.load %arg1[%[[T]], %c0]
// CHECK:   vector.interleave %[[L]], %[[ZERO]]
// CHECK:   %[[X:.*]] = memref.load %arg0[%c0, %[[T]]] : memref<4x16xbf16>
// CHECK:   %[[XI:.*]] = arith.bitcast %[[X]] : bf16 to i16
// CHECK:   arith.extui %[[XI]] : i16 to i32
// CHECK-COUNT-8: x86vector.avx512.dot
// CHECK: vector.store %{{.*}}, %arg2[%c0, %c0] : memref<4x32xf32>, vector<16xf32>
// LLVM-LABEL: llvm.func @pv_in_place
// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
func.func @pv_in_place(%p: memref<4x16xbf16>, %v: memref<?x32xbf16, strided<[256, 1], offset: ?>>, %acc: memref<4x32xf32>) {
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<4x16xbf16>, memref<?x32xbf16, strided<[256, 1], offset: ?>>, memref<4x32xf32>
  return
}
