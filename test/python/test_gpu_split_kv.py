"""Split-KV (flash decoding: num_splits > 1, attn-tile's split-kv form) on
the GPU without a GPU: the split kernel (the attention kernel over one
split's KV range, grid z = split * B + batch) and the combine kernel, both in
one gpu.module, compiled for sm_80 (mma.sync) and sm_90a (wgmma, TMA) and run
in the SIMT emulator (attncc.gpu_emulator) at dynamic lengths and split
counts (the split count is the workspaces' leading size / B, a run-time
value). Output and LSE are checked against the float64 references of
test_gpu_variants / test_gpu_lse; splits that see no key (windows, causal
rows, more splits than KV blocks) and rows no key reaches included.
ptxas: both kernels assemble with 0 spill bytes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import attncc
from attncc import compiler
from attncc.options import CompileOptions
from attncc.runtime.cuda import cuda_available

from gpu_testing import emulate_with_outputs
from test_gpu_lse import LSE_TOL, reference_lse
from test_gpu_variants import check_output, graph, inputs, needs_ptxas
from test_variants import Case


def compile_split(c: Case, chip: str, stop_after="gpu", **opts):
    o = dict(block_m=64, block_n=64, num_stages=2, **opts)
    return compiler.compile_graph(graph(c), CompileOptions(**o), chip, stop_after=stop_after,
                                  split_kv=True, lse=True)


# (case, [(Lq, Lk, splits)]): 64-key blocks; Lk 300 is 5 blocks, so 3 splits
# take 2 + 2 + 1 and 8 splits leave 3 empty.
CASES = {
    "decode-b2": (Case(batch=2, head_dim=64, dtype="f16"), [(1, 300, 3), (1, 300, 8), (1, 40, 1)]),
    "causal-bottom-right": (Case(causal=True, align="bottom_right", head_dim=64, dtype="f16"),
                            [(5, 200, 4), (90, 40, 2)]),
    "combo-window-softcap-sinks-gqa": (
        Case(window=(70, 0), align="bottom_right", softcap=20.0, sinks=True, group=2,
             kv_heads=1, head_dim=64, dtype="f16"), [(1, 400, 4), (3, 150, 3)]),
    "alibi-bf16-d128": (Case(alibi=True, head_dim=128, dtype="bf16"), [(1, 260, 2)]),
}


def run_split(gpu_ir: str, c: Case, lq: int, lk: int, splits: int, where: str):
    c = dataclasses.replace(c, lq=lq, lk=lk)
    q, k, v, slopes, sinks = inputs(c, lq, lk)
    extra = [t for t in (slopes, sinks) if t is not None]
    B, hq = c.batch, q.shape[1]
    out, (lse, _, _), stats = emulate_with_outputs(
        gpu_ir, [q, k, v] + extra, [c.dtype] * 3 + ["f32"] * len(extra),
        (B, hq, lq, c.head_dim), c.dtype,
        after_out=((B, hq, lq), (splits * B, hq, lq, c.head_dim), (splits * B, hq, lq)))
    what = f"{where}: Lq={lq}, Lk={lk}, splits={splits}, {c.describe()}"
    check_output(out, c, q, k, v, slopes, sinks, what)
    ref = reference_lse(c, q, k, slopes, sinks)
    masked = torch.isneginf(ref)
    assert not lse.isnan().any(), f"{what}: LSE rows left unwritten"
    assert torch.equal(torch.isneginf(lse), masked), f"{what}: -inf rows differ"
    err = ((lse.double() - ref).abs() / ref.abs().clamp(min=1.0))[~masked]
    assert err.numel() == 0 or err.max().item() <= LSE_TOL, f"{what}: LSE error {err.max():.3g}"
    return stats


@pytest.mark.parametrize("name", list(CASES))
def test_split_kv_sm80(name):
    c, runs = CASES[name]
    gpu_ir = compile_split(c, "sm_80").ir("gpu")
    assert gpu_ir.count("gpu.launch_func") == 2
    for lq, lk, splits in runs:
        stats = run_split(gpu_ir, c, lq, lk, splits, f"sm_80 {name}")
        # The last launch is the combine: one block per output row.
        assert stats["launch"]["grid"] == [lq, c.kv_heads * c.group, c.batch]


@pytest.mark.parametrize("name,tma", [("decode-b2", True), ("combo-window-softcap-sinks-gqa", True),
                                      ("causal-bottom-right", False)])
def test_split_kv_sm90a(name, tma):
    c, runs = CASES[name]
    gpu_ir = compile_split(c, "sm_90a", tma=tma).ir("gpu")
    assert "nvvm.wgmma.mma_async" in gpu_ir
    for lq, lk, splits in runs:
        run_split(gpu_ir, c, lq, lk, splits, f"sm_90a {name}")


def test_split_grid_folds_splits_into_z():
    # The split kernel's grid is (query blocks, heads, splits * B): B = 2,
    # 3 splits -> z = 6; its KV loop covers one split's blocks.
    c, _ = CASES["decode-b2"]
    gpu_ir = compile_split(c, "sm_80").ir("gpu")
    host = gpu_ir[:gpu_ir.index("gpu.module")]
    first = host[host.index("gpu.launch_func"):].splitlines()[0]
    assert "@attention_kernel::@attention_kernel" in first
    assert "@attention_kernel::@attention_combine" in host
    kernel = gpu_ir[gpu_ir.index("gpu.func @attention_kernel"):gpu_ir.index("gpu.func @attention_combine")]
    assert "arith.remui %block_id_z" in kernel and "arith.divui %block_id_z" in kernel


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
def test_split_kernels_assemble_without_spills(chip):
    c = dataclasses.replace(CASES["combo-window-softcap-sinks-gqa"][0], head_dim=128)
    compiled = compile_split(c, chip, stop_after=None)
    md = compiled.metadata
    assert compiled.cubin and compiled.cubin[:4] == b"\x7fELF"
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, compiled.ir("cubin")
    assert [launch["kernel"] for launch in md["launches"]] == ["attention_kernel",
                                                                "attention_combine"]


def test_runtime_launches_both_kernels_with_their_own_grids():
    # What the CUDA runtime would launch (no device needed): the split
    # kernel over (query blocks, heads, splits * B), then the combine over
    # (rows, heads, B), each with its own kernel arguments.
    c = dataclasses.replace(CASES["decode-b2"][0], lq=1, lk=300)
    kernel = compile_split(c, "sm_80", stop_after=None)._kernel
    B, H, L, D, P = 2, 2, 1, 64, 3
    shapes = [(B, H, L, D), (B, H, 300, D), (B, H, 300, D), (B, H, L, D), (B, H, L),
              (P * B, H, L, D), (P * B, H, L)]
    launches = kernel.launches()
    assert [x["kernel"] for x in launches] == ["attention_kernel", "attention_combine"]
    grid, block, smem = kernel.launch_config(shapes, launches[0])
    assert grid == [1, H, P * B] and block == [128, 1, 1] and smem > 0
    grid, block, smem = kernel.launch_config(shapes, launches[1])
    assert grid == [L, H, B] and block == [64, 1, 1] and smem == 0
    ts = [torch.zeros(s) for s in shapes]
    _, keep = kernel.pack_params(ts, launch=launches[1])
    assert len(keep) == 2 * 11 + 2 * 9   # out, part (rank 4), part_lse, lse (rank 3) descriptors


# --------------------------------------------------------------------------- on a GPU

_CUDA, _WHY = cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _CUDA, reason=f"needs an NVIDIA GPU: {_WHY}")
@pytest.mark.parametrize("num_splits", [None, 1, 3, 16])
def test_split_decode_on_device(num_splits):
    # attncc.attention on CUDA tensors, decode (Lq = 1) with GQA and sinks:
    # the split count chosen from the SMs (None) or forced, output and LSE
    # against the float64 references.
    c = Case(batch=2, kv_heads=2, group=4, sinks=True, head_dim=128, dtype="bf16", lq=1, lk=5000)
    q, k, v, _, sinks = inputs(c, 1, 5000)
    out, lse = attncc.attention(q.cuda(), k.cuda(), v.cuda(), sinks=sinks.cuda(),
                                return_lse=True, num_splits=num_splits, target="cuda")
    torch.cuda.synchronize()
    check_output(out.float().cpu(), c, q, k, v, None, sinks, f"cuda num_splits={num_splits}")
    ref = reference_lse(c, q, k, None, sinks)
    err = ((lse.cpu().double() - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert err <= LSE_TOL, (num_splits, err)


def test_split_plan_sees_the_kernels_block_n():
    # The split plan of attncc.attention uses the block size the kernel is
    # compiled with: f32 at head dim 128 gets 32-key blocks on the GPU
    # (options.GPU_F32_WIDE_HEAD_BLOCK_N), 16-bit inputs 64.
    from attncc import api
    from attncc.options import GPU_F32_WIDE_HEAD_BLOCK_N
    opts = CompileOptions()
    assert api._resolved(opts, "sm_80", 1, "f32", 128).block_n == GPU_F32_WIDE_HEAD_BLOCK_N
    assert api._resolved(opts, "sm_80", 1, "f16", 128).block_n == 64
    assert api._resolved(opts, "sm_80", 1, "f32", 64).block_n == 64
    assert compiler.compile_graph(
        graph(Case(head_dim=128, dtype="f32")), opts, "sm_80",
        stop_after="tiled").options.block_n == GPU_F32_WIDE_HEAD_BLOCK_N
