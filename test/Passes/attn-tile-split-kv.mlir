// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=64 split-kv=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=64 lse=true" | FileCheck %s --check-prefix=LSE
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=64 split-kv=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU

// Split-KV: lse and the two workspaces follow `out`; the split count is
// dim(part, 0) / B at run time; a fourth grid dimension over the splits, each
// split's loop over its chunk of ceil(blocks / P) KV blocks; partial output
// and LSE stored at batch s * B + b; then the combine grid. When P is 1 at
// run time the one split stores the output and LSE itself and the combine
// grid is skipped.
// CHECK-LABEL: func @decode_gqa
// CHECK-SAME: %[[OUT:[a-z0-9]+]]: memref<?x2x?x128xbf16>, %[[LSEOUT:[a-z0-9]+]]: memref<?x2x?xf32>,
// CHECK-SAME: %[[PART:[a-z0-9]+]]: memref<?x2x?x128xf32>, %[[PLSE:[a-z0-9]+]]: memref<?x2x?xf32>)
// CHECK: %[[B:.*]] = memref.dim %{{.*}}, %c0
// CHECK: %[[ROWS:.*]] = memref.dim %[[PART]], %c0
// CHECK: %[[BB:.*]] = arith.maxsi %[[B]], %c1
// CHECK: %[[P:.*]] = arith.divui %[[ROWS]], %[[BB]]
// CHECK: scf.parallel (%[[BI:.*]], %[[HI:.*]], %{{.*}}, %[[S:.*]]) = {{.*}} to (%[[B]], %{{.*}}, %{{.*}}, %[[P]])
// CHECK: %[[ONE:.*]] = arith.cmpi eq, %[[P]], %c1
// CHECK-NOT: linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : memref<16xf32>){{.*}}sinks
// CHECK: %[[BLOCKS:.*]] = arith.ceildivui %{{.*}}, %c64
// CHECK: %[[PER:.*]] = arith.ceildivui %[[BLOCKS]], %[[P]]
// CHECK: %[[CHUNK:.*]] = arith.muli %[[PER]], %c64
// CHECK: %[[OFF:.*]] = arith.muli %[[S]], %[[CHUNK]]
// CHECK: %[[LO0:.*]] = arith.addi %{{.*}}, %[[OFF]]
// CHECK: %[[LO:.*]] = arith.minsi %[[LO0]], %[[HI_ALL:.*]] : index
// CHECK: %[[END:.*]] = arith.addi %[[LO]], %[[CHUNK]]
// CHECK: %[[HIS:.*]] = arith.minsi %[[END]], %[[HI_ALL]]
// CHECK: scf.for %{{.*}} = %[[LO]] to %[[HIS]] step %c64
// CHECK: } {attn.kv_loop}
// CHECK: scf.if %[[ONE]] {
// CHECK: attn.tile_store %{{.*}}, %{{.*}} to %[[OUT]][%[[BI]], %[[HI]], %{{.*}}]
// CHECK: attn.tile_lse %{{.*}}, %{{.*}} to %[[LSEOUT]][%[[BI]], %[[HI]], %{{.*}}]
// CHECK: } else {
// CHECK: %[[SB:.*]] = arith.muli %[[S]], %[[B]]
// CHECK: %[[PB:.*]] = arith.addi %[[SB]], %[[BI]]
// CHECK: attn.tile_store %{{.*}}, %{{.*}} to %[[PART]][%[[PB]], %[[HI]], %{{.*}}]
// CHECK: attn.tile_lse %{{.*}}, %{{.*}} to %[[PLSE]][%[[PB]], %[[HI]], %{{.*}}]
// CHECK: } {attn.grid}
// CHECK: %[[MANY:.*]] = arith.cmpi ugt, %[[P]], %c1
// CHECK: scf.if %[[MANY]] {
// CHECK: scf.parallel
// CHECK: attn.tile_combine %[[PART]], %[[PLSE]] splits %[[P]] to %[[OUT]], %[[LSEOUT]]
// CHECK: } {attn.combine}

// LSE-LABEL: func @decode_gqa
// LSE-SAME: %[[OUT:[a-z0-9]+]]: memref<?x2x?x128xbf16>, %[[LSEOUT:[a-z0-9]+]]: memref<?x2x?xf32>)
// LSE: scf.parallel (%{{.*}}, %{{.*}}, %{{.*}}) =
// LSE: attn.tile_store %{{.*}}, %{{.*}} to %[[OUT]]
// LSE: attn.tile_lse %{{.*}}, %{{.*}} to %[[LSEOUT]]
// LSE-NOT: attn.tile_combine

// CPU-LABEL: func @decode_gqa
// CPU-SAME: attn.arg_types = [{{.*}}memref<?x2x?x128xbf16>, memref<?x2x?xf32>, memref<?x2x?x128xf32>, memref<?x2x?xf32>]
// CPU-NOT: attn.tile_
// CPU-NOT: math.log
// CPU: vector.fma
func.func @decode_gqa(%q: tensor<?x2x?x128xbf16>, %k: tensor<?x1x?x128xbf16>) -> tensor<?x2x?x128xbf16> {
  %0 = attn.attention %q, %k, %k scale 0.088 mask none kv_group 2
      : tensor<?x2x?x128xbf16>, tensor<?x1x?x128xbf16>, tensor<?x1x?x128xbf16> -> tensor<?x2x?x128xbf16>
  return %0 : tensor<?x2x?x128xbf16>
}

// -----

// Sinks with split-KV: each split starts from -inf / 0 (no sink), the
// combine adds the sink once; when P is 1 (no combine) the one split starts
// from the sink.
// CHECK-LABEL: func @sinks
// CHECK-SAME: %[[SINKS:[a-z0-9]+]]: memref<2xf32>
// CHECK: scf.parallel
// CHECK: %[[ONE:.*]] = arith.cmpi eq
// CHECK: %[[SINK:.*]] = memref.load %[[SINKS]]
// CHECK: %[[M0:.*]] = arith.select %[[ONE]], %[[SINK]], %{{.*}} : f32
// CHECK: %[[S0:.*]] = arith.select %[[ONE]], %{{.*}}, %{{.*}} : f32
// CHECK: linalg.fill ins(%[[M0]] : f32)
// CHECK: linalg.fill ins(%[[S0]] : f32)
// CHECK: } {attn.grid}
// CHECK: attn.tile_combine %{{.*}}, %{{.*}} sinks %[[SINKS]] : memref<2xf32> splits

// LSE-LABEL: func @sinks
// LSE-SAME: %[[SINKS:[a-z0-9]+]]: memref<2xf32>
// LSE: %[[SINK:.*]] = memref.load %[[SINKS]]
// LSE: linalg.fill ins(%[[SINK]] : f32)
// LSE: attn.tile_lse

// CPU-LABEL: func @sinks
// CPU-NOT: attn.tile_
// CPU-NOT: math.log
func.func @sinks(%q: tensor<1x2x?x64xf32>, %k: tensor<1x2x?x64xf32>, %s: tensor<2xf32>) -> tensor<1x2x?x64xf32> {
  %0 = attn.attention %q, %k, %k sinks(%s : tensor<2xf32>) scale 0.125 mask causal align bottom_right kv_group 1
      : tensor<1x2x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x64xf32> -> tensor<1x2x?x64xf32>
  return %0 : tensor<1x2x?x64xf32>
}
