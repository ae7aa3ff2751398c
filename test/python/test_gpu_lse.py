"""The log-sum-exp output (`return_lse`, attn.tile_lse) on the GPU without a
GPU: kernels compiled for sm_80 (mma.sync) and sm_90a (wgmma, TMA) with
attn-tile's lse form run in the SIMT emulator (attncc.gpu_emulator) at
dynamic lengths. The output is checked as test_gpu_variants checks it; the
LSE against float64 logsumexp over the same masked (soft-capped, ALiBi,
sink) scores: rows no key reaches give -inf, every row is written (the
buffer starts as NaN). ptxas: the lse kernels assemble with 0 spill bytes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from gpu_testing import emulate_with_outputs
from attncc import compiler
from attncc.options import CompileOptions
from attncc.runtime.cuda import cuda_available

from test_gpu_variants import VARIANTS, check_output, graph, inputs, needs_ptxas
from test_variants import Case, masked_scores

# lse = max + ln(sum): against float64 on the same (rounded) inputs only the
# f32 scores' and sums' rounding remain (measured <= 4e-7 relative in the
# emulator, which takes ex2 / lg2 as exact; on hardware they add ~2^-22).
# 1e-5 (relative, absolute below |lse| = 1) catches a wrong row or a missing
# ln 2 or sink term (errors of 1e-2 to 1).
LSE_TOL = 1e-5

CASES = {
    # (90, 40): Lq > Lk, bottom-right: the first 50 rows see no key (lse
    # -inf, output 0).
    "causal-bottom-right": (Case(causal=True, align="bottom_right", head_dim=64, dtype="f16"),
                            [(37, 150), (1, 77), (90, 40)]),
    "none-bf16-d128": (Case(head_dim=128, dtype="bf16"), [(70, 90), (1, 33)]),
    "sinks": (VARIANTS["sinks"][0], [(37, 70), (1, 10)]),
    "combo-window-softcap-sinks-gqa": (VARIANTS["combo-window-softcap-sinks-gqa"][0],
                                       [(20, 100), (1, 65)]),
    "combo-all-bf16-d128": VARIANTS["combo-all-bf16-d128"],
}


def compile_lse(c: Case, chip: str, stop_after="gpu", **opts):
    """compile_gpu of test_gpu_variants, in attn-tile's lse form."""
    o = dict(block_m=64, block_n=64, num_stages=2, **opts)
    return compiler.compile_graph(graph(c), CompileOptions(**o), chip, stop_after=stop_after,
                                  lse=True)


def reference_lse(c: Case, q, k, slopes, sinks) -> torch.Tensor:
    s = masked_scores(c, q, k, slopes)
    if sinks is not None:
        col = sinks.double()[None, :, None, None].expand(*s.shape[:3], 1)
        s = torch.cat([s, col], -1)
    return torch.logsumexp(s, -1)


def run_lse(gpu_ir: str, c: Case, lq: int, lk: int, where: str):
    c = dataclasses.replace(c, lq=lq, lk=lk)
    q, k, v, slopes, sinks = inputs(c, lq, lk)
    extra = [t for t in (slopes, sinks) if t is not None]
    hq = q.shape[1]
    out, (lse,), _ = emulate_with_outputs(
        gpu_ir, [q, k, v] + extra, [c.dtype] * 3 + ["f32"] * len(extra),
        (c.batch, hq, lq, c.head_dim), c.dtype, after_out=((c.batch, hq, lq),))
    check_output(out, c, q, k, v, slopes, sinks, where)
    ref = reference_lse(c, q, k, slopes, sinks)
    assert not lse.isnan().any(), f"{where}: LSE rows left unwritten at Lq={lq}, Lk={lk}"
    masked = torch.isneginf(ref)
    assert torch.equal(torch.isneginf(lse), masked), \
        f"{where}: -inf rows differ from the reference's at Lq={lq}, Lk={lk}: {c.describe()}"
    err = ((lse.double() - ref).abs() / ref.abs().clamp(min=1.0))[~masked]
    assert err.numel() == 0 or err.max().item() <= LSE_TOL, \
        f"{where}: LSE error {err.max().item():.3g} > {LSE_TOL} at Lq={lq}, Lk={lk}: " \
        f"{c.describe()}"
    return masked


