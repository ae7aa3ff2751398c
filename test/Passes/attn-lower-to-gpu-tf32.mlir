// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse)" | FileCheck %s
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4 input-precision=tf32x3},canonicalize,cse)" | FileCheck %s --check-prefix=X3
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4},canonicalize,cse,gpu-lower-to-nvvm-pipeline{cubin-chip=sm_80 cubin-features=+ptx70 cubin-format=isa opt-level=3})" | FileCheck %s --check-prefix=PTX
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=64 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=2}),canonicalize,cse,attn-lower-to-gpu{num-warps=4 chip=sm_90a},canonicalize,cse,gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90a cubin-features=+ptx83 cubin-format=isa opt-level=3})" | FileCheck %s --check-prefix=PTX

// f32 inputs on TF32 tensor cores: f32 tiles in shared memory (Q 64 x 64,
// two K/V slots: 16384 + 2 * 2 * 16384 bytes), 16-byte cp.async chunks of 4
// elements, fragments by plain loads (no ldmatrix: it moves b16), operands
// rounded with cvt.rna.tf32.f32, mma.sync m16n8k8 .tf32.
// CHECK-LABEL: func.func @f32_causal
// CHECK: gpu.launch_func @f32_causal_kernel::@f32_causal_kernel {{.*}} threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c81920_i32
// CHECK: memref.view {{.*}} to memref<64x64xf32, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x64x64xf32, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_copy {{.*}}, 4, {{.*}} : memref<1x2x100x64xf32> to memref<64x64xf32, #gpu.address_space<workgroup>>
// CHECK-NOT: nvgpu.ldmatrix
// CHECK: scf.for
// CHECK: memref.load {{.*}} : memref<64x64xf32, #gpu.address_space<workgroup>>
// CHECK: nvvm.convert.float.to.tf32 {{.*}}rna
// CHECK: nvvm.mma.sync A[{{.*}}] B[{{.*}}] C[{{.*}}] {{.*}}tf32{{.*}}m = 16, n = 8, k = 8
// CHECK-NOT: nvgpu.mma.sync
// CHECK-NOT: nvgpu.ldmatrix
// 3xTF32: the small part tf32(x - tf32(x)) of each operand.
// X3-LABEL: func.func @f32_causal
// X3: %[[BIG:.*]] = nvvm.convert.float.to.tf32 %[[X:[^ ]*]]
// X3-NEXT: %[[BIGF:.*]] = arith.bitcast %[[BIG]] : i32 to f32
// X3-NEXT: %[[SMALL:.*]] = arith.subf %[[X]], %[[BIGF]] : f32
// X3-NEXT: nvvm.convert.float.to.tf32 %[[SMALL]]
// PTX: cp.async.cg.shared.global
// PTX: cvt.rna.tf32.f32
// PTX: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
// PTX-NOT: ldmatrix
// PTX-NOT: wgmma
func.func @f32_causal(%q: tensor<1x2x100x64xf32>, %k: tensor<1x2x100x64xf32>) -> tensor<1x2x100x64xf32> {
  %0 = attn.attention %q, %k, %k scale 0.125 mask causal kv_group 1
      : tensor<1x2x100x64xf32>, tensor<1x2x100x64xf32>, tensor<1x2x100x64xf32> -> tensor<1x2x100x64xf32>
  return %0 : tensor<1x2x100x64xf32>
}
