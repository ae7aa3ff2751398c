// RUN: attncc-opt %s -split-input-file -attn-parallel-to-omp -verify-diagnostics | FileCheck %s

// Two grids: each becomes a loop over its linearized points from the thread's
// number (%tid) in steps of the team's size (%nt), the two index arguments
// appended to the function (and to attn.arg_types); the second grid first
// waits for the team.
// CHECK-LABEL: func.func private @GOMP_barrier()
// CHECK-LABEL: func @two_grids
// CHECK-SAME: (%[[A:[^:]*]]: memref<?x8xf32>, %[[N:[^:]*]]: index, %{{[^:]*}}: index, %[[TID:[^:]*]]: index, %[[NT:[^:]*]]: index)
// CHECK-SAME: attn.arg_types = [memref<?x8xf32>, index, index, index]
// CHECK-NOT: scf.parallel
// CHECK: %[[SPAN0:.*]] = arith.subi %[[N]], %c0
// CHECK: %[[C0:.*]] = arith.ceildivui %[[SPAN0]], %c1
// CHECK: %[[E0:.*]] = arith.cmpi sle, %[[N]], %c0
// CHECK: %[[N0:.*]] = arith.select %[[E0]], %{{.*}}, %[[C0]]
// CHECK: %[[N1:.*]] = arith.select
// CHECK: %[[PTS:.*]] = arith.muli %[[N0]], %[[N1]]
// CHECK: scf.for %[[P:.*]] = %[[TID]] to %[[PTS]] step %[[NT]] {
// CHECK:   %[[J:.*]] = arith.remui %[[P]], %[[N1]]
// CHECK:   %[[I:.*]] = arith.divui %[[P]], %[[N1]]
// CHECK:   %[[JS:.*]] = arith.muli %[[J]], %c2
// CHECK:   %[[IV1:.*]] = arith.addi %c0{{.*}}, %[[JS]]
// CHECK:   %[[IS:.*]] = arith.muli %[[I]], %c1
// CHECK:   %[[IV0:.*]] = arith.addi %c0{{.*}}, %[[IS]]
// CHECK:   memref.store %{{.*}}, %[[A]][%[[IV0]], %[[IV1]]]
// CHECK: } {attn.grid}
// CHECK: call @GOMP_barrier() : () -> ()
// CHECK: scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[NT]] {
// CHECK:   memref.load %[[A]]
// CHECK: } {attn.combine}
// CHECK: return
func.func @two_grids(%a: memref<?x8xf32>, %n: index, %x: index) attributes {attn.arg_types = [memref<?x8xf32>, index]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c8) step (%c1, %c2) {
    memref.store %f, %a[%i, %j] : memref<?x8xf32>
    scf.reduce
  } {attn.grid}
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %a[%i, %c0] : memref<?x8xf32>
    memref.store %v, %a[%i, %c1] : memref<?x8xf32>
    scf.reduce
  } {attn.combine}
  return
}

// -----

// One grid: no barrier; a parallel loop nested in a grid point stays as it is.
// CHECK-LABEL: func @nested
// CHECK-SAME: (%{{[^:]*}}: memref<?x8xf32>, %{{[^:]*}}: index, %[[TID:[^:]*]]: index, %[[NT:[^:]*]]: index)
// CHECK: scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[NT]]
// CHECK:   scf.parallel
// CHECK-NOT: GOMP_barrier
func.func @nested(%a: memref<?x8xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    scf.parallel (%j) = (%c0) to (%c8) step (%c1) {
      memref.store %f, %a[%i, %j] : memref<?x8xf32>
      scf.reduce
    }
    scf.reduce
  }
  return
}

// -----

// A function without grids keeps its signature.
// CHECK-LABEL: func @serial
// CHECK-SAME: (%{{[^:]*}}: memref<?xf32>)
// CHECK-NOT: GOMP_barrier
func.func @serial(%a: memref<?xf32>) {
  return
}

// -----

func.func @reduction(%n: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f32
  // expected-error @+1 {{attn-parallel-to-omp: a grid with reductions cannot be split across threads by points}}
  %r = scf.parallel (%i) = (%c0) to (%n) step (%c1) init (%z) -> f32 {
    %one = arith.constant 1.0 : f32
    scf.reduce(%one : f32) {
    ^bb0(%l: f32, %r2: f32):
      %s = arith.addf %l, %r2 : f32
      scf.reduce.return %s : f32
    }
  }
  return %r : f32
}

// -----

func.func @grid_in_loop(%a: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %f = arith.constant 1.0 : f32
  scf.for %t = %c0 to %n step %c1 {
    // expected-error @+1 {{attn-parallel-to-omp: a grid inside a loop is not supported (its runs would not wait for each other)}}
    scf.parallel (%i) = (%c0) to (%n) step (%c1) {
      memref.store %f, %a[%i] : memref<?xf32>
      scf.reduce
    }
  }
  return
}
