// RUN: attncc-opt %s -split-input-file -attn-pipeline="num-stages=3 gathers=true" | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-pipeline=num-stages=1 | FileCheck %s --check-prefix=ONE
// RUN: attncc-opt %s -split-input-file -attn-pipeline=num-stages=3 | FileCheck %s --check-prefix=NOGATHERS

// Static trip count (128 keys / 16 = 8 iterations): K/V buffers get three
// slots, two prologue iterations issue copies, the steady state copies
// iteration i+2 while computing iteration i, the epilogue drains two.
// CHECK: #[[MAP:.*]] = affine_map<(d0) -> ((d0 floordiv 16) mod 3)>
// CHECK-LABEL: func @static_loop
// CHECK: %[[KBUF:.*]] = memref.alloc() : memref<3x16x16xf32>
// CHECK: %[[VBUF:.*]] = memref.alloc() : memref<3x16x16xf32>
// CHECK-NOT: scf.for
// CHECK: attn.copy_tile {{.*}} transposed {{.*}} {attn.iteration = 0 : i64, attn.part = "prologue"}
// CHECK: attn.copy_tile {{.*}} {attn.iteration = 0 : i64, attn.part = "prologue"}
// CHECK: attn.copy_tile {{.*}} transposed {{.*}} {attn.iteration = 1 : i64, attn.part = "prologue"}
// CHECK: attn.copy_tile {{.*}} {attn.iteration = 1 : i64, attn.part = "prologue"}
// CHECK-NOT: attn.tile_matmul
// CHECK: scf.for %[[IV:.*]] = {{.*}} iter_args(
// CHECK: affine.apply #[[MAP]](
// CHECK: attn.copy_tile {{.*}}"kernel"
// CHECK: attn.copy_tile {{.*}}"kernel"
// CHECK: attn.tile_matmul {{.*}}"kernel"
// CHECK: attn.tile_softmax {{.*}}"kernel"
// CHECK: attn.tile_matmul {{.*}} accumulate {{.*}}"kernel"
// CHECK: } {attn.kv_loop, attn.num_stages = 3 : i64}
// CHECK-NOT: attn.copy_tile
// CHECK: attn.tile_matmul {{.*}}attn.iteration = 0 : i64, attn.part = "epilogue"
// CHECK: attn.tile_matmul {{.*}}attn.iteration = 1 : i64, attn.part = "epilogue"
// CHECK: attn.tile_store
// CHECK: memref.dealloc %[[KBUF]]
// CHECK: memref.dealloc %[[VBUF]]

