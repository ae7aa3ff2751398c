"""The score variants (issue 11) on the GPU without a GPU: bottom-right causal
alignment, flash-attn window_size=(left, right), logit soft-capping, ALiBi
slopes and attention sinks, alone and combined with GQA, compiled for sm_80
(mma.sync) and sm_90a (wgmma, TMA) and run in the SIMT emulator
(attncc.gpu_emulator) against test_variants' float64 reference, with its
criterion: error <= 2x the error of the same reference computed in the
inputs' dtype, plus a floor. Kernels take dynamic sequence lengths: each
compiled kernel runs several (Lq, Lk), including Lq = 1, Lq < Lk, Lq > Lk
(fully masked rows) and lengths that are not multiples of the blocks.
ptxas: every variant assembles with 0 spill bytes at the default blocks."""
from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from attncc import compiler
from attncc.graph import Graph
from attncc.options import CompileOptions
from attncc.runtime.cuda import cuda_available
from attncc.targets import gpu as agpu

from gpu_testing import emulate_tensors
from test_variants import Case, reference

TORCH = {"f16": torch.float16, "bf16": torch.bfloat16}
FLOOR = {"f16": 5e-4, "bf16": 2e-3}
needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None,
                                 reason="ptxas (CUDA toolkit) not installed")


def graph(c: Case) -> Graph:
    """The variant graph of `c` with dynamic Lq and Lk ('?' dims)."""
    hq = c.kv_heads * c.group
    g = Graph("attention")
    q = g.input("q", (c.batch, hq, None, c.head_dim), c.dtype)
    k = g.input("k", (c.batch, c.kv_heads, None, c.head_dim), c.dtype)
    v = g.input("v", (c.batch, c.kv_heads, None, c.head_dim), c.dtype)
    sl = g.input("slopes", (hq,), "f32") if c.alibi else None
    sk = g.input("sinks", (hq,), "f32") if c.sinks else None
    g.output(g.attention(q, k, v, mask="causal" if c.causal else "none", window=c.window,
                         causal_align=c.align, softcap=c.softcap, alibi_slopes=sl, sinks=sk))
    return g


def compile_gpu(c: Case, chip: str, stop_after="gpu", **opts):
    o = dict(block_m=64, block_n=64, num_stages=2)
    o.update(opts)
    return compiler.compile_graph(graph(c), CompileOptions(**o), chip, stop_after=stop_after)


