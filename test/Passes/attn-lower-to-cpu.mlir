// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-lower-to-cpu=vector-width=8 | FileCheck %s --check-prefix=W8

// Q K^T with K transposed: a 6-row x 4-vector register block, 24 vector
// accumulators carried through the K loop, one broadcast of a[i, k] per row
// and one vector.fma per accumulator; rows 60..63 get a 4-row block.
// CHECK-LABEL: func.func @matmul
// CHECK-SAME: attn.arg_types = [memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>]
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c6
// CHECK: %[[R:.*]]:24 = scf.for %[[K:.*]] = {{.*}} iter_args({{.*}}) -> (vector<16xf32>,
// CHECK-COUNT-4: vector.load %arg1[%[[K]], %{{.*}}] : memref<64x64xf32>, vector<16xf32>
// CHECK: %[[A:.*]] = memref.load %arg0[%[[I]], %[[K]]] : memref<64x64xf32>
// CHECK: %[[AB:.*]] = vector.broadcast %[[A]] : f32 to vector<16xf32>
// CHECK: vector.fma %[[AB]], %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-COUNT-23: vector.fma
// CHECK: scf.yield
// CHECK-COUNT-24: vector.store %[[R]]#{{[0-9]+}}, %arg2
// CHECK: %[[T:.*]]:16 = scf.for {{.*}} -> (vector<16xf32>,
// CHECK-COUNT-16: vector.store %[[T]]#{{[0-9]+}}, %arg2
// CHECK-NOT: attn.tile_matmul
// W8-LABEL: func.func @matmul
// W8: iter_args({{.*}}) -> (vector<8xf32>,
// W8: vector.fma {{.*}} : vector<8xf32>
func.func @matmul(%a: memref<64x64xf32>, %b: memref<64x64xf32>, %c: memref<64x64xf32>) {
  attn.tile_matmul %a, %b into %c : memref<64x64xf32>, memref<64x64xf32>, memref<64x64xf32>
  return
}

// -----

// P V into the accumulator, with a multi-buffered (strided subview) V, a
// column tail (24 = 16 + 8 lanes) and 6 rows.
// CHECK-LABEL: func.func @matmul_accumulate_tail
// CHECK: vector.load %arg2{{.*}} : memref<6x24xf32>, vector<16xf32>
// CHECK: scf.for {{.*}} iter_args
// CHECK: vector.load %arg1{{.*}} : memref<32x24xf32, strided<[24, 1], offset: ?>>, vector<16xf32>
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK: vector.load %arg2{{.*}} : memref<6x24xf32>, vector<8xf32>
// CHECK: vector.load %arg1{{.*}} : memref<32x24xf32, strided<[24, 1], offset: ?>>, vector<8xf32>
// CHECK: vector.fma {{.*}} : vector<8xf32>
// CHECK: vector.store {{.*}} : memref<6x24xf32>, vector<8xf32>
func.func @matmul_accumulate_tail(%a: memref<6x32xf32>,
                                  %b: memref<32x24xf32, strided<[24, 1], offset: ?>>,
                                  %c: memref<6x24xf32>) {
  attn.tile_matmul %a, %b into %c accumulate
      : memref<6x32xf32>, memref<32x24xf32, strided<[24, 1], offset: ?>>, memref<6x24xf32>
  return
}

// -----

// Dynamic row counts: 8-row blocks up to M, the rows of the last block past
// M clamped to row M - 1 (no one-row tail loop).
// CHECK-LABEL: func.func @matmul_dynamic_rows
// CHECK: %[[M:.*]] = memref.dim %arg2, %c0
// CHECK: %[[LAST:.*]] = arith.subi %[[M]], %c1
// CHECK: scf.for %[[I0:.*]] = %{{.*}} to %[[M]] step %c8
// CHECK: %[[R1:.*]] = arith.addi %[[I0]], %{{.*}}
// CHECK: arith.minsi %[[R1]], %[[LAST]]
// CHECK-NOT: scf.for {{.*}} to %[[M]] step
// CHECK: return
func.func @matmul_dynamic_rows(%a: memref<?x16xf32>, %b: memref<16x32xf32>, %c: memref<?x32xf32>) {
  attn.tile_matmul %a, %b into %c : memref<?x16xf32>, memref<16x32xf32>, memref<?x32xf32>
  return
}

