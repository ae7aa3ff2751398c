// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s

// fp8 K/V (quantized caches) widened to f32 as they are loaded, through f16
// (LLVM has no fp8 type; f16 -> f32 is one instruction that takes f16
// subnormals at full speed). E4M3FN: sign-extend the byte to i16, shift its
// exponent and mantissa to bits 7..13, keep them and the sign, widen, then
// one multiply by 2^8 (bias 7 against f16's 15).
// CHECK-LABEL: func.func @e4m3_rows
// CHECK: %[[L:.*]] = vector.load %arg0{{.*}} : memref<1x1x64x16xf8E4M3FN>, vector<8xf8E4M3FN>
// CHECK: %[[B:.*]] = arith.bitcast %[[L]] : vector<8xf8E4M3FN> to vector<8xi8>
// CHECK: %[[X:.*]] = arith.extsi %[[B]] : vector<8xi8> to vector<8xi16>
// CHECK: %[[S:.*]] = arith.constant dense<7> : vector<8xi16>
// CHECK: %[[SH:.*]] = arith.shli %[[X]], %[[S]] : vector<8xi16>
// 0xBF80: the sign and bits 7..13
// CHECK: %[[M:.*]] = arith.constant dense<-16512> : vector<8xi16>
// CHECK: %[[A:.*]] = arith.andi %[[SH]], %[[M]] : vector<8xi16>
// CHECK: %[[H:.*]] = arith.bitcast %[[A]] : vector<8xi16> to vector<8xf16>
// CHECK: %[[F:.*]] = arith.extf %[[H]] : vector<8xf16> to vector<8xf32>
// CHECK: %[[K:.*]] = arith.constant dense<2.560000e+02> : vector<8xf32>
// CHECK: %[[R:.*]] = arith.mulf %[[F]], %[[K]] : vector<8xf32>
// CHECK: vector.store %[[R]], %arg1
// CHECK-NOT: arith.extf %{{.*}} : vector<8xf8E4M3FN>
func.func @e4m3_rows(%v: memref<1x1x64x16xf8E4M3FN>, %vt: memref<16x16xf32>, %i: index) {
  attn.copy_tile %v[%i, %i, %i] to %vt valid %i : memref<1x1x64x16xf8E4M3FN>, memref<16x16xf32>
  return
}

// -----

// E5M2 is the top byte of an f16: a shift, then the widening; no multiply.
// CHECK-LABEL: func.func @e5m2_rows
// CHECK: %[[X:.*]] = arith.extsi %{{.*}} : vector<8xi8> to vector<8xi16>
// CHECK: %[[S:.*]] = arith.constant dense<8> : vector<8xi16>
// CHECK: %[[SH:.*]] = arith.shli %[[X]], %[[S]] : vector<8xi16>
// CHECK: %[[H:.*]] = arith.bitcast %[[SH]] : vector<8xi16> to vector<8xf16>
// CHECK: %[[F:.*]] = arith.extf %[[H]] : vector<8xf16> to vector<8xf32>
// CHECK-NEXT: vector.store %[[F]], %arg1
func.func @e5m2_rows(%v: memref<1x1x64x16xf8E5M2>, %vt: memref<16x16xf32>, %i: index) {
  attn.copy_tile %v[%i, %i, %i] to %vt valid %i : memref<1x1x64x16xf8E5M2>, memref<16x16xf32>
  return
}

// -----

// K transposed: W x W blocks of rows widened then shuffled; the edges one
// scalar at a time, through the same ops on i8/i16 scalars.
// CHECK-LABEL: func.func @e4m3_transposed
// CHECK: arith.extsi %{{.*}} : vector<8xi8> to vector<8xi16>
// CHECK: vector.shuffle
// CHECK: memref.load %arg0{{.*}} : memref<1x1x64x20xf8E4M3FN>
// CHECK: arith.bitcast %{{.*}} : f8E4M3FN to i8
// CHECK: arith.extsi %{{.*}} : i8 to i16
// CHECK: arith.extf %{{.*}} : f16 to f32
func.func @e4m3_transposed(%k: memref<1x1x64x20xf8E4M3FN>, %kt: memref<20x16xf32>, %i: index) {
  attn.copy_tile %k[%i, %i, %i] to %kt transposed valid %i : memref<1x1x64x20xf8E4M3FN>, memref<20x16xf32>
  return
}