def inputs(c: Case, lq: int, lk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dt = TORCH[c.dtype]
    hq = c.kv_heads * c.group
    q = torch.randn(c.batch, hq, lq, c.head_dim, generator=g).to(dt)
    k = torch.randn(c.batch, c.kv_heads, lk, c.head_dim, generator=g).to(dt)
    v = torch.randn(c.batch, c.kv_heads, lk, c.head_dim, generator=g).to(dt)
    # ALiBi slopes as in the paper's geometric sequence scale (up to 0.5).
    slopes = torch.rand(hq, generator=g) * 0.5 if c.alibi else None
    sinks = torch.randn(hq, generator=g) * 2 if c.sinks else None
    return q, k, v, slopes, sinks


def check_output(out, c: Case, q, k, v, slopes, sinks, where: str):
    ref = reference(c, q, k, v, slopes, sinks)
    same = reference(c, q, k, v, slopes, sinks, dtype=TORCH[c.dtype])
    err = (out.double() - ref).abs().max().item()
    torch_err = (same.double() - ref).abs().max().item()
    bound = 2 * torch_err + FLOOR[c.dtype]
    assert torch.isfinite(out).all(), f"{where}: non-finite output, {c.describe()}"
    assert err <= bound, (f"{where}: error {err:.3g} > 2 x {torch_err:.3g} + {FLOOR[c.dtype]:g} "
                          f"at Lq={c.lq}, Lk={c.lk}: {c.describe()}")


def run_and_check(gpu_ir: str, c: Case, lq: int, lk: int, where: str):
    """Emulates the kernel at lengths (lq, lk), checks it; returns the output."""
    c = dataclasses.replace(c, lq=lq, lk=lk)
    q, k, v, slopes, sinks = inputs(c, lq, lk)
    extra = [t for t in (slopes, sinks) if t is not None]
    elts = [c.dtype] * 3 + ["f32"] * len(extra)
    out, stats = emulate_tensors(gpu_ir, [q, k, v] + extra, elts,
                                 (c.batch, q.shape[1], lq, c.head_dim), c.dtype)
    check_output(out, c, q, k, v, slopes, sinks, where)
    # One thread block per (query block, head, batch), from the run-time Lq.
    assert math.prod(stats["launch"]["grid"]) == -(-lq // 64) * q.shape[1] * c.batch
    return out


# Each kernel runs at two or three lengths (one compile, dynamic Lq / Lk).
# block 64 x 64: Lk = 150 is 3 KV blocks, the last one partial.
VARIANTS = {
    # Lq < Lk: query i sees keys <= i + Lk - Lq; Lq = 1 (decode) sees all.
    "causal-bottom-right": (Case(causal=True, align="bottom_right", head_dim=64, dtype="f16"),
                            [(37, 150), (1, 77)]),
    # flash-attn window_size=(40, 8) around the aligned diagonal: the first
    # KV block of late queries is skipped (loop bounds), others masked.
    "window-sides-bottom-right": (Case(window=(40, 8), align="bottom_right", head_dim=64,
                                       dtype="f16"), [(70, 190), (1, 130)]),
    "window-right-only-top-left": (Case(window=(-1, 20), head_dim=64, dtype="bf16"),
                                   [(100, 100)]),
    # c = 5: many scaled scores are beyond the cap's linear range.
    "softcap": (Case(softcap=5.0, head_dim=128, dtype="bf16"), [(70, 90), (1, 33)]),
    "alibi": (Case(alibi=True, head_dim=64, dtype="f16"), [(37, 150), (80, 80)]),
    "alibi-causal-bottom-right": (Case(alibi=True, causal=True, align="bottom_right",
                                       head_dim=64, dtype="f16"), [(20, 100)]),
    "sinks": (Case(sinks=True, head_dim=64, dtype="f16"), [(37, 70), (1, 10)]),
    # GQA (2 query heads per KV head) with a window, soft-capping and sinks.
    "combo-window-softcap-sinks-gqa": (
        Case(window=(30, 0), align="bottom_right", softcap=20.0, sinks=True, group=2,
             kv_heads=1, head_dim=64, dtype="f16"), [(20, 100), (1, 65)]),
    "combo-all-bf16-d128": (
        Case(window=(25, 3), align="bottom_right", softcap=20.0, alibi=True, sinks=True,
             group=2, kv_heads=1, head_dim=128, dtype="bf16"), [(17, 81)]),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_sm80(name):
    c, lengths = VARIANTS[name]
    gpu_ir = compile_gpu(c, "sm_80").ir("gpu")
    for lq, lk in lengths:
        run_and_check(gpu_ir, c, lq, lk, f"sm_80 {name}")


# sm_90a: TMA loads, plus the cp.async flavour for the combination (the
# score math is the same code for both).
SM90 = [("causal-bottom-right", True), ("softcap", True), ("alibi", True),
        ("combo-window-softcap-sinks-gqa", True), ("combo-window-softcap-sinks-gqa", False)]


@pytest.mark.parametrize("name,tma", SM90,
                         ids=[f"{n}-{'tma' if t else 'cp.async'}" for n, t in SM90])
def test_variant_sm90a(name, tma):
    c, lengths = VARIANTS[name]
    gpu_ir = compile_gpu(c, "sm_90a", tma=tma).ir("gpu")
    assert "nvvm.wgmma.mma_async" in gpu_ir
    for lq, lk in lengths:
        run_and_check(gpu_ir, c, lq, lk, f"sm_90a {name}")


@pytest.mark.parametrize("sinks", [False, True], ids=["no-sinks", "sinks"])
def test_fully_masked_rows_are_zero(sinks):
    # Bottom-right causal with Lq > Lk: rows i < Lq - Lk see no key (with
    # sinks the sink alone is the denominator: still zeros). The same kernel
    # also runs Lq < Lk.
    c = Case(causal=True, align="bottom_right", sinks=sinks, head_dim=64, dtype="f16")
    gpu_ir = compile_gpu(c, "sm_80").ir("gpu")
    out = run_and_check(gpu_ir, c, 90, 20, "fully masked")
    assert torch.equal(out[:, :, :70], torch.zeros_like(out[:, :, :70]))
    assert out[:, :, 70:].abs().amax() > 0
    run_and_check(gpu_ir, c, 5, 40, "fully masked kernel, Lq < Lk")


def test_variant_ops_in_the_kernel():
    # What each variant lowers to (see docs/gpu.md): the soft-cap's ex2 + rcp
    # (no tanh / libdevice call), ALiBi's per-lane f32 distances, the slope
    # and sink loads, and the sink in the initial row max.
    c = Case(softcap=20.0, alibi=True, sinks=True, causal=True, align="bottom_right",
             head_dim=64, dtype="f16")
    gpu_ir = compile_gpu(c, "sm_80").ir("gpu")
    kernel = gpu_ir[gpu_ir.index("gpu.module"):]
    assert "rcp.approx.ftz.f" in kernel and "tanh" not in kernel
    assert kernel.count("arith.sitofp") == 4     # one f32 query distance per lane row
    assert len(re.findall(r"memref\.load %arg[34]\[", kernel)) >= 2   # slope, sink


# --------------------------------------------------------------------------- on a GPU

_CUDA, _WHY = cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _CUDA, reason=f"needs an NVIDIA GPU: {_WHY}")
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_on_device(name):
    # The same kernels on the hardware (target "cuda": the current device's
    # chip), at the emulated lengths and a long one.
    c, lengths = VARIANTS[name]
    compiled = compile_gpu(c, "cuda", stop_after=None)
    for lq, lk in lengths + [(333, 1000)]:
        cl = dataclasses.replace(c, lq=lq, lk=lk)
        ts = inputs(cl, lq, lk)
        args = [t.cuda() for t in ts if t is not None]
        out = compiled(*args)
        torch.cuda.synchronize()
        check_output(out.float().cpu(), cl, *ts, f"cuda {name}")


# --------------------------------------------------------------------------- ptxas

SPILL_VARIANTS = {
    "causal-bottom-right": Case(causal=True, align="bottom_right"),
    "window-sides": Case(window=(127, 0), align="bottom_right"),
    "softcap": Case(softcap=30.0, causal=True),
    "alibi": Case(alibi=True, causal=True, align="bottom_right"),
    "sinks": Case(sinks=True, causal=True),
    "combo": Case(window=(127, 0), align="bottom_right", softcap=30.0, sinks=True, group=4,
                  kv_heads=2),
}


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("name", list(SPILL_VARIANTS))
def test_variants_assemble_without_spills(name, head_dim, chip):
    c = dataclasses.replace(SPILL_VARIANTS[name], head_dim=head_dim, dtype="f16")
    compiled = compile_gpu(c, chip, stop_after=None)
    md = compiled.metadata
    assert compiled.cubin and compiled.cubin[:4] == b"\x7fELF"
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, compiled.ir("cubin")
    assert md["stack_frame_bytes"] == 0, compiled.ir("cubin")
    assert md["registers"] <= agpu.CHIPS[chip].max_regs_per_thread
    ptx = compiled.ptx
    assert ".local" not in ptx
    if c.softcap:
        assert "rcp.approx.ftz.f32" in ptx and "tanh" not in ptx
    if chip == "sm_90a":
        assert "wgmma.mma_async" in ptx
