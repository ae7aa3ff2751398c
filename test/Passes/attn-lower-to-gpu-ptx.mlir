// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=128 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=3}),canonicalize,cse,attn-lower-to-gpu{num-warps=8 chip=sm_90a mma=mma-sync},canonicalize,cse,gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90a cubin-features=+ptx83 cubin-format=isa opt-level=3})" | FileCheck %s --check-prefix=SYNC
// RUN: attncc-opt %s --pass-pipeline="builtin.module(attn-tile{block-m=128 block-n=64},canonicalize,cse,func.func(attn-pipeline{num-stages=3}),canonicalize,cse,attn-lower-to-gpu{num-warps=8 chip=sm_90a},canonicalize,cse,gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90a cubin-features=+ptx83 cubin-format=isa opt-level=3})" | FileCheck %s --check-prefix=WGMMA

// The whole GPU path to PTX in one go (format=isa: the PTX text is the
// gpu.binary's object).
// With mma=mma-sync (prefix SYNC): tensor cores, cp.async, ldmatrix,
// barriers, shuffles.
// SYNC: gpu.binary @attention_kernel
// SYNC-SAME: chip = "sm_90a", features = "+ptx83"
// SYNC-SAME: .target sm_90a
// SYNC-SAME: .entry attention_kernel(
// SYNC-SAME: .maxntid 256, 1, 1
// SYNC-SAME: cp.async.cg.shared.global
// SYNC-SAME: cp.async.commit_group
// SYNC-SAME: cp.async.wait_group
// SYNC-SAME: bar.sync
// SYNC-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// SYNC-SAME: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
// SYNC-SAME: shfl.sync.bfly.b32
// SYNC-SAME: ex2.approx.ftz.f32
// SYNC-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// The sm_90a default (prefix WGMMA): the tensor maps (copied to global memory
// by the host) acquired for the tensormap proxy, mbarriers initialized by one
// thread and fenced for the async proxy, Q
// and each pipelined iteration's K/V as TMA boxes (cp.async.bulk.tensor) on
// their slot's mbarrier after arrive.expect_tx, every thread waiting on the
// slot's phase before Q.K^T; Q.K^T as m64n64k16 wgmma from two shared-memory
// descriptors, P.V as m64n128k16 wgmma with A in registers and B transposed
// (imm-trans-b = 1), fenced, committed and waited.
// WGMMA: gpu.binary @attention_kernel
// WGMMA-SAME: .target sm_90a
// WGMMA-SAME: .maxntid 256, 1, 1
// WGMMA-SAME: fence.proxy.tensormap::generic.acquire.sys
// WGMMA-SAME: mbarrier.init.shared.b64
// WGMMA-SAME: fence.proxy.async.shared::cta
// WGMMA-SAME: bar.sync
// WGMMA-SAME: mbarrier.arrive.expect_tx.shared.b64
// WGMMA-SAME: cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes
// WGMMA-SAME: mbarrier.try_wait.parity.shared.b64
// WGMMA-SAME: wgmma.fence.sync.aligned
// WGMMA-SAME: wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16
// WGMMA-SAME: wgmma.commit_group.sync.aligned
// WGMMA-SAME: wgmma.wait_group.sync.aligned
// WGMMA-SAME: shfl.sync.bfly.b32
// WGMMA-SAME: ex2.approx.ftz.f32
// WGMMA-SAME: wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {{{[^}]*}}}, {{{[^}]*}}}, %rd{{[0-9]+}}, 1, 1, 1, 1;
// WGMMA-NOT: mma.sync.aligned
// WGMMA-NOT: ldmatrix
// WGMMA-NOT: cp.async.cg
func.func @attention(%q: tensor<1x8x1024x128xf16>, %k: tensor<1x8x1024x128xf16>, %v: tensor<1x8x1024x128xf16>) -> tensor<1x8x1024x128xf16> {
  %0 = attn.attention %q, %k, %v scale 0.08838834764831845 mask causal kv_group 1
      : tensor<1x8x1024x128xf16>, tensor<1x8x1024x128xf16>, tensor<1x8x1024x128xf16> -> tensor<1x8x1024x128xf16>
  return %0 : tensor<1x8x1024x128xf16>
}
