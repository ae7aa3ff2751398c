// RUN: attncc-opt %s -split-input-file | attncc-opt -split-input-file | FileCheck %s

// Round trip of the ragged / paged ops (docs/ragged-paged.md).
// CHECK-LABEL: func @varlen
// CHECK: attn.ragged_attention %{{.*}}, %{{.*}}, %{{.*}} work(%{{.*}} : tensor<?x7xi32>) scale 1.250000e-01 window_sides [-1, 0] kv_group 2
func.func @varlen(%q: tensor<1x4x?x32xf16>, %k: tensor<1x2x?x32xf16>, %v: tensor<1x2x?x32xf16>,
                  %w: tensor<?x7xi32>) -> tensor<1x4x?x32xf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) scale 0.125
      window_sides [-1, 0] kv_group 2
      : tensor<1x4x?x32xf16>, tensor<1x2x?x32xf16>, tensor<1x2x?x32xf16> -> tensor<1x4x?x32xf16>
  return %o : tensor<1x4x?x32xf16>
}

// -----

// CHECK-LABEL: func @paged
// CHECK: attn.ragged_attention %{{.*}}, %{{.*}}, %{{.*}} work(%{{.*}} : tensor<?x7xi32>) pages(%{{.*}} : tensor<?x?xi32>) alibi_slopes(%{{.*}} : tensor<4xf32>) sinks(%{{.*}} : tensor<4xf32>) scale 1.250000e-01 softcap 3.000000e+01 kv_group 2
func.func @paged(%q: tensor<?x4x?x32xbf16>, %k: tensor<?x2x?x32xbf16>, %v: tensor<?x2x?x32xbf16>,
                 %w: tensor<?x7xi32>, %bt: tensor<?x?xi32>, %s: tensor<4xf32>,
                 %t: tensor<4xf32>) -> tensor<?x4x?x32xbf16> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) pages(%bt : tensor<?x?xi32>)
      alibi_slopes(%s : tensor<4xf32>) sinks(%t : tensor<4xf32>) scale 0.125 softcap 30.0
      kv_group 2
      : tensor<?x4x?x32xbf16>, tensor<?x2x?x32xbf16>, tensor<?x2x?x32xbf16> -> tensor<?x4x?x32xbf16>
  return %o : tensor<?x4x?x32xbf16>
}

// -----

// CHECK-LABEL: func @gather
// CHECK: attn.gather_tile %{{.*}}[%{{.*}}[%{{.*}}], %{{.*}}, %{{.*}}] to %{{.*}} transposed valid %{{.*}} : memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<32x16xf32>
func.func @gather(%c: memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, %bt: memref<?x?xi32>,
                  %buf: memref<32x16xf32>, %s: index, %h: index, %r: index, %n: index) {
  attn.gather_tile %c[%bt[%s], %h, %r] to %buf transposed valid %n
      : memref<?x2x?x32xf16, strided<[?, ?, ?, 1]>>, memref<?x?xi32>, memref<32x16xf32>
  return
}
