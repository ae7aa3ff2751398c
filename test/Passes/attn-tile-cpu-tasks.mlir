// RUN: attncc-opt %s -attn-tile="block-m=4 block-n=64 kv-in-place=true cpu-tasks=2 min-task-work=1000" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -attn-tile="block-m=4 block-n=64 kv-in-place=true cpu-tasks=2 min-task-work=1000" -canonicalize -cse -async-parallel-for="async-dispatch=true num-workers=2 min-task-size=1" -canonicalize | FileCheck %s --check-prefix=ASYNC

// cpu-tasks: the grid (B x H x query blocks points) becomes T tasks of
// consecutive points, T = min(max(ceil(points x Lk x 128 / 1000), 1), 2, points)
// at run time; each task loops over its points and delinearizes them.
// CHECK-LABEL: func @decode
// CHECK: %[[B:.*]] = memref.dim %{{.*}}, %c0 : memref<?x2x?x128xf32>
// CHECK: %[[LK:.*]] = memref.dim %{{.*}}, %c2 : memref<?x1x?x128xf32>
// CHECK: %[[PER_POINT:.*]] = arith.muli %[[LK]], %c128
// CHECK: %[[BH:.*]] = arith.muli %[[B]], %c2
// CHECK: %[[POINTS:.*]] = arith.muli %[[BH]], %[[MB:.*]] : index
// CHECK: %[[WORK:.*]] = arith.muli %[[POINTS]], %[[PER_POINT]]
// CHECK: %[[WANT:.*]] = arith.ceildivui %[[WORK]], %c1000
// CHECK: %[[AT_LEAST_1:.*]] = arith.maxsi %[[WANT]], %c1
// CHECK: %[[AT_MOST_2:.*]] = arith.minsi %[[AT_LEAST_1]], %c2
// CHECK: %[[T:.*]] = arith.minsi %[[AT_MOST_2]], %[[POINTS]]
// CHECK: scf.parallel (%[[TI:.*]]) = (%c0) to (%[[T]]) step (%c1) {
// CHECK: %[[PER:.*]] = arith.ceildivui %[[POINTS]], %[[T]]
// CHECK: %[[LO:.*]] = arith.muli %[[TI]], %[[PER]]
// CHECK: %[[END:.*]] = arith.addi %[[LO]], %[[PER]]
// CHECK: %[[HI:.*]] = arith.minsi %[[END]], %[[POINTS]]
// CHECK: scf.for %[[P:.*]] = %[[LO]] to %[[HI]] step %c1 {
// CHECK: %[[MBI:.*]] = arith.remui %[[P]], %[[MB]]
// CHECK: %[[R:.*]] = arith.divui %[[P]], %[[MB]]
// CHECK: %[[HI2:.*]] = arith.remui %[[R]], %c2
// CHECK: %[[BI:.*]] = arith.divui %[[R]], %c2
// CHECK: attn.copy_tile %{{.*}}[%[[BI]], %[[HI2]], %{{.*}}]
// CHECK: } {attn.kv_loop}
// CHECK: } {attn.grid}

// Through upstream async-parallel-for: one task (T = 1) calls the body
// inline, more are dispatched to the async runtime.
// ASYNC-LABEL: func @decode
// ASYNC: %[[ONE:.*]] = arith.cmpi eq, %{{.*}}, %c1 : index
// ASYNC: scf.if %[[ONE]] {
// ASYNC-NEXT: func.call @parallel_compute_fn(
// ASYNC: } else {
// ASYNC: async.create_group
func.func @decode(%q: tensor<?x2x?x128xf32>, %k: tensor<?x1x?x128xf32>) -> tensor<?x2x?x128xf32> {
  %0 = attn.attention %q, %k, %k scale 0.088 mask none kv_group 2
      : tensor<?x2x?x128xf32>, tensor<?x1x?x128xf32>, tensor<?x1x?x128xf32> -> tensor<?x2x?x128xf32>
  return %0 : tensor<?x2x?x128xf32>
}
