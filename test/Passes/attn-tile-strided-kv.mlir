// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64 strided-kv=true" -canonicalize -cse | FileCheck %s
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64" -canonicalize -cse | FileCheck %s --check-prefix=DENSE
// RUN: attncc-opt %s -split-input-file -attn-tile="block-m=64 block-n=64 strided-kv=true" -canonicalize -cse -attn-lower-to-cpu="vector-width=8 micro-rows=6 micro-vectors=2" | FileCheck %s --check-prefix=CPU

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

// Without it (the GPU's pipeline) every argument is dense.
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
func.func @mla_latent(%q: tensor<?x16x?x576xf32>, %k: tensor<?x1x?x576xf32>,
                      %v: tensor<?x1x?x512xf32>) -> tensor<?x16x?x512xf32> {
  %0 = attn.attention %q, %k, %v scale 0.0722 mask none kv_group 16
      : tensor<?x16x?x576xf32>, tensor<?x1x?x576xf32>, tensor<?x1x?x512xf32> -> tensor<?x16x?x512xf32>
  return %0 : tensor<?x16x?x512xf32>
}
