// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=128 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=3}),canonicalize,cse,attn-lower-to-gpu{num-warps=8 chip=sm_90a},canonicalize,cse,gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa opt-level=3})" | FileCheck %s

// The whole GPU path to PTX in one go (format=isa: the PTX text is the
// gpu.binary's object): tensor cores, cp.async, ldmatrix, barriers, shuffles.
// CHECK: gpu.binary @attention_kernel
// CHECK-SAME: chip = "sm_90a", features = "+ptx80"
// CHECK-SAME: .target sm_90a
// CHECK-SAME: .entry attention_kernel(
// CHECK-SAME: .maxntid 256, 1, 1
// CHECK-SAME: cp.async.cg.shared.global
// CHECK-SAME: cp.async.commit_group
// CHECK-SAME: cp.async.wait_group
// CHECK-SAME: bar.sync
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// CHECK-SAME: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
// CHECK-SAME: shfl.sync.bfly.b32
// CHECK-SAME: ex2.approx.ftz.f32
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
func.func @attention(%q: tensor<1x8x1024x128xf16>, %k: tensor<1x8x1024x128xf16>, %v: tensor<1x8x1024x128xf16>) -> tensor<1x8x1024x128xf16> {
  %0 = attn.attention %q, %k, %v scale 0.08838834764831845 mask causal kv_group 1
      : tensor<1x8x1024x128xf16>, tensor<1x8x1024x128xf16>, tensor<1x8x1024x128xf16> -> tensor<1x8x1024x128xf16>
  return %0 : tensor<1x8x1024x128xf16>
}
