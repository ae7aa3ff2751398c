// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-bf16 bf16-dot=true" -canonicalize | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4-bf16 bf16-dot=true" -convert-linalg-to-loops -expand-strided-metadata -lower-affine -convert-scf-to-cf -arith-expand="include-bf16=false" -convert-vector-to-llvm="enable-x86vector" -finalize-memref-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -reconcile-unrealized-casts | FileCheck %s --check-prefix=LLVM

// kv-in-place pairs over an fp8 cache (a bf16 query, AVX-512-BF16 + VBMI):
// 64 values of a key row at a time become bf16 by byte tables: the high and
// low bytes of each value's bf16 looked up by its low 7 bits (vpermi2b, the
// LLVM intrinsic), the sign or'ed into the high bytes, the bytes shuffled
// into two vectors of 32 words; each feeds vdpbf16ps with the query's
// matching 32 bf16. E4M3's table holds the values without their 2^8, which
// joins the sums' scale: 0.125 * 256 = 32.
// CHECK-LABEL: func @qk_e4m3
// CHECK: %[[SCALE:.*]] = arith.constant dense<3.200000e+01> : vector<16xf32>
// CHECK:   %[[L:.*]] = vector.load %arg1[{{.*}}] : memref<?x64xf8E4M3FN, strided<[512, 1], offset: ?>>, vector<64xf8E4M3FN>
// CHECK:   %[[X:.*]] = arith.bitcast %[[L]] : vector<64xf8E4M3FN> to vector<64xi8>
// CHECK:   %[[H:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"(%{{.*}}, %[[X]], %{{.*}}) : (vector<64xi8>, vector<64xi8>, vector<64xi8>) -> vector<64xi8>
// CHECK:   %[[LO:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"(%{{.*}}, %[[X]], %{{.*}})
// CHECK:   %[[S:.*]] = arith.andi %[[X]], %{{.*}} : vector<64xi8>
// CHECK:   %[[HS:.*]] = arith.ori %[[H]], %[[S]] : vector<64xi8>
// CHECK:   %[[W0:.*]] = vector.shuffle %[[LO]], %[[HS]] [0, 64, 1, 65,
// CHECK:   %[[B0:.*]] = vector.bitcast %[[W0]] : vector<64xi8> to vector<32xbf16>
// CHECK:   %[[W1:.*]] = vector.shuffle %[[LO]], %[[HS]] [32, 96, 33, 97,
// CHECK:   %[[B1:.*]] = vector.bitcast %[[W1]] : vector<64xi8> to vector<32xbf16>
// CHECK:   %[[A0:.*]] = vector.load %arg0[%c0, %{{.*}}] : memref<4x64xbf16>, vector<32xbf16>
// CHECK:   x86vector.avx512.dot %{{.*}}, %[[A0]], %[[B0]] : vector<32xbf16> -> vector<16xf32>
// CHECK:   %[[A1:.*]] = vector.load %arg0[%c0, %{{.*}}] : memref<4x64xbf16>, vector<32xbf16>
// CHECK:   x86vector.avx512.dot %{{.*}}, %[[A1]], %[[B1]] : vector<32xbf16> -> vector<16xf32>
// CHECK: arith.mulf %{{.*}}, %[[SCALE]] : vector<16xf32>
// LLVM-LABEL: llvm.func @qk_e4m3
// LLVM: llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
func.func @qk_e4m3(%a: memref<4x64xbf16>, %k: memref<?x64xf8E4M3FN, strided<[512, 1], offset: ?>>, %s: memref<4x16xf32>) {
  attn.tile_matmul %a, %k transposed pairs scale 0.125 into %s : memref<4x64xbf16>, memref<?x64xf8E4M3FN, strided<[512, 1], offset: ?>>, memref<4x16xf32>
  return
}

// -----

// A contraction of 32 (not a multiple of 64): 32 values padded to 64, the
// second half of the words unused.
// CHECK-LABEL: func @qk_e5m2_d32
// CHECK: vector.load %arg1{{.*}} vector<32xf8E5M2>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2,
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// CHECK: x86vector.avx512.dot
func.func @qk_e5m2_d32(%a: memref<4x32xbf16>, %k: memref<?x32xf8E5M2>, %s: memref<4x16xf32>) {
  attn.tile_matmul %a, %k transposed pairs into %s : memref<4x32xbf16>, memref<?x32xf8E5M2>, memref<4x16xf32>
  return
}

// -----

// P V on E4M3 value rows: rows k and k + 1, 32 columns each, interleaved as
// bytes and widened as 64 values: the (v[k, n], v[k + 1, n]) pairs of two
// vectors of columns. The sums start at zero and take the 2^8 once:
// acc = acc_in + 256 * sums (one FMA per accumulator).
// CHECK-LABEL: func @pv_e4m3
// CHECK-DAG: %[[F:.*]] = arith.constant dense<2.560000e+02> : vector<16xf32>
// CHECK-DAG: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<16xf32>
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c2 iter_args(%{{.*}} = %[[ZERO]]
// CHECK:   %[[LO:.*]] = vector.load %arg1{{.*}} vector<32xf8E4M3FN>
// CHECK:   %[[HI:.*]] = vector.load %arg1{{.*}} vector<32xf8E4M3FN>
// CHECK:   vector.interleave %[[LO]], %[[HI]] : vector<32xf8E4M3FN> -> vector<64xf8E4M3FN>
// CHECK:   llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// CHECK:   x86vector.avx512.dot
// CHECK: vector.fma %{{.*}}, %[[F]], %{{.*}} : vector<16xf32>
// CHECK: vector.store %{{.*}}, %arg2[%c0, %c0] : memref<4x32xf32>, vector<16xf32>
func.func @pv_e4m3(%p: memref<4x16xbf16>, %v: memref<?x32xf8E4M3FN, strided<[256, 1], offset: ?>>, %acc: memref<4x32xf32>) {
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<4x16xbf16>, memref<?x32xf8E4M3FN, strided<[256, 1], offset: ?>>, memref<4x32xf32>
  return
}

// -----

// E5M2's table holds its exact values (no factor): the sums start from acc
// and are stored as they are; 48 columns = one 32-column pair and a last
// 16-column vector (its interleaved 32 bytes padded to 64).
// CHECK-LABEL: func @pv_e5m2
// CHECK: %[[A0:.*]] = vector.load %arg2[%c0, %c0] : memref<4x48xf32>, vector<16xf32>
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c2 iter_args(%{{.*}} = %[[A0]]
// CHECK:   vector.interleave %{{.*}}, %{{.*}} : vector<32xf8E5M2> -> vector<64xf8E5M2>
// CHECK:   vector.interleave %{{.*}}, %{{.*}} : vector<16xf8E5M2> -> vector<32xf8E5M2>
// CHECK-NOT: vector.fma
// CHECK: vector.store %{{.*}}, %arg2[%c0, %c0] : memref<4x48xf32>, vector<16xf32>
func.func @pv_e5m2(%p: memref<4x16xbf16>, %v: memref<?x48xf8E5M2, strided<[256, 1], offset: ?>>, %acc: memref<4x48xf32>) {
  attn.tile_matmul %p, %v pairs into %acc accumulate : memref<4x16xbf16>, memref<?x48xf8E5M2, strided<[256, 1], offset: ?>>, memref<4x48xf32>
  return
}
