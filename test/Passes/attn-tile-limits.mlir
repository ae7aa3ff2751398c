// Block sizes so large that the tile buffers' size computations overflow are
// refused by attn-tile itself (they used to abort in attn-lower-to-cpu or
// allocate a 1-TiB buffer).
// RUN: not attncc-opt %s -attn-tile="block-m=4611686018427387904" 2>&1 | FileCheck %s --check-prefix=HUGEM
// RUN: not attncc-opt %s -attn-tile="block-n=1099511627776" 2>&1 | FileCheck %s --check-prefix=HUGEN
// RUN: attncc-opt %s -attn-tile="block-m=4096 block-n=16" | FileCheck %s --check-prefix=OK
// HUGEM: error: attn-tile: block-m must be at most 4096, got 4611686018427387904
// HUGEN: error: attn-tile: block-n must be at most 4096, got 1099511627776
// OK: attn.kv_loop
func.func @f(%q: tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32> {
  %0 = attn.attention %q, %q, %q scale 0.25 mask none kv_group 1
      : tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32>, tensor<1x2x16x16xf32> -> tensor<1x2x16x16xf32>
  return %0 : tensor<1x2x16x16xf32>
}