// -----

// Online softmax, rows that do not fill a group of 16 (here 4 rows of 40 =
// 2 x 16 + 8 lanes): per row a vector max and a vector sum reduced with
// vector.reduction, exp of the non-positive s - m as 2^n * poly(f) (n =
// roundeven(x log2 e), 2^n in the exponent bits; no math.exp left), and the
// -inf guard (select on m_new == -inf).
// CHECK-LABEL: func.func @softmax
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[MOLD:.*]] = memref.load %arg1[%[[I]]]
// CHECK: %[[GT:.*]] = arith.cmpf ogt, {{.*}} : vector<16xf32>
// CHECK: arith.select %[[GT]], {{.*}} : vector<16xi1>, vector<16xf32>
// CHECK: vector.reduction <maxnumf>, %{{.*}} fastmath<nnan> : vector<8xf32> into f32
// CHECK: vector.reduction <maxnumf>, %{{.*}} fastmath<nnan> : vector<16xf32> into f32
// CHECK: %[[DEAD:.*]] = arith.cmpf oeq, %[[MNEW:.*]], %cst
// CHECK: arith.select %[[DEAD]]
// CHECK: math.roundeven {{.*}} : vector<16xf32>
// CHECK: arith.shli {{.*}} : vector<16xi32>
// CHECK: vector.store {{.*}} %arg0
// CHECK: vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<8xf32> into f32
// CHECK: vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<16xf32> into f32
// CHECK: memref.store %{{.*}}, %arg2[%[[I]]]
// CHECK: memref.store %[[MNEW]], %arg1[%[[I]]]
// CHECK: arith.mulf {{.*}} : vector<16xf32>
// CHECK: vector.store {{.*}}, %arg3
// CHECK-NOT: math.exp
// CHECK-NOT: attn.tile_softmax
func.func @softmax(%s: memref<4x40xf32>, %m: memref<4xf32>, %l: memref<4xf32>, %acc: memref<4x16xf32>) {
  attn.tile_softmax %s, %m, %l, %acc : memref<4x40xf32>, memref<4xf32>, memref<4xf32>, memref<4x16xf32>
  return
}

// -----

// Rows in groups of 16: per row a 16-lane running max (sum), then a
// transpose-reduce tree (log2(16) rounds of shuffles) turns the 16 row vectors
// into one vector of row maxima (sums); max, alpha and sum are updated 16 rows
// at a time with vector code, one vector exp for the 16 alphas.
// CHECK-LABEL: func.func @softmax_groups
// CHECK: scf.for %[[R0:.*]] = %{{.*}} to %{{.*}} step %c16
// CHECK: %[[MOLD:.*]] = vector.load %arg1[%[[R0]]] : memref<32xf32>, vector<16xf32>
// CHECK: %[[LOLD:.*]] = vector.load %arg2[%[[R0]]] : memref<32xf32>, vector<16xf32>
// CHECK-COUNT-30: vector.shuffle
// CHECK: arith.cmpf oeq, {{.*}} : vector<16xf32>
// CHECK: vector.store %{{.*}}, %arg1[%[[R0]]] : memref<32xf32>, vector<16xf32>
// CHECK: vector.shuffle %{{.*}} [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
// CHECK: math.fma %[[LOLD]]
// CHECK: vector.store %{{.*}}, %arg2[%[[R0]]] : memref<32xf32>, vector<16xf32>
// CHECK-NOT: vector.reduction
// CHECK-NOT: math.exp
func.func @softmax_groups(%s: memref<32x64xf32>, %m: memref<32xf32>, %l: memref<32xf32>, %acc: memref<32x64xf32>) {
  attn.tile_softmax %s, %m, %l, %acc : memref<32x64xf32>, memref<32xf32>, memref<32xf32>, memref<32x64xf32>
  return
}

