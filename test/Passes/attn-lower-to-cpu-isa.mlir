// RUN: attncc-opt %s -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2 isa=x86-64-v3" | FileCheck %s --check-prefix=AVX2
// RUN: attncc-opt %s -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2 isa=x86-64-v3" | FileCheck %s --check-prefix=AVX2-CODE
// RUN: attncc-opt %s -attn-lower-to-cpu="vector-width=16 micro-rows=6 micro-vectors=4 isa=x86-64-v4" | FileCheck %s --check-prefix=AVX512
// RUN: attncc-opt %s -attn-lower-to-cpu="vector-width=4 micro-rows=6 micro-vectors=4 isa=aarch64" | FileCheck %s --check-prefix=NEON
// RUN: not attncc-opt %s -attn-lower-to-cpu="micro-rows=0" 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not attncc-opt %s -attn-lower-to-cpu="micro-vectors=17" 2>&1 | FileCheck %s --check-prefix=VECS

// The register block of tile_matmul follows the ISA class (targets/cpu.py):
// AVX2 has 16 ymm registers, so 6 rows x 2 vectors of 8 lanes (12
// accumulators, 2 loads of b, 1 broadcast of a); AVX-512 6 x 4 of 16 lanes
// (24 of 32 zmm); NEON 6 x 4 of 4 lanes. The choice is recorded on the module.

// AVX2: module attributes {attn.cpu = {isa = "x86-64-v3", micro_kernel = array<i64: 6, 2>, vector_width = 8 : i64}}
// AVX2-LABEL: func.func @matmul
// AVX2: scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %c16
// AVX2: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c6
// AVX2: %[[R:.*]]:12 = scf.for %[[K:.*]] = {{.*}} iter_args({{.*}}) -> (vector<8xf32>,
// AVX2: vector.load %arg1[%[[K]], %[[J]]] : memref<64x64xf32>, vector<8xf32>
// AVX2: vector.load %arg1[%[[K]], %{{.*}}] : memref<64x64xf32>, vector<8xf32>
// AVX2-NOT: vector.load %arg1
// AVX2: vector.broadcast %{{.*}} : f32 to vector<8xf32>
// AVX2-COUNT-12: vector.fma
// AVX2: scf.yield

// The four 16-column groups of c run as one loop over their first column:
// one copy of the block's code (12 FMAs, and 8 for the 4 rows left of 64),
// not one per group, which made most of a kernel's LLVM IR.
// AVX2-CODE-COUNT-20: vector.fma
// AVX2-CODE-NOT: vector.fma

// AVX512: module attributes {attn.cpu = {isa = "x86-64-v4", micro_kernel = array<i64: 6, 4>, vector_width = 16 : i64}}
// AVX512: %{{.*}}:24 = scf.for {{.*}} -> (vector<16xf32>,

// NEON: module attributes {attn.cpu = {isa = "aarch64", micro_kernel = array<i64: 6, 4>, vector_width = 4 : i64}}
// NEON: %{{.*}}:24 = scf.for {{.*}} -> (vector<4xf32>,

// ROWS: micro-rows and micro-vectors must be in [1, 16], got 0 x 4
// VECS: micro-rows and micro-vectors must be in [1, 16], got 6 x 17
func.func @matmul(%a: memref<64x64xf32>, %b: memref<64x64xf32>, %c: memref<64x64xf32>) {
  attn.tile_matmul %a, %b into %c : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  return
}
