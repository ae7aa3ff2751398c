"""The CPU backend end to end: hand-written tile programs (the form attn-tile and
attn-pipeline produce) through attn-lower-to-cpu, the 'llvm' stage and the JIT,
run on torch tensors and compared with a float64 torch reference."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

from attncc import CompileError, pipeline
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from attncc.context import mlir_context
from attncc.runtime.cpu import CpuKernel, KernelArgumentError
from mlir import ir

MLIR_TYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
# One unit in the last place of the output type, relative: the kernel computes
# in f32 and rounds once at the end.
REL_TOL = {torch.float32: 1e-5, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


@dataclass(frozen=True)
class Program:
    """A hand-written tile program for softmax(Q K^T / sqrt(D) + bias, mask) V."""

    B: int = 1
    H: int = 2
    Lq: int = 100
    Lk: int = 100
    D: int = 16
    bm: int = 32
    bn: int = 16
    dtype: torch.dtype = torch.float32
    mask: str = "none"  # none | causal | sliding_window
    window: int = 0
    bias_shape: Optional[tuple[int, ...]] = None
    bias_dtype: torch.dtype = torch.float32
    kv_group: int = 1  # query heads per KV head (GQA)
    multi_buffer: bool = False  # K/V in 2-slot buffers, next block prefetched under scf.if
    dynamic: bool = False  # sequence lengths as dynamic memref dims

    def text(self) -> str:
        t = MLIR_TYPES[self.dtype]
        seq_q = "?" if self.dynamic else str(self.Lq)
        seq_k = "?" if self.dynamic else str(self.Lk)
        hkv = self.H // self.kv_group
        qt = f"memref<{self.B}x{self.H}x{seq_q}x{self.D}x{t}>"
        kt = f"memref<{self.B}x{hkv}x{seq_k}x{self.D}x{t}>"
        bias_t = None
        args = [f"%q: {qt}", f"%k: {kt}", f"%v: {kt}"]
        if self.bias_shape is not None:
            bias_t = (f"memref<{'x'.join(map(str, self.bias_shape))}"
                      f"x{MLIR_TYPES[self.bias_dtype]}>")
            args.append(f"%bias: {bias_t}")
        args.append(f"%out: {qt}")
        BM, BN, D = self.bm, self.bn, self.D
        scale = 1.0 / math.sqrt(D)
        lines = [f"func.func @kernel({', '.join(args)}) {{",
                 "  %c0 = arith.constant 0 : index", "  %c1 = arith.constant 1 : index",
                 "  %c2 = arith.constant 2 : index",
                 f"  %cB = arith.constant {self.B} : index",
                 f"  %cH = arith.constant {self.H} : index",
                 f"  %cG = arith.constant {self.kv_group} : index",
                 f"  %cBM = arith.constant {BM} : index", f"  %cBN = arith.constant {BN} : index",
                 f"  %cBM1 = arith.constant {BM - 1} : index",
                 "  %ninf = arith.constant 0xFF800000 : f32",
                 "  %zero = arith.constant 0.0 : f32"]
        if self.dynamic:
            lines += ["  %Lq = memref.dim %q, %c2 : " + qt, "  %Lk = memref.dim %k, %c2 : " + kt]
        else:
            lines += [f"  %Lq = arith.constant {self.Lq} : index",
                      f"  %Lk = arith.constant {self.Lk} : index"]
        lines += ["  %lqp = arith.addi %Lq, %cBM1 : index",
                  "  %nmb = arith.divui %lqp, %cBM : index",
                  "  scf.parallel (%b, %h, %mb) = (%c0, %c0, %c0) to (%cB, %cH, %nmb) "
                  "step (%c1, %c1, %c1) {",
                  "    %hk = arith.divui %h, %cG : index",
                  "    %m0 = arith.muli %mb, %cBM : index",
                  "    %vm = arith.subi %Lq, %m0 : index"]
        bufs = {"qt": f"memref<{BM}x{D}xf32>", "s": f"memref<{BM}x{BN}xf32>",
                "acc": f"memref<{BM}x{D}xf32>", "mx": f"memref<{BM}xf32>",
                "sm": f"memref<{BM}xf32>"}
        if self.multi_buffer:
            bufs["kbuf"] = f"memref<2x{D}x{BN}xf32>"
            bufs["vbuf"] = f"memref<2x{BN}x{D}xf32>"
        else:
            bufs["kt"] = f"memref<{D}x{BN}xf32>"
            bufs["vt"] = f"memref<{BN}x{D}xf32>"
        lines += [f"    %{n} = memref.alloc() : {ty}" for n, ty in bufs.items()]
        lines += [f"    linalg.fill ins(%zero : f32) outs(%acc : {bufs['acc']})",
                  f"    linalg.fill ins(%ninf : f32) outs(%mx : {bufs['mx']})",
                  f"    linalg.fill ins(%zero : f32) outs(%sm : {bufs['sm']})",
                  f"    attn.copy_tile %q[%b, %h, %m0] to %qt scale {scale!r} valid %vm "
                  f": {qt}, {bufs['qt']}"]
        # KV loop bounds: causal and window masks skip fully masked blocks.
        if self.mask in ("causal", "sliding_window"):
            lines += ["    %hi0 = arith.addi %m0, %cBM : index",
                      "    %hi = arith.minsi %hi0, %Lk : index"]
        else:
            lines += ["    %hi = arith.addi %Lk, %c0 : index"]
        if self.mask == "sliding_window":
            lines += [f"    %cW1 = arith.constant {self.window - 1} : index",
                      "    %lo0 = arith.subi %m0, %cW1 : index",
                      "    %lo1 = arith.maxsi %lo0, %c0 : index",
                      "    %lo2 = arith.divui %lo1, %cBN : index",
                      "    %lo = arith.muli %lo2, %cBN : index"]
        else:
            lines += ["    %lo = arith.addi %c0, %c0 : index"]
        kslot = f"memref<{D}x{BN}xf32, strided<[{BN}, 1], offset: ?>>"
        vslot = f"memref<{BN}x{D}xf32, strided<[{D}, 1], offset: ?>>"

        def copies(indent, n0, kdst, vdst, kty, vty):
            return [f"{indent}%vk_{n0[1:]} = arith.subi %Lk, {n0} : index",
                    f"{indent}attn.copy_tile %k[%b, %hk, {n0}] to {kdst} transposed valid "
                    f"%vk_{n0[1:]} : {kt}, {kty}",
                    f"{indent}attn.copy_tile %v[%b, %hk, {n0}] to {vdst} valid %vk_{n0[1:]} "
                    f": {kt}, {vty}"]

        if self.multi_buffer:
            # Prologue: block `lo` into slot 0 (when the loop runs at all).
            lines += ["    %run = arith.cmpi slt, %lo, %hi : index",
                      f"    %k0 = memref.subview %kbuf[%c0, 0, 0] [1, {D}, {BN}] [1, 1, 1] : "
                      f"{bufs['kbuf']} to {kslot}",
                      f"    %v0 = memref.subview %vbuf[%c0, 0, 0] [1, {BN}, {D}] [1, 1, 1] : "
                      f"{bufs['vbuf']} to {vslot}",
                      "    scf.if %run {"]
            lines += copies("      ", "%lo", "%k0", "%v0", kslot, vslot)
            lines += ["    }"]
        lines += ["    scf.for %n0 = %lo to %hi step %cBN {",
                  "      %vn = arith.subi %Lk, %n0 : index"]
        if self.multi_buffer:
            lines += ["      %it0 = arith.subi %n0, %lo : index",
                      "      %it = arith.divui %it0, %cBN : index",
                      "      %slot = arith.remui %it, %c2 : index",
                      "      %nslot = arith.subi %c1, %slot : index",
                      f"      %kc = memref.subview %kbuf[%slot, 0, 0] [1, {D}, {BN}] [1, 1, 1] "
                      f": {bufs['kbuf']} to {kslot}",
                      f"      %vc = memref.subview %vbuf[%slot, 0, 0] [1, {BN}, {D}] [1, 1, 1] "
                      f": {bufs['vbuf']} to {vslot}",
                      "      %nx = arith.addi %n0, %cBN : index",
                      "      %more = arith.cmpi slt, %nx, %hi : index",
                      "      scf.if %more {",
                      f"        %kn = memref.subview %kbuf[%nslot, 0, 0] [1, {D}, {BN}] [1, 1, 1] "
                      f": {bufs['kbuf']} to {kslot}",
                      f"        %vnx = memref.subview %vbuf[%nslot, 0, 0] [1, {BN}, {D}] [1, 1, 1] "
                      f": {bufs['vbuf']} to {vslot}"]
            lines += copies("        ", "%nx", "%kn", "%vnx", kslot, vslot)
            lines += ["      }"]
            kuse, vuse, kty, vty = "%kc", "%vc", kslot, vslot
        else:
            lines += copies("      ", "%n0", "%kt", "%vt", bufs["kt"], bufs["vt"])
            kuse, vuse, kty, vty = "%kt", "%vt", bufs["kt"], bufs["vt"]
        lines += [f"      attn.tile_matmul %qt, {kuse} into %s : {bufs['qt']}, {kty}, {bufs['s']}"]
        if bias_t is not None:
            lines += [f"      attn.tile_bias %s, %bias[%b, %h, %m0, %n0] valid %vm, %vn scale 1.0 "
                      f": {bufs['s']}, {bias_t}"]
        window = f" window {self.window}" if self.mask == "sliding_window" else ""
        lines += [f"      attn.tile_mask %s rows %m0 cols %n0 valid %vn {self.mask}{window} "
                  f": {bufs['s']}",
                  f"      attn.tile_softmax %s, %mx, %sm, %acc : {bufs['s']}, {bufs['mx']}, "
                  f"{bufs['sm']}, {bufs['acc']}",
                  f"      attn.tile_matmul %s, {vuse} into %acc accumulate : {bufs['s']}, {vty}, "
                  f"{bufs['acc']}",
                  "    } {attn.kv_loop}",
                  f"    attn.tile_store %acc, %sm to %out[%b, %h, %m0] valid %vm : {bufs['acc']}, "
                  f"{bufs['sm']}, {qt}"]
        lines += [f"    memref.dealloc %{n} : {ty}" for n, ty in bufs.items()]
        lines += ["    scf.reduce", "  }", "  return", "}"]
        return "\n".join(lines)

    def inputs(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        hkv = self.H // self.kv_group
        q = torch.randn(self.B, self.H, self.Lq, self.D, generator=g).to(self.dtype)
        k = torch.randn(self.B, hkv, self.Lk, self.D, generator=g).to(self.dtype)
        v = torch.randn(self.B, hkv, self.Lk, self.D, generator=g).to(self.dtype)
        ins = [q, k, v]
        if self.bias_shape is not None:
            ins.append(torch.randn(self.bias_shape, generator=g).to(self.bias_dtype))
        return ins

    def reference(self, q, k, v, bias=None) -> torch.Tensor:
        """float64 SDPA with the op descriptions' mask semantics; rows with every
        key masked give zeros (SDPA gives NaN there)."""
        q, k, v = q.double(), k.double(), v.double()
        if self.kv_group > 1:
            k = k.repeat_interleave(self.kv_group, dim=1)
            v = v.repeat_interleave(self.kv_group, dim=1)
        i = torch.arange(self.Lq)[:, None]
        j = torch.arange(self.Lk)[None, :]
        keep = torch.ones(self.Lq, self.Lk, dtype=torch.bool)
        if self.mask in ("causal", "sliding_window"):
            keep &= j <= i
        if self.mask == "sliding_window":
            keep &= j > i - self.window
        mask = torch.zeros(self.Lq, self.Lk, dtype=torch.float64).masked_fill(~keep, -math.inf)
        if bias is not None:
            mask = mask + bias.double()
        mask = mask.expand(self.B, self.H, self.Lq, self.Lk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        dead = torch.isinf(mask).all(dim=-1, keepdim=True) & (mask < 0).all(dim=-1, keepdim=True)
        return torch.where(dead, torch.zeros_like(out), out)


def compile_program(p: Program, num_threads: int = 2, vector_width: int = 16) -> CpuKernel:
    with mlir_context():
        module = ir.Module.parse(p.text())
        passes = cpu_target.llvm_passes(
            dict(CompileOptions(num_threads=num_threads).as_dict(), vector_width=vector_width))
        pipeline.run_passes(module, passes, what="stage 'llvm'")
        return CpuKernel(module, "kernel", num_threads=num_threads)


def check(p: Program, num_threads: int = 2, vector_width: int = 16, seed: int = 0):
    kernel = compile_program(p, num_threads, vector_width)
    ins = p.inputs(seed)
    out = kernel(*ins)
    ref = p.reference(*ins)
    assert out.dtype == p.dtype and out.shape == ref.shape
    assert not torch.isnan(out).any()
    rel = REL_TOL[p.dtype]
    # The reference rounded to the output type, then one ulp of slack.
    expected = ref.to(p.dtype).double()
    torch.testing.assert_close(out.double(), expected, rtol=rel, atol=rel)
    return out, ref


# -- masks, shapes, tails ---------------------------------------------------------------------

@pytest.mark.parametrize("mask", ["none", "causal"])
def test_f32_blocks_of_64(mask):
    check(Program(B=1, H=2, Lq=192, Lk=192, D=64, bm=64, bn=64, mask=mask))


@pytest.mark.parametrize("mask", ["none", "causal"])
def test_tail_blocks(mask):
    # 100 is not a multiple of 32 (query blocks) nor of 16 (KV blocks).
    check(Program(Lq=100, Lk=100, D=16, bm=32, bn=16, mask=mask))


def test_sliding_window():
    check(Program(Lq=130, Lk=130, D=32, bm=32, bn=16, mask="sliding_window", window=20))


def test_window_of_one_is_the_diagonal():
    q, k, v = Program(D=16, mask="sliding_window", window=1).inputs()
    out = compile_program(Program(D=16, mask="sliding_window", window=1))(q, k, v)
    torch.testing.assert_close(out, v, rtol=1e-6, atol=1e-6)


def test_more_keys_than_queries_and_head_dim_8():
    # D = 8 < 16 lanes: vector tails and the element-wise transposed copy.
    check(Program(Lq=40, Lk=72, D=8, bm=16, bn=32, mask="none"))


def test_head_dim_48_column_tail():
    # 48 = 3 vectors: a 3-vector register block and 16x16 transposes with D=48.
    check(Program(Lq=64, Lk=80, D=48, bm=32, bn=32, mask="causal"))


@pytest.mark.parametrize("bm, bn", [(24, 16), (8, 8), (16, 24)])
def test_softmax_row_groups_and_leftover_rows(bm, bn):
    # 24 query rows: one group of 16 rows and 8 rows one at a time; 8 keys:
    # narrower than a vector; 24 keys: a 16 + 8 lane tail (per-row path).
    check(Program(Lq=100, Lk=100, D=16, bm=bm, bn=bn, mask="causal"))


def test_wide_key_blocks_use_chunk_loops():
    # 512 keys per block = 32 vectors per row: the chunk loops are scf.for
    # (not unrolled), for the mask, the bias and the softmax.
    check(Program(Lq=40, Lk=600, D=16, bm=16, bn=512, mask="causal", bias_shape=(40, 600)))
    check(Program(Lq=40, Lk=600, D=16, bm=16, bn=512, mask="sliding_window", window=300))


def test_gqa():
    check(Program(H=4, kv_group=2, Lq=64, Lk=64, D=32, bm=32, bn=32, mask="causal"))


# -- bias ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias_shape", [(100, 100), (1, 2, 100, 100), (100, 1), (1, 1, 1, 100)])
def test_bias(bias_shape):
    check(Program(Lq=100, Lk=100, D=16, bm=32, bn=16, bias_shape=bias_shape))


def test_bias_f16_with_causal():
    check(Program(Lq=64, Lk=64, D=32, bm=32, bn=32, mask="causal", bias_shape=(1, 2, 64, 64),
                  bias_dtype=torch.float16))


def test_fully_masked_rows_give_zeros():
    p = Program(Lq=48, Lk=48, D=16, bm=16, bn=16, bias_shape=(48, 48))
    q, k, v, bias = p.inputs()
    bias[5, :] = -math.inf   # every key masked for query 5
    bias[30, 17:] = -math.inf
    bias[30, :17] = -math.inf
    out = compile_program(p)(q, k, v, bias)
    assert not torch.isnan(out).any()
    assert (out[:, :, 5] == 0).all() and (out[:, :, 30] == 0).all()
    ref = p.reference(q, k, v, bias)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


# -- element types ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mask", ["none", "causal"])
def test_half_types(dtype, mask):
    check(Program(Lq=100, Lk=100, D=32, bm=32, bn=32, dtype=dtype, mask=mask))


# -- what attn-pipeline produces -------------------------------------------------------------

@pytest.mark.parametrize("mask", ["none", "causal", "sliding_window"])
def test_multi_buffered_strided_subviews(mask):
    # K/V in 2-slot buffers read through memref<..., strided<[..., 1], offset: ?>>
    # subviews, the next block's copies inside scf.if.
    p = Program(Lq=100, Lk=100, D=32, bm=32, bn=16, mask=mask, window=24, multi_buffer=True)
    assert "strided<[16, 1], offset: ?>" in p.text() and "scf.if %more" in p.text()
    check(p)


def test_multi_buffered_f16_blocks_of_64():
    check(Program(Lq=256, Lk=256, D=64, bm=64, bn=64, dtype=torch.float16, mask="causal",
                  multi_buffer=True))


# -- dynamic shapes, threads, vector widths --------------------------------------------------

def test_dynamic_sequence_lengths():
    p = Program(Lq=77, Lk=77, D=16, bm=32, bn=16, mask="causal", dynamic=True)
    kernel = compile_program(p)
    for L in (77, 5, 130):
        q = Program(Lq=L, Lk=L, D=16, mask="causal")
        ins = q.inputs(seed=L)
        torch.testing.assert_close(kernel(*ins).double(), q.reference(*ins), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("num_threads", [1, 3])
def test_thread_counts_agree(num_threads):
    p = Program(B=2, H=2, Lq=96, Lk=96, D=32, bm=32, bn=32, mask="causal")
    out, _ = check(p, num_threads=num_threads)
    out2, _ = check(p, num_threads=2)
    assert torch.equal(out, out2)


@pytest.mark.parametrize("width", [4, 8])
def test_narrower_vectors(width):
    check(Program(Lq=100, Lk=100, D=16, bm=32, bn=16, mask="causal"), vector_width=width)


# -- the runtime's argument checks and diagnostics -------------------------------------------

def test_runtime_checks_its_arguments():
    p = Program(Lq=32, Lk=32, D=16, bm=32, bn=16)
    kernel = compile_program(p)
    q, k, v = p.inputs()
    with pytest.raises(KernelArgumentError, match="takes 3 inputs"):
        kernel(q, k)
    with pytest.raises(KernelArgumentError, match=r"argument 1 of kernel: shape \(1, 2, 16, 16\)"):
        kernel(q, k[:, :, :16], v)
    with pytest.raises(KernelArgumentError, match="dtype torch.float16, expected torch.float32"):
        kernel(q, k.half(), v)
    with pytest.raises(KernelArgumentError, match="strides"):
        kernel.run(q, k, v, torch.empty(1, 2, 16, 32).transpose(2, 3))


def test_inputs_are_not_copied_and_views_work():
    p = Program(Lq=32, Lk=32, D=16, bm=32, bn=16)
    kernel = compile_program(p)
    q, k, v = p.inputs()
    out = torch.empty(1, 2, 32, 16)
    kernel.run(q, k, v, out)  # writes in place
    torch.testing.assert_close(out.double(), p.reference(q, k, v), rtol=1e-5, atol=1e-5)
    # A transposed view ([B, L, H, D] storage) is accepted and made contiguous.
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(kernel(qt, k, v), out)


def test_native_invoker_refuses_before_running():
    """The extension's Invoker (the call path of every CPU kernel) checks every
    tensor and runs nothing when one does not match: it answers the index, and
    the Python checks then name the problem."""
    p = Program(Lq=32, Lk=32, D=16, bm=32, bn=16)
    kernel = compile_program(p)
    q, k, v = p.inputs()
    out = torch.full((1, 2, 32, 16), 7.0)
    call = lambda *ts: kernel._invoker(kernel._fn_addr, list(ts), 1)  # noqa: E731
    meta = torch.empty(1, 2, 32, 16, device="meta")
    for bad, at in [((q, k.double(), v, out), 1), ((q, k, v, out[:, :, :16]), 3),
                    ((q, k, v, out.transpose(2, 3).contiguous().transpose(2, 3)), 3),
                    ((q, k, "v", out), 2), ((q, k, v, meta), 3)]:
        assert call(*bad) == at, at
    assert torch.equal(out, torch.full((1, 2, 32, 16), 7.0))   # nothing ran
    assert call(q, k, v, out) == -1
    torch.testing.assert_close(out.double(), p.reference(q, k, v), rtol=1e-5, atol=1e-5)
    with pytest.raises(KernelArgumentError, match="argument 3 is on meta"):
        kernel.run(q, k, v, meta)
    with pytest.raises(ValueError, match="wrong number of kernel arguments"):
        call(q, k, v)


def test_native_invoker_keeps_trusted_descriptors_per_object():
    """Workspaces (tensors from `trusted_from` on) keep their descriptors while
    they are the same objects; another object at that position is described
    again, so a new workspace is never written through an old pointer."""
    p = Program(Lq=32, Lk=32, D=16, bm=32, bn=16)
    kernel = compile_program(p)
    q, k, v = p.inputs()
    ref = p.reference(q, k, v)
    outs = [torch.zeros(1, 2, 32, 16) for _ in range(3)]
    for out in outs + outs[::-1]:
        for o in outs:
            o.zero_()
        assert kernel._invoker(kernel._fn_addr, [q, k, v, out], 1, 0, 0, 0, 3) == -1
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        assert all(not o.any() for o in outs if o is not out)
    # A trusted position is still checked the first time an object is seen.
    assert kernel._invoker(kernel._fn_addr, [q, k, v, torch.zeros(1, 2, 16, 16)],
                           1, 0, 0, 0, 3) == 3


def test_kernels_take_memrefs_only():
    text = """
    func.func @kernel(%acc: memref<8x16xf32>, %l: memref<8xf32>, %o: memref<1x1x8x16xf32>,
                      %n: index) {
      %c0 = arith.constant 0 : index
      attn.tile_store %acc, %l to %o[%c0, %c0, %c0] valid %n
          : memref<8x16xf32>, memref<8xf32>, memref<1x1x8x16xf32>
      return
    }"""
    with mlir_context():
        module = ir.Module.parse(text)
        pipeline.run_passes(module, cpu_target.llvm_passes(
            CompileOptions(num_threads=1).as_dict()))
        # One trailing index is neither a memref nor the two team arguments
        # (thread number, team size) of attn-parallel-to-omp.
        with pytest.raises(CompileError, match=r"'index'\]: expected memrefs, then none or "
                                               "two index arguments"):
            CpuKernel(module, "kernel")
    middle = text.replace("%o: memref<1x1x8x16xf32>,\n                      %n: index",
                          "%n: index, %o: memref<1x1x8x16xf32>")
    assert middle != text
    with mlir_context():
        module = ir.Module.parse(middle)
        pipeline.run_passes(module, cpu_target.llvm_passes(
            CompileOptions(num_threads=1).as_dict()))
        with pytest.raises(CompileError, match="index: CPU kernels take memrefs only"):
            CpuKernel(module, "kernel")


def test_unsupported_vector_width_is_a_compile_error():
    with pytest.raises(CompileError, match="vector-width must be a power of two"):
        compile_program(Program(), vector_width=12)


def test_unsupported_shape_is_a_compile_error():
    text = """
    func.func @kernel(%a: memref<8x16xf32>, %b: memref<16x?xf32>, %c: memref<8x?xf32>) {
      attn.tile_matmul %a, %b into %c : memref<8x16xf32>, memref<16x?xf32>, memref<8x?xf32>
      return
    }"""
    with mlir_context():
        module = ir.Module.parse(text)
        with pytest.raises(CompileError, match="b needs a static innermost dimension"):
            pipeline.run_passes(module, "attn-lower-to-cpu", what="stage 'llvm'")
        assert "attn.tile_matmul" in str(module)  # left untouched


# -- through the whole pipeline (attn-tile, attn-pipeline, attn-unroll, stage 'llvm') ------

@pytest.mark.parametrize("kw", [
    dict(dtype="f32", mask="causal", L=100, D=16, opts=dict(block_m=32, block_n=16, num_stages=1)),
    dict(dtype="f32", mask="none", L=100, D=32, opts=dict(block_m=32, block_n=16, num_stages=2)),
    dict(dtype="f16", mask="causal", L=130, D=64, opts=dict(block_m=64, block_n=32, num_stages=3,
                                                             unroll=2)),
    dict(dtype="bf16", mask="sliding_window", window=40, L=150, D=32,
         opts=dict(block_m=32, block_n=32, num_stages=2)),
    dict(dtype="f32", mask="causal", L=96, D=32, hkv=1, opts=dict(block_m=32, block_n=32)),
])
def test_compiled_graphs(kw):
    from attncc import Graph
    from attncc.compiler import compile_graph
    from attncc.options import CompileOptions

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[kw["dtype"]]
    H, hkv, L, D = 4, kw.get("hkv", 4), kw["L"], kw["D"]
    g = Graph("attention")
    q = g.input("q", (1, H, L, D), kw["dtype"])
    k = g.input("k", (1, hkv, L, D), kw["dtype"])
    v = g.input("v", (1, hkv, L, D), kw["dtype"])
    g.output(g.attention(q, k, v, mask=kw["mask"], window=kw.get("window")))
    kernel = compile_graph(g, CompileOptions(num_threads=2, **kw["opts"]))
    assert "llvm.func" in kernel.ir("llvm")
    p = Program(H=H, kv_group=H // hkv, Lq=L, Lk=L, D=D, dtype=dtype, mask=kw["mask"],
                window=kw.get("window", 0))
    ins = p.inputs()
    out = kernel(*ins)
    rel = REL_TOL[dtype]
    torch.testing.assert_close(out.double(), p.reference(*ins).to(dtype).double(), rtol=rel,
                               atol=rel)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_importing_triton_after_a_cpu_kernel_does_not_abort():
    # torch.export / torch.compile import Triton, whose libtriton.so carries its
    # own static LLVM: had a kernel put the wheel's libLLVM.so into the global
    # symbol scope (ExecutionEngine shared_libs load with RTLD_GLOBAL), that
    # import would abort the process ("Option ... registered more than once").
    code = ("import torch, attncc\n"
            "q = torch.randn(1, 2, 64, 32)\n"
            "attncc.attention(q, q, q, causal=True)\n"
            "import triton\n"
            "print('imported')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]
