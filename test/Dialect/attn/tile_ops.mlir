// RUN: attncc-opt %s | attncc-opt | FileCheck %s

// A hand-written tile program of the shape attn-tile produces: a grid over
// (batch, head, query block) and a loop over KV blocks with online softmax.
// Causal, B=1, H=2, L=100 (not a multiple of the 32x16 blocks), D=16.

// CHECK-LABEL: func @tiled
// CHECK: attn.copy_tile %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] to %{{.*}} scale 2.500000e-01 valid %{{.*}} : memref<1x2x100x16xf16>, memref<32x16xf32>
// CHECK: attn.copy_tile %{{.*}} transposed valid
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} into %{{.*}} : memref<32x16xf32>, memref<16x16xf32>, memref<32x16xf32>
// CHECK: attn.tile_bias %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] valid %{{.*}}, %{{.*}} scale 1.000000e+00 : memref<32x16xf32>, memref<100x100xf32>
// CHECK: attn.tile_mask %{{.*}} rows %{{.*}} cols %{{.*}} valid %{{.*}} causal : memref<32x16xf32>
// CHECK: attn.tile_mask %{{.*}} sliding_window window 8 : memref<32x16xf32>
// CHECK: attn.tile_softmax
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} into %{{.*}} accumulate
// CHECK: attn.tile_store %{{.*}}, %{{.*}} to %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}] valid %{{.*}} : memref<32x16xf32>, memref<32xf32>, memref<1x2x100x16xf16>
func.func @tiled(%q: memref<1x2x100x16xf16>, %k: memref<1x2x100x16xf16>,
                 %v: memref<1x2x100x16xf16>, %bias: memref<100x100xf32>,
                 %out: memref<1x2x100x16xf16>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %c100 = arith.constant 100 : index
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  scf.parallel (%b, %h, %mb) = (%c0, %c0, %c0) to (%c1, %c2, %c4) step (%c1, %c1, %c1) {
    %m0 = arith.muli %mb, %c32 : index
    %vm = arith.subi %c100, %m0 : index
    %qt = memref.alloc() : memref<32x16xf32>
    %s = memref.alloc() : memref<32x16xf32>
    %acc = memref.alloc() : memref<32x16xf32>
    %mx = memref.alloc() : memref<32xf32>
    %sm = memref.alloc() : memref<32xf32>
    %kt = memref.alloc() : memref<16x16xf32>
    %vt = memref.alloc() : memref<16x16xf32>
    linalg.fill ins(%zero : f32) outs(%acc : memref<32x16xf32>)
    linalg.fill ins(%ninf : f32) outs(%mx : memref<32xf32>)
    linalg.fill ins(%zero : f32) outs(%sm : memref<32xf32>)
    attn.copy_tile %q[%b, %h, %m0] to %qt scale 0.25 valid %vm : memref<1x2x100x16xf16>, memref<32x16xf32>
    %hi0 = arith.addi %m0, %c32 : index
    %hi = arith.minsi %hi0, %c100 : index
    scf.for %n0 = %c0 to %hi step %c16 {
      %vn = arith.subi %c100, %n0 : index
      attn.copy_tile %k[%b, %h, %n0] to %kt transposed valid %vn : memref<1x2x100x16xf16>, memref<16x16xf32>
      attn.copy_tile %v[%b, %h, %n0] to %vt valid %vn : memref<1x2x100x16xf16>, memref<16x16xf32>
      attn.tile_matmul %qt, %kt into %s : memref<32x16xf32>, memref<16x16xf32>, memref<32x16xf32>
      attn.tile_bias %s, %bias[%b, %h, %m0, %n0] valid %vm, %vn scale 1.0 : memref<32x16xf32>, memref<100x100xf32>
      attn.tile_mask %s rows %m0 cols %n0 valid %vn causal : memref<32x16xf32>
      attn.tile_mask %s rows %m0 cols %n0 valid %vn sliding_window window 8 : memref<32x16xf32>
      attn.tile_softmax %s, %mx, %sm, %acc : memref<32x16xf32>, memref<32xf32>, memref<32xf32>, memref<32x16xf32>
      attn.tile_matmul %s, %vt into %acc accumulate : memref<32x16xf32>, memref<16x16xf32>, memref<32x16xf32>
    } {attn.kv_loop}
    attn.tile_store %acc, %sm to %out[%b, %h, %m0] valid %vm : memref<32x16xf32>, memref<32xf32>, memref<1x2x100x16xf16>
    memref.dealloc %qt : memref<32x16xf32>
    memref.dealloc %s : memref<32x16xf32>
    memref.dealloc %acc : memref<32x16xf32>
    memref.dealloc %mx : memref<32xf32>
    memref.dealloc %sm : memref<32xf32>
    memref.dealloc %kt : memref<16x16xf32>
    memref.dealloc %vt : memref<16x16xf32>
    scf.reduce
  }
  return
}

// The prefetch hint round-trips.
// CHECK-LABEL: func @matmul_prefetch
// CHECK: attn.tile_matmul %{{.*}}, %{{.*}} transposed into %{{.*}} prefetch %{{.*}} : memref<?x32xbf16> : memref<4x32xf32>, memref<?x32xbf16>, memref<4x16xf32>
func.func @matmul_prefetch(%a: memref<4x32xf32>, %b: memref<?x32xbf16>, %c: memref<4x16xf32>,
                           %pf: memref<?x32xbf16>) {
  attn.tile_matmul %a, %b transposed into %c prefetch %pf : memref<?x32xbf16> : memref<4x32xf32>, memref<?x32xbf16>, memref<4x16xf32>
  return
}
