// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s

// fp8 K/V (quantized caches) widened to f32 as they are loaded, in integer
// ops (LLVM has no fp8 type): sign-extend the byte, shift its exponent and
// mantissa to the top of f32's, keep the sign and those bits, then one
// multiply by 2^120 (E4M3FN: bias 7 against 127) or 2^112 (E5M2: bias 15).
// CHECK-LABEL: func.func @e4m3_rows
// CHECK: %[[L:.*]] = vector.load %arg0{{.*}} : memref<1x1x64x16xf8E4M3FN>, vector<8xf8E4M3FN>
// CHECK: %[[B:.*]] = arith.bitcast %[[L]] : vector<8xf8E4M3FN> to vector<8xi8>
// CHECK: %[[X:.*]] = arith.extsi %[[B]] : vector<8xi8> to vector<8xi32>
// CHECK: %[[S:.*]] = arith.constant dense<20> : vector<8xi32>
// CHECK: %[[SH:.*]] = arith.shli %[[X]], %[[S]] : vector<8xi32>
// 0x87F00000: the sign and bits 20..26
// CHECK: %[[M:.*]] = arith.constant dense<-2014314496> : vector<8xi32>
// CHECK: %[[A:.*]] = arith.andi %[[SH]], %[[M]] : vector<8xi32>
// CHECK: %[[F:.*]] = arith.bitcast %[[A]] : vector<8xi32> to vector<8xf32>
// CHECK: %[[K:.*]] = arith.constant dense<1.329228E+36> : vector<8xf32>
// CHECK: %[[R:.*]] = arith.mulf %[[F]], %[[K]] : vector<8xf32>
// CHECK: vector.store %[[R]], %arg1
// CHECK-NOT: arith.extf
func.func @e4m3_rows(%v: memref<1x1x64x16xf8E4M3FN>, %vt: memref<16x16xf32>, %i: index) {
  attn.copy_tile %v[%i, %i, %i] to %vt valid %i : memref<1x1x64x16xf8E4M3FN>, memref<16x16xf32>
  return
}

// -----

// CHECK-LABEL: func.func @e5m2_rows
// CHECK: arith.extsi %{{.*}} : vector<8xi8> to vector<8xi32>
// CHECK: arith.constant dense<21> : vector<8xi32>
// 0x8FE00000: the sign and bits 21..27
// CHECK: arith.constant dense<-1881145344> : vector<8xi32>
// 2^112
// CHECK: arith.constant dense<5.19229686E+33> : vector<8xf32>
// CHECK-NOT: arith.extf
func.func @e5m2_rows(%v: memref<1x1x64x16xf8E5M2>, %vt: memref<16x16xf32>, %i: index) {
  attn.copy_tile %v[%i, %i, %i] to %vt valid %i : memref<1x1x64x16xf8E5M2>, memref<16x16xf32>
  return
}

// -----

// K transposed: W x W blocks of rows widened then shuffled; the edges one
// scalar at a time, through the same integer ops on i8/i32 scalars.
// CHECK-LABEL: func.func @e4m3_transposed
// CHECK: arith.extsi %{{.*}} : vector<8xi8> to vector<8xi32>
// CHECK: vector.shuffle
// CHECK: memref.load %arg0{{.*}} : memref<1x1x64x20xf8E4M3FN>
// CHECK: arith.bitcast %{{.*}} : f8E4M3FN to i8
// CHECK: arith.extsi %{{.*}} : i8 to i32
// CHECK-NOT: arith.extf
func.func @e4m3_transposed(%k: memref<1x1x64x20xf8E4M3FN>, %kt: memref<20x16xf32>, %i: index) {
  attn.copy_tile %k[%i, %i, %i] to %kt transposed valid %i : memref<1x1x64x20xf8E4M3FN>, memref<20x16xf32>
  return
}