// -----

// Q rows: f16 -> f32 with the softmax scale folded in, zero rows past valid.
// CHECK-LABEL: func.func @copy_scaled
// CHECK: scf.for %[[R:.*]] = %{{.*}} to %[[N:.*]] step
// CHECK: %[[V:.*]] = vector.load %arg0{{.*}} : memref<1x2x100x16xf16>, vector<16xf16>
// CHECK: %[[F:.*]] = arith.extf %[[V]] : vector<16xf16> to vector<16xf32>
// CHECK: arith.mulf %[[F]], %{{.*}} : vector<16xf32>
// CHECK: vector.store {{.*}}, %arg1[%[[R]], %{{.*}}]
// CHECK: scf.for %{{.*}} = %[[N]] to
// CHECK: vector.store %cst{{.*}}, %arg1
func.func @copy_scaled(%q: memref<1x2x100x16xf16>, %qt: memref<32x16xf32>, %i: index, %n: index) {
  attn.copy_tile %q[%i, %i, %i] to %qt scale 0.25 valid %n : memref<1x2x100x16xf16>, memref<32x16xf32>
  return
}

// -----

// K transposed into a multi-buffer slot: 16x16 blocks through registers
// (log2(16) = 4 rounds of 16 two-source shuffles), rows past valid zero.
// CHECK-LABEL: func.func @copy_transposed
// CHECK: scf.if
// CHECK-COUNT-16: vector.load %arg0
// CHECK-COUNT-64: vector.shuffle
// CHECK-COUNT-16: vector.store {{.*}} : memref<16x32xf32, strided<[32, 1], offset: ?>>, vector<16xf32>
// CHECK: } else {
// CHECK: scf.if {{.*}} -> (vector<16xf32>)
// CHECK: vector.load %arg0
// CHECK: } else {
// CHECK: scf.yield %cst
func.func @copy_transposed(%k: memref<1x2x100x16xbf16>, %kt: memref<16x32xf32, strided<[32, 1], offset: ?>>,
                           %i: index, %n: index) {
  attn.copy_tile %k[%i, %i, %i] to %kt transposed valid %n
      : memref<1x2x100x16xbf16>, memref<16x32xf32, strided<[32, 1], offset: ?>>
  return
}

// -----

// Transposed with edges that do not fill a 16x16 block (R = 20, D = 8):
// element-wise copies.
// CHECK-LABEL: func.func @copy_transposed_edges
// CHECK: scf.for
// CHECK: scf.for
// CHECK: memref.load %arg0
// CHECK: memref.store {{.*}}, %arg1
func.func @copy_transposed_edges(%k: memref<1x1x64x8xf32>, %kt: memref<8x20xf32>, %i: index, %n: index) {
  attn.copy_tile %k[%i, %i, %i] to %kt transposed valid %n : memref<1x1x64x8xf32>, memref<8x20xf32>
  return
}

// -----

// Sliding window: per row the kept keys are [lo, hi); one vector compare
// against a lane iota per bound, one select of -inf.
// CHECK-LABEL: func.func @mask_window
// CHECK: scf.for
// CHECK: arith.index_cast {{.*}} : index to i32
// CHECK: arith.cmpi slt, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.cmpi sge, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.ori {{.*}} : vector<16xi1>
// CHECK: arith.select {{.*}} : vector<16xi1>, vector<16xf32>
// CHECK-NOT: attn.tile_mask
func.func @mask_window(%s: memref<8x16xf32>, %r: index, %c: index, %n: index) {
  attn.tile_mask %s rows %r cols %c valid %n sliding_window window 4 : memref<8x16xf32>
  return
}

// -----

