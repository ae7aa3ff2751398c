// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=16 lse=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=4 block-n=16 kv-in-place=true lse=true" | FileCheck %s --check-prefix=INPLACE
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=16 lse=true" -canonicalize -cse -attn-pipeline="num-stages=2" -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU

// return_lse of the ragged form: a trailing strided `lse` argument shaped
// like the output without head_dim (any strides: the API passes views of one
// [H, total_q] tensor); after the output block is stored, the work item's
// rows qr .. qr + qn of head h get their log-sum-exp (the sink included: the
// running max and sum start at it).
// CHECK-LABEL: func @varlen_lse
// CHECK-SAME: %[[OUT:[^:]*]]: memref<1x4x?x32xf32, strided<[?, ?, ?, 1]>>, %[[LSE:[^:]*]]: memref<1x4x?xf32, strided<[?, ?, ?]>>)
// CHECK: scf.parallel (%{{.*}}, %[[H:.*]]) =
// CHECK: %[[QB:.*]] = arith.index_cast
// CHECK: %[[QR:.*]] = arith.index_cast
// CHECK: %[[QN:.*]] = arith.index_cast
// CHECK: scf.for
// CHECK: attn.tile_store %{{.*}}, %{{.*}} to %[[OUT]][%[[QB]], %[[H]], %[[QR]]] valid %[[QN]]
// CHECK-NEXT: attn.tile_lse %[[MX:.*]], %[[SM:.*]] to %[[LSE]][%[[QB]], %[[H]], %[[QR]]] valid %[[QN]]
// INPLACE-LABEL: func @varlen_lse
// INPLACE: attn.tile_lse %{{.*}}, %{{.*}} to %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] valid
// The CPU lowering: one scalar store per valid row into the strided lse
// (the log itself is expanded in-line with the kernel's exps).
// CPU-LABEL: func @varlen_lse
// CPU: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] : memref<1x4x?xf32, strided<[?, ?, ?]>>
func.func @varlen_lse(%q: tensor<1x4x?x32xf32>, %k: tensor<1x4x?x32xf32>, %v: tensor<1x4x?x32xf32>,
                      %w: tensor<?x7xi32>, %t: tensor<4xf32>) -> tensor<1x4x?x32xf32> {
  %o = attn.ragged_attention %q, %k, %v work(%w : tensor<?x7xi32>) sinks(%t : tensor<4xf32>)
      scale 0.125 kv_group 1
      : tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32>, tensor<1x4x?x32xf32> -> tensor<1x4x?x32xf32>
  return %o : tensor<1x4x?x32xf32>
}