@pytest.mark.parametrize("name", list(CASES))
def test_lse_sm80(name):
    c, lengths = CASES[name]
    gpu_ir = compile_lse(c, "sm_80").ir("gpu")
    assert "llvm.nvvm.lg2.approx.ftz.f" in gpu_ir
    for lq, lk in lengths:
        run_lse(gpu_ir, c, lq, lk, f"sm_80 {name}")


def test_lse_fully_masked_rows_are_neg_inf():
    # Bottom-right causal with Lq > Lk: the first Lq - Lk query rows see no key.
    c, _ = CASES["causal-bottom-right"]
    masked = run_lse(compile_lse(c, "sm_80").ir("gpu"), c, 90, 40, "sm_80")
    assert masked.sum().item() == 50 * c.batch * c.kv_heads * c.group


@pytest.mark.parametrize("name,tma", [("causal-bottom-right", True),
                                      ("combo-window-softcap-sinks-gqa", True),
                                      ("combo-window-softcap-sinks-gqa", False)])
def test_lse_sm90a(name, tma):
    c, lengths = CASES[name]
    gpu_ir = compile_lse(c, "sm_90a", tma=tma).ir("gpu")
    assert "nvvm.wgmma.mma_async" in gpu_ir
    for lq, lk in lengths:
        run_lse(gpu_ir, c, lq, lk, f"sm_90a {name}")


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", ["causal-bottom-right", "combo-all-bf16-d128"])
def test_lse_kernels_assemble_without_spills(chip, name):
    c, _ = CASES[name]
    compiled = compile_lse(c, chip, stop_after=None)
    md = compiled.metadata
    assert compiled.cubin and compiled.cubin[:4] == b"\x7fELF"
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, compiled.ir("cubin")
    assert md["stack_frame_bytes"] == 0, compiled.ir("cubin")
    assert "lg2.approx.ftz.f32" in compiled.ptx
    assert md["roles"]["lse"] == md["roles"]["out"] + 1


# --------------------------------------------------------------------------- on a GPU

_CUDA, _WHY = cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _CUDA, reason=f"needs an NVIDIA GPU: {_WHY}")
@pytest.mark.parametrize("name", ["causal-bottom-right", "combo-window-softcap-sinks-gqa"])
def test_return_lse_on_device(name):
    # attncc.attention(..., return_lse=True) on CUDA tensors (target "cuda":
    # the current device's chip), against the float64 references.
    c, lengths = CASES[name]
    for lq, lk in lengths + [(333, 1000)]:
        cl = dataclasses.replace(c, lq=lq, lk=lk)
        q, k, v, slopes, sinks = inputs(cl, lq, lk)
        kw = dict(alibi_slopes=None if slopes is None else slopes.cuda(),
                  sinks=None if sinks is None else sinks.cuda(), softcap=cl.softcap)
        if cl.window is not None:
            kw["window"] = cl.window
        mask = causal_lower_right(lq, lk) if cl.causal else None
        out, lse = attncc.attention(q.cuda(), k.cuda(), v.cuda(), attn_mask=mask,
                                    return_lse=True, target="cuda", **kw)
        torch.cuda.synchronize()
        check_output(out.float().cpu(), cl, q, k, v, slopes, sinks, f"cuda {name}")
        ref = reference_lse(cl, q, k, slopes, sinks)
        got = lse.cpu().double()
        masked = torch.isneginf(ref)
        assert torch.equal(torch.isneginf(got), masked)
        # Hardware ex2 / lg2 approximations: ~2^-22 more than the emulator's.
        err = ((got - ref).abs() / ref.abs().clamp(min=1.0))[~masked]
        assert err.numel() == 0 or err.max().item() <= LSE_TOL, (name, lq, lk, err.max().item())