// A bf16 bias: no masked load of 16-bit floats (LLVM legalizes one on AVX2
// through f32 and back, a __truncsfbf2 call): a full chunk is one vector load,
// the row's tail scalar loads inserted into a zero vector; converted, scaled,
// added. A broadcast batch dim (static extent 1) reads index 0.
// CHECK-LABEL: func.func @bias
// CHECK-NOT: vector.maskedload
// CHECK: %[[B:.*]] = scf.if %{{.*}} -> (vector<16xf32>) {
// CHECK:   vector.load %arg1[%c0{{[_0-9]*}}, {{.*}} : memref<1x2x100x100xbf16>, vector<16xbf16>
// CHECK:   arith.extf {{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK: } else {
// CHECK:   scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>)
// CHECK:     memref.load %arg1
// CHECK:     vector.insert
// CHECK: arith.mulf %[[B]]
// CHECK: arith.addf {{.*}} : vector<16xf32>
func.func @bias(%s: memref<8x16xf32>, %b: memref<1x2x100x100xbf16>, %i: index, %n: index) {
  attn.tile_bias %s, %b[%i, %i, %i, %i] valid %n, %n scale 0.5 : memref<8x16xf32>, memref<1x2x100x100xbf16>
  return
}

// -----

// An f32 bias keeps masked vector loads (lanes past valid_cols read nothing).
// CHECK-LABEL: func.func @bias_f32
// CHECK: vector.create_mask {{.*}} : vector<16xi1>
// CHECK: vector.maskedload %arg1[%c0{{[_0-9]*}}, {{.*}} : memref<1x2x100x100xf32>, vector<16xi1>, vector<16xf32> into vector<16xf32>
// CHECK: arith.addf {{.*}} : vector<16xf32>
func.func @bias_f32(%s: memref<8x16xf32>, %b: memref<1x2x100x100xf32>, %i: index, %n: index) {
  attn.tile_bias %s, %b[%i, %i, %i, %i] valid %n, %n scale 0.5 : memref<8x16xf32>, memref<1x2x100x100xf32>
  return
}

// -----

// Store: 1/sum (0 when sum == 0), scale, convert, rows < valid only.
// CHECK-LABEL: func.func @store
// CHECK: scf.for
// CHECK: %[[L:.*]] = memref.load %arg1
// CHECK: %[[Z:.*]] = arith.cmpf oeq, %[[L]]
// CHECK: %[[INV:.*]] = arith.divf %{{.*}}, %[[L]]
// CHECK: arith.select %[[Z]], %{{.*}}, %[[INV]]
// CHECK: arith.truncf {{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: vector.store {{.*}}, %arg2{{.*}} : memref<1x2x100x16xbf16>, vector<16xbf16>
func.func @store(%acc: memref<8x16xf32>, %l: memref<8xf32>, %o: memref<1x2x100x16xbf16>, %i: index, %n: index) {
  attn.tile_store %acc, %l to %o[%i, %i, %i] valid %n : memref<8x16xf32>, memref<8xf32>, memref<1x2x100x16xbf16>
  return
}

// -----

// A whole tile program (test/Dialect/attn/tile_ops.mlir): nothing of the attn
// dialect is left but the loop tag; buffers become 64-byte aligned.
// CHECK-LABEL: func.func @tiled
// CHECK: scf.parallel
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<32x16xf32>
// CHECK: vector.fma
// CHECK: vector.shuffle
// CHECK: } {attn.kv_loop}
// CHECK-NOT: attn.{{copy_tile|tile_}}
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

// -----

