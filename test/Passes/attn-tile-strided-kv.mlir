// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64 strided-kv=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64" -canonicalize -cse | FileCheck %s --check-prefix=DENSE
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64 strided-kv=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=64 kv-in-place=true strided-kv=true" -canonicalize -cse | FileCheck %s --check-prefix=INPLACE
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=16 block-n=64 kv-in-place=true" -canonicalize -cse | FileCheck %s --check-prefix=INPLACE-DENSE

// strided-kv (the CPU's copying form): K and V are memrefs of any strides but
// a unit innermost one, so a view (MLA's V = K[..., :512] of a 576-wide latent
// cache, a transposed [B, L, H, D] projection) is passed as it is; Q and the
// output stay dense. The K/V tile copies read through the views.
// CHECK-LABEL: func @mla_latent
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x16x?x576xf32>, %[[K:[^:]*]]: memref<?x1x?x576xf32, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x1x?x512xf32, strided<[?, ?, ?, 1]>>, %[[O:[^:]*]]: memref<?x16x?x512xf32>)
// CHECK: attn.copy_tile %[[Q]]{{.*}} : memref<?x16x?x576xf32>, memref<64x576xf32>
// CHECK: scf.for
// CHECK: attn.copy_tile %[[K]]{{.*}} transposed {{.*}}: memref<?x1x?x576xf32, strided<[?, ?, ?, 1]>>, memref<576x64xf32>
// CHECK: attn.copy_tile %[[V]]{{.*}} : memref<?x1x?x512xf32, strided<[?, ?, ?, 1]>>, memref<64x512xf32>
// CHECK: } {attn.kv_loop}

// Without it (dense K/V, and the GPU's pipeline) every argument is dense.
// DENSE-LABEL: func @mla_latent
// DENSE-SAME: memref<?x16x?x576xf32>, %{{[^:]*}}: memref<?x1x?x576xf32>, %{{[^:]*}}: memref<?x1x?x512xf32>, %{{[^:]*}}: memref<?x16x?x512xf32>)

// On the CPU the copies load rows of the views (the row stride is the
// memref's, read at run time): K's 8 rows at a time for its transposed tile,
// then V's rows.
// CPU-LABEL: func @mla_latent
// CPU-SAME: %[[K:[^:]*]]: memref<?x1x?x576xf32, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x1x?x512xf32, strided<[?, ?, ?, 1]>>
// CPU-NOT: attn.copy_tile
// CPU-COUNT-8: vector.load %[[K]][{{.*}}] : memref<?x1x?x576xf32, strided<[?, ?, ?, 1]>>, vector<8xf32>
// CPU: vector.load %[[V]][{{.*}}] : memref<?x1x?x512xf32, strided<[?, ?, ?, 1]>>, vector<8xf32>
// The decode form (kv-in-place) takes its K/V block views from the strided
// arguments: the views' row stride is dynamic too.
// INPLACE-LABEL: func @mla_latent
// INPLACE-SAME: %[[K:[^:]*]]: memref<?x1x?x576xf32, strided<[?, ?, ?, 1]>>, %[[V:[^:]*]]: memref<?x1x?x512xf32, strided<[?, ?, ?, 1]>>
// INPLACE-NOT: attn.copy_tile %[[K]]
// INPLACE: memref.subview %[[K]]{{.*}} to memref<?x576xf32, strided<[?, 1], offset: ?>>
// INPLACE: memref.subview %[[V]]{{.*}} to memref<?x512xf32, strided<[?, 1], offset: ?>>
// INPLACE: attn.tile_matmul {{.*}} transposed
// INPLACE-DENSE-LABEL: func @mla_latent
// INPLACE-DENSE-SAME: memref<?x1x?x576xf32>, %{{[^:]*}}: memref<?x1x?x512xf32>
// INPLACE-DENSE: memref.subview {{.*}} to memref<?x576xf32, strided<[576, 1], offset: ?>>
func.func @mla_latent(%q: tensor<?x16x?x576xf32>, %k: tensor<?x1x?x576xf32>,
                      %v: tensor<?x1x?x512xf32>) -> tensor<?x16x?x512xf32> {
  %0 = attn.attention %q, %k, %v scale 0.0722 mask none kv_group 16
      : tensor<?x16x?x576xf32>, tensor<?x1x?x576xf32>, tensor<?x1x?x512xf32> -> tensor<?x16x?x512xf32>
  return %0 : tensor<?x16x?x512xf32>
}
