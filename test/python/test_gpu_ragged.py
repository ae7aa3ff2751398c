"""Ragged batches and paged KV caches on the GPU targets without a GPU
(issue 12, item 4): attncc.varlen_attention / paged_attention with
target="sm_80" / "sm_90a" compile attn.ragged_attention through
attn-lower-to-gpu (K/V rows gathered by cp.async through the block table)
and the API's launch (work table, strided views of the packed tensors and
caches) runs in the SIMT emulator (attncc.gpu_emulator), checked against
ragged_testing's float64 reference per sequence (flash-attn's criterion):
page sizes 1, 3, 16 and 128, NHD and HND, batches mixing prefill chunks,
decode tokens, sequences without queries and empty sequences. ptxas: the
kernels assemble with 0 spill bytes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import attncc
from attncc import context, ragged
from attncc import gpu_emulator as emu
from attncc.errors import InputError
from attncc.runtime.cuda import cuda_available
from attncc.targets import gpu as agpu
from mlir import ir

from ragged_testing import Batch, check, make, paged_cache

needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None,
                                 reason="ptxas (CUDA toolkit) not installed")
_ELT = {torch.float16: "f16", torch.float32: "f32", torch.bfloat16: "bf16",
        torch.int32: "i32"}


class Emulated:
    """A runner for the API: runs the compiled kernel's 'gpu' stage on the
    launch's (host) tensors in the emulator, in place; keeps the launches'
    stats (grid) and the kernel names, so a test sees that attncc's kernel
    ran and on which grid."""

    def __init__(self):
        self.launches: list[dict] = []
        self.kernels: list[str] = []

    def __call__(self, compiled, args):
        arrays, back = [], []
        for t in args:
            if t.dtype == torch.bfloat16:     # the emulator keeps bf16 as rounded f32
                a = t.float()
                back.append((t, a))
                arrays.append(a.numpy())
            else:
                arrays.append(t.numpy())
        with context.mlir_context():
            prog = emu.Program(ir.Module.parse(compiled.ir("gpu")))
            stats = prog.run(compiled.name, *arrays, elts=[_ELT[t.dtype] for t in args])
        for t, a in back:
            t.copy_(a)
        self.launches.append(stats["launch"])
        self.kernels.append(compiled.metadata.get("kernel") or compiled.name)


LENGTHS = ((5, 40), (1, 33), (0, 10), (70, 70), (0, 0), (1, 1))


def _paged(b: Batch, chip: str, options=None):
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    run = Emulated()
    got = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q,
                                 max_seqlen_q=max(lq for lq, _ in b.lengths),
                                 causal=b.causal, window=b.window, softcap=b.softcap,
                                 alibi_slopes=slopes, sinks=sinks, return_lse=b.return_lse,
                                 layout=b.layout, target=chip, runner=run,
                                 **(options or {}))
    out, lse = got if b.return_lse else (got, None)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks, lse)
    assert [ln["grid"][:2] for ln in run.launches] == expected_grids(b), run.launches
    return run


def expected_grids(b: Batch) -> list[list[int]]:
    """The launches ragged._run plans on a GPU target (no split): decode
    tokens (without ALiBi) in one launch, a block per (KV head, token) whose
    rows are the group's query heads; the other sequences with queries in
    one, a block per (head, 64-row query block)."""
    dec = [lq for lq, _ in b.lengths if lq == 1 and not b.alibi]
    rest = [lq for lq, _ in b.lengths if lq > 1 or (lq == 1 and b.alibi)]
    grids = [[b.kv_heads, len(dec)]] if dec else []
    if rest:
        grids.append([b.kv_heads * b.group, sum(-(-lq // 64) for lq in rest)])
    return grids


@pytest.mark.parametrize("page,layout", [(1, "NHD"), (3, "HND"), (16, "NHD"), (128, "HND")])
def test_paged_sm80(page, layout):
    b = Batch(LENGTHS, head_dim=64, dtype="f16", causal=True, page_size=page, layout=layout,
              seed=page)
    _paged(b, "sm_80")


@pytest.mark.parametrize("page,layout", [(3, "NHD"), (16, "HND")])
def test_paged_sm90a_wgmma_variants(page, layout):
    # wgmma with cp.async (no TMA for gathered rows); window, soft-cap,
    # sinks and GQA; bf16.
    b = Batch(LENGTHS, head_dim=64, dtype="bf16", window=(30, 0), softcap=20.0, sinks=True,
              page_size=page, layout=layout, seed=7)
    _paged(b, "sm_90a")


def test_paged_sm80_alibi_lse_d128():
    b = Batch(((3, 20), (1, 70), (0, 5)), head_dim=128, dtype="f16", causal=True, alibi=True,
              page_size=16, return_lse=True, seed=3)
    _paged(b, "sm_80")


def test_paged_f32_3xtf32():
    # f32 caches on tensor cores: 3xTF32 keeps fp32-level accuracy (the
    # reference's criterion); head dim 128 takes 32-key blocks.
    b = Batch(((3, 20), (1, 70), (0, 5)), head_dim=128, dtype="f32", causal=True,
              page_size=7, seed=5)
    _paged(b, "sm_80", {"input_precision": "tf32x3"})


def test_paged_one_stage():
    # num_stages=1: the gather loop unpipelined (one K/V slot).
    b = Batch(((4, 50), (1, 17)), head_dim=64, dtype="f16", causal=True, page_size=5)
    _paged(b, "sm_80", {"num_stages": 1})


@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
def test_varlen(chip):
    b = Batch(((5, 40), (1, 33), (0, 10), (70, 70)), head_dim=64, dtype="f16", causal=True,
              sinks=True, seed=11)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    run = Emulated()
    out = attncc.varlen_attention(q, k, v, cu_q, cu_k, 70, 70, causal=True, sinks=sinks,
                                  target=chip, runner=run)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks)
    assert [ln["grid"][:2] for ln in run.launches] == expected_grids(b)


@pytest.mark.parametrize("sinks", [False, True])
def test_paged_decode_split_kv(sinks):
    # Decode tokens over 600-900 keys in 256-key pieces (num_splits=4 forced:
    # the emulated launch has no SMs to fill), each a work item with its LSE,
    # merged on the host side as on the CPU; sinks join after the merge.
    b = Batch(((1, 900), (1, 600), (1, 3), (4, 300)), head_dim=64, dtype="f16", causal=True,
              sinks=sinks, page_size=16, layout="NHD", return_lse=True, seed=21)
    q, k, v, cu_q, cu_k, slopes, sk = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    run = Emulated()
    out, lse = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q, max_seqlen_q=4,
                                      causal=True, sinks=sk, return_lse=True, num_splits=4,
                                      target="sm_80", runner=run)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sk, lse)
    # Pieces: 900 keys -> 4 of 256 (last 132), 600 -> 3, 3 -> 1: 8 work items
    # per KV head; then the 4-token prefill chunk (one block per head).
    assert [ln["grid"][:2] for ln in run.launches] == [[2, 8], [4, 1]]


def test_gqa_group_beyond_the_block_takes_the_general_launch():
    # 128 query heads per KV head do not fit a 64-row block: decode tokens
    # then run in the general launch (a block per head).
    b = Batch(((1, 40), (1, 9)), kv_heads=1, group=128, head_dim=64, dtype="f16",
              page_size=16, seed=2)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    run = Emulated()
    out = attncc.paged_attention(q, kc, vc, table, lens, target="sm_80", runner=run)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks)
    assert [ln["grid"][:2] for ln in run.launches] == [[128, 2]]


def test_batch_without_queries_launches_nothing():
    b = Batch(((0, 10), (0, 0)), head_dim=64, dtype="f16", page_size=16)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    run = Emulated()
    out = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q, max_seqlen_q=0,
                                 target="sm_80", runner=run)
    assert out.shape == (0, 4, 64) and run.launches == []


# --------------------------------------------------------------------------- bad input

def test_gpu_target_takes_cuda_tensors():
    b = Batch(((2, 20),), head_dim=64, dtype="f16", page_size=16)
    q, k, v, cu_q, cu_k, _, _ = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    with pytest.raises(InputError, match="CUDA tensors"):
        attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q, max_seqlen_q=2,
                               target="sm_80")


def test_unknown_target():
    b = Batch(((1, 20),), head_dim=64, dtype="f16")
    q, k, v, cu_q, cu_k, _, _ = make(b)
    with pytest.raises(InputError, match="unknown target"):
        attncc.varlen_attention(q, k, v, cu_q, cu_k, 1, 20, target="tpu")


# --------------------------------------------------------------------------- ptxas

SPILL_CASES = [(dt, paged, "window-softcap-sinks") for dt in (torch.float16, torch.bfloat16,
                                                                torch.float32)
               for paged in (True, False)] + [(torch.float16, True, "causal-alibi")]


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype,paged,variant", SPILL_CASES,
                         ids=[f"{_ELT[d]}-{'paged' if p else 'varlen'}-{v}"
                              for d, p, v in SPILL_CASES])
def test_assembles_without_spills(dtype, paged, variant, head_dim, chip):
    # Hq32 / Hkv8 (GQA 4), the default blocks and stages of each chip.
    if variant == "causal-alibi":
        kw = dict(sides=(-1, 0), softcap=None, alibi=True, sinks=False)
    else:
        kw = dict(sides=(127, 0), softcap=30.0, alibi=False, sinks=True)
    compiled, _ = ragged._kernel(dtype, 32, 8, head_dim, head_dim, paged, head_dim ** -0.5,
                                 kw["sides"], kw["softcap"], kw["alibi"], kw["sinks"], None,
                                 attncc.CompileOptions(), None, False, chip)
    md = compiled.metadata
    assert compiled.cubin and compiled.cubin[:4] == b"\x7fELF"
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, compiled.ir("cubin")
    assert md["stack_frame_bytes"] == 0, compiled.ir("cubin")
    assert ".local" not in compiled.ptx
    assert "cp.async" in compiled.ptx
    if chip == "sm_90a" and dtype != torch.float32:
        assert "wgmma.mma_async" in compiled.ptx


# --------------------------------------------------------------------------- on a GPU

_CUDA, _WHY = cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _CUDA, reason=f"needs an NVIDIA GPU: {_WHY}")
@pytest.mark.parametrize("page", [1, 3, 16, 128])
def test_paged_on_device(page):
    b = Batch(LENGTHS + ((300, 1000),), head_dim=128, dtype="bf16", causal=True,
              page_size=page, seed=page)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    out = attncc.paged_attention(q.cuda(), kc.cuda(), vc.cuda(), table.cuda(), lens.cuda(),
                                 cu_seqlens_q=cu_q.cuda(), max_seqlen_q=300, causal=True,
                                 target="cuda")
    torch.cuda.synchronize()
    check(b, out.cpu(), q, k, v, cu_q, cu_k, slopes, sinks)


@needs_ptxas
def test_run_args_checks_before_any_launch():
    # CudaKernel.run_args: argument count, device and layout are checked
    # before CUDA is touched (here there is none).
    compiled, _ = ragged._kernel(torch.float16, 4, 2, 64, 64, True, 0.125, None, None, False,
                                 False, None, attncc.CompileOptions(), None, False, "sm_80")
    host = compiled.metadata["host_args"]
    assert [a.get("strided") for a in host] == ["rows", "rows", "rows", None, None, "rows"]
    with pytest.raises(InputError, match="takes 6 arguments"):
        compiled._kernel.run_args(torch.zeros(1))
    args = [torch.zeros(1, 4, 3, 64, dtype=torch.float16)] + [torch.zeros(1)] * 5
    with pytest.raises(InputError, match="GPU kernels take CUDA tensors"):
        compiled._kernel.run_args(*args)


def test_work_table_copied_once_per_device():
    """A schedule's work table goes to the kernel's device once (the layers of
    a step share the copy); the user's tensors are copied per call. `meta`
    stands for a device this CPU-only machine has not got."""
    from attncc import ragged_gpu
    work = torch.arange(14, dtype=torch.int32).view(2, 7)
    assert ragged_gpu.work_on(work, work.device) is work
    meta = torch.device("meta")
    first = ragged_gpu.work_on(work, meta)
    assert first.device == meta and first.shape == work.shape and first.dtype == work.dtype
    assert ragged_gpu.work_on(work, meta) is first
    seen = []

    def runner(compiled, args):
        seen.append(args)

    out = torch.empty(3, device=meta)
    table = torch.zeros(2, 4, dtype=torch.int32)
    for _ in range(2):
        ragged_gpu.launch(None, [work, work, work, work, table], out, (), runner)
    assert seen[0][3] is first and seen[1][3] is first
    assert seen[0][4] is not seen[1][4]                 # the block table: per call