// Q K^T with K's rows where they are (transposed, the decode form), added to
// c. 16 lanes: 4 rows x 4 keys, the 16 dot products reduced by one shuffle
// tree (4 rounds: bit 3 of the lane swapped with vector 8, ..., bit 0), each
// row's 4 scores then added to c and stored as one vector. 8 lanes: this
// RUN line's 6 x 4 budget gives 4 rows x 6 keys (the 16-lane block sizing is
// not taken), reduced as three trees of 4 rows x 2 keys (3 rounds each), each
// row's 2 scores added to c (attn-lower-to-cpu-dot-trees.mlir has AVX2's 4 x 3).
// CHECK-LABEL: func.func @dots_accumulate
// CHECK: %[[ACC:.*]]:16 = scf.for %{{.*}} = %{{.*}} to %c64 step %c16
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK-NOT: vector.reduction
// CHECK: vector.shuffle %[[ACC]]#0, %[[ACC]]#8 [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]
// CHECK: vector.shuffle {{.*}} [0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27]
// CHECK: vector.shuffle {{.*}} [0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29]
// CHECK: %[[LO:.*]] = vector.shuffle {{.*}} [0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30]
// CHECK: %[[HI:.*]] = vector.shuffle {{.*}} [1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31]
// CHECK: %[[ALL:.*]] = arith.addf %[[LO]], %[[HI]] fastmath<reassoc> : vector<16xf32>
// CHECK: %[[ROW0:.*]] = vector.extract_strided_slice %[[ALL]] {offsets = [0], sizes = [4], strides = [1]}
// CHECK: %[[OLD:.*]] = vector.load %arg2[%{{.*}}, %{{.*}}] : memref<4x32xf32>, vector<4xf32>
// CHECK: %[[NEW:.*]] = arith.addf %[[ROW0]], %[[OLD]] : vector<4xf32>
// CHECK: vector.store %[[NEW]], %arg2[%{{.*}}, %{{.*}}] : memref<4x32xf32>, vector<4xf32>
// CHECK: vector.extract_strided_slice %[[ALL]] {offsets = [12], sizes = [4], strides = [1]}
// W8-LABEL: func.func @dots_accumulate
// W8: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c6
// W8: %[[ACC8:.*]]:24 = scf.for
// W8: vector.fma {{.*}} : vector<8xf32>
// W8-NOT: vector.reduction
// W8: vector.shuffle %[[ACC8]]#0, %[[ACC8]]#12 [0, 1, 2, 3, 8, 9, 10, 11]
// W8: %[[PAIR:.*]] = vector.extract_strided_slice {{.*}} {offsets = [0], sizes = [2], strides = [1]}
// W8: %[[OLD8:.*]] = vector.load %arg2[{{.*}}] : memref<4x32xf32>, vector<2xf32>
// W8: arith.addf %[[PAIR]], %[[OLD8]] : vector<2xf32>
// W8: vector.shuffle %[[ACC8]]#2, %[[ACC8]]#14 [0, 1, 2, 3, 8, 9, 10, 11]
// W8: vector.shuffle %[[ACC8]]#4, %[[ACC8]]#16 [0, 1, 2, 3, 8, 9, 10, 11]
func.func @dots_accumulate(%a: memref<4x64xf32>, %b: memref<?x64xf32>, %c: memref<4x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c accumulate : memref<4x64xf32>, memref<?x64xf32>, memref<4x32xf32>
  return
}

// -----

// The decode form at a head dim below the vector width that is not a power
// of two (12 on 16 lanes): 12-lane partial sums, and no shuffle tree (its
// lane masks need a power-of-two width; it summed the wrong lanes before),
// each dot product reduced on its own.
// CHECK-LABEL: func.func @dots_head_dim_12
// CHECK: vector.fma {{.*}} : vector<12xf32>
// CHECK-NOT: vector.shuffle
// CHECK: vector.reduction <add>, {{.*}} : vector<12xf32> into f32
// CHECK: memref.store {{.*}}, %arg2
// CHECK-NOT: vector.shuffle
// CHECK: return
// W8-LABEL: func.func @dots_head_dim_12
// W8: vector.fma {{.*}} : vector<8xf32>
// W8-NOT: vector.shuffle
// W8: vector.reduction <add>, {{.*}} : vector<8xf32> into f32
// W8: vector.reduction <add>, {{.*}} : vector<4xf32> into f32
func.func @dots_head_dim_12(%a: memref<2x12xf32>, %b: memref<?x12xf32>, %c: memref<2x32xf32>) {
  attn.tile_matmul %a, %b transposed into %c : memref<2x12xf32>, memref<?x12xf32>, memref<2x32xf32>
  return
}