// ONE-LABEL: func @static_loop
// ONE-NOT: attn.part
// ONE: scf.for
// ONE-NOT: attn.part
func.func @static_loop(%q: memref<1x1x128x16xf32>, %k: memref<1x1x128x16xf32>, %out: memref<1x1x128x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %c128 = arith.constant 128 : index
  %zero = arith.constant 0.0 : f32
  %qt = memref.alloc() : memref<16x16xf32>
  %s = memref.alloc() : memref<16x16xf32>
  %acc = memref.alloc() : memref<16x16xf32>
  %mx = memref.alloc() : memref<16xf32>
  %sm = memref.alloc() : memref<16xf32>
  %kt = memref.alloc() : memref<16x16xf32>
  %vt = memref.alloc() : memref<16x16xf32>
  attn.copy_tile %q[%c0, %c0, %c0] to %qt valid %c16 : memref<1x1x128x16xf32>, memref<16x16xf32>
  scf.for %n0 = %c0 to %c128 step %c16 {
    %vn = arith.subi %c128, %n0 : index
    attn.copy_tile %k[%c0, %c0, %n0] to %kt transposed valid %vn : memref<1x1x128x16xf32>, memref<16x16xf32>
    attn.copy_tile %k[%c0, %c0, %n0] to %vt valid %vn : memref<1x1x128x16xf32>, memref<16x16xf32>
    attn.tile_matmul %qt, %kt into %s : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
    attn.tile_softmax %s, %mx, %sm, %acc : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
    attn.tile_matmul %s, %vt into %acc accumulate : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  attn.tile_store %acc, %sm to %out[%c0, %c0, %c0] valid %c16 : memref<16x16xf32>, memref<16xf32>, memref<1x1x128x16xf32>
  memref.dealloc %kt : memref<16x16xf32>
  memref.dealloc %vt : memref<16x16xf32>
  return
}

// -----

// Dynamic trip count (a causal bound): the prologue's copies are predicated
// on the loop having that many iterations, and so is the epilogue's compute.
// CHECK-LABEL: func @dynamic_loop
// CHECK: memref.alloc() : memref<3x16x16xf32>
// CHECK: %[[P0:.*]] = arith.cmpi slt
// CHECK: scf.if %[[P0]] {
// CHECK-NEXT: attn.copy_tile {{.*}}"prologue"
// CHECK: scf.for
// CHECK: attn.copy_tile {{.*}}"kernel"
// CHECK: attn.tile_matmul {{.*}}"kernel"
// CHECK: } {attn.kv_loop, attn.num_stages = 3 : i64}
// CHECK: scf.if
// CHECK-NEXT: attn.tile_matmul {{.*}}"epilogue"
func.func @dynamic_loop(%q: memref<1x1x?x16xf32>, %k: memref<1x1x?x16xf32>, %out: memref<1x1x?x16xf32>, %hi: index) {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c16 = arith.constant 16 : index
  %lk = memref.dim %k, %c2 : memref<1x1x?x16xf32>
  %qt = memref.alloc() : memref<16x16xf32>
  %s = memref.alloc() : memref<16x16xf32>
  %acc = memref.alloc() : memref<16x16xf32>
  %mx = memref.alloc() : memref<16xf32>
  %sm = memref.alloc() : memref<16xf32>
  %kt = memref.alloc() : memref<16x16xf32>
  %vt = memref.alloc() : memref<16x16xf32>
  scf.for %n0 = %c0 to %hi step %c16 {
    %vn = arith.subi %lk, %n0 : index
    attn.copy_tile %k[%c0, %c0, %n0] to %kt transposed valid %vn : memref<1x1x?x16xf32>, memref<16x16xf32>
    attn.copy_tile %k[%c0, %c0, %n0] to %vt valid %vn : memref<1x1x?x16xf32>, memref<16x16xf32>
    attn.tile_matmul %qt, %kt into %s : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
    attn.tile_softmax %s, %mx, %sm, %acc : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
    attn.tile_matmul %s, %vt into %acc accumulate : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  return
}

// -----

// Loops without the attn.kv_loop tag are not touched.
// CHECK-LABEL: func @untagged
// CHECK: memref.alloc() : memref<16x16xf32>
// CHECK-NOT: attn.part
func.func @untagged(%k: memref<1x1x128x16xf32>) {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c128 = arith.constant 128 : index
  %kt = memref.alloc() : memref<16x16xf32>
  scf.for %n0 = %c0 to %c128 step %c16 {
    attn.copy_tile %k[%c0, %c0, %n0] to %kt valid %c16 : memref<1x1x128x16xf32>, memref<16x16xf32>
  }
  return
}

// -----

// A paged KV loop (dynamic trip count): gather_tile destinations get three
// slots and the gathers (with the block-table index math feeding them) go to
// stage 0, predicated where the loop may be shorter than the stages.
// CHECK-LABEL: func @paged_loop
// CHECK: %[[KBUF:.*]] = memref.alloc() : memref<3x16x16xf32>
// CHECK: %[[VBUF:.*]] = memref.alloc() : memref<3x16x16xf32>
// CHECK: attn.gather_tile {{.*}}attn.part = "prologue"
// CHECK: attn.gather_tile {{.*}}attn.part = "prologue"
// CHECK: scf.for
// CHECK: attn.gather_tile {{.*}}"kernel"
// CHECK: attn.gather_tile {{.*}}"kernel"
// CHECK: attn.tile_matmul {{.*}}"kernel"
// CHECK: } {attn.kv_loop, attn.num_stages = 3 : i64}
// CHECK: memref.dealloc %[[KBUF]]
// ONE-LABEL: func @paged_loop
// ONE-NOT: attn.part
// Without gathers=true (the CPU's pipeline) a paged loop is left alone.
// NOGATHERS-LABEL: func @paged_loop
// NOGATHERS: memref.alloc() : memref<16x16xf32>
// NOGATHERS-NOT: attn.part
// NOGATHERS: } {attn.kv_loop}
func.func @paged_loop(%q: memref<1x1x16x16xf32>, %kc: memref<?x1x?x16xf32>, %bt: memref<?x?xi32>,
                      %n: index, %out: memref<1x1x16x16xf32>) {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %qt = memref.alloc() : memref<16x16xf32>
  %s = memref.alloc() : memref<16x16xf32>
  %acc = memref.alloc() : memref<16x16xf32>
  %mx = memref.alloc() : memref<16xf32>
  %sm = memref.alloc() : memref<16xf32>
  %kt = memref.alloc() : memref<16x16xf32>
  %vt = memref.alloc() : memref<16x16xf32>
  attn.copy_tile %q[%c0, %c0, %c0] to %qt valid %c16 : memref<1x1x16x16xf32>, memref<16x16xf32>
  scf.for %n0 = %c0 to %n step %c16 {
    %vn = arith.subi %n, %n0 : index
    attn.gather_tile %kc[%bt[%c0], %c0, %n0] to %kt transposed valid %vn : memref<?x1x?x16xf32>, memref<?x?xi32>, memref<16x16xf32>
    attn.gather_tile %kc[%bt[%c0], %c0, %n0] to %vt valid %vn : memref<?x1x?x16xf32>, memref<?x?xi32>, memref<16x16xf32>
    attn.tile_matmul %qt, %kt into %s : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
    attn.tile_softmax %s, %mx, %sm, %acc : memref<16x16xf32>, memref<16xf32>, memref<16xf32>, memref<16x16xf32>
    attn.tile_matmul %s, %vt into %acc accumulate : memref<16x16xf32>, memref<16x16xf32>, memref<16x16xf32>
  } {attn.kv_loop}
  attn.tile_store %acc, %sm to %out[%c0, %c0, %c0] valid %c16 : memref<16x16xf32>, memref<16xf32>, memref<1x1x16x16xf32>
  memref.dealloc %kt : memref<16x16xf32>
  memref.dealloc %vt : memref<16x16xf32>
  memref.dealloc %qt : memref<16x16xf32>
  memref.dealloc %s : memref<16x16xf32>
  memref.dealloc %acc : memref<16x16xf32>
  memref.dealloc %mx : memref<16xf32>
  memref.dealloc %sm : memref<16xf32>
  return
}
