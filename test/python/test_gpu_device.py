"""Runs the GPU kernels on a real NVIDIA GPU against torch SDPA (`pytest -m gpu`).

Skipped, with the reason, where there is no CUDA device, no CUDA-enabled
torch, or no cuda-bindings package (pip install cuda-bindings)."""
import dataclasses
import itertools

import pytest
import torch

import attncc
import attncc.compiler
from attncc.runtime.cuda import cuda_available

from gpu_testing import Config

_OK, _WHY = cuda_available()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _OK, reason=f"needs an NVIDIA GPU: {_WHY}")]

CONFIGS = [Config(dtype=dt, D=d, mask=m, H=4, Hkv=hkv, Lq=333, B=2)
           for dt, d, m, hkv in itertools.product(("f16", "bf16"), (64, 128), ("causal", "none", "bias"),
                                                 (None, 2))]


def _on_cuda(ts):
    return [t.cuda() for t in ts]


def _check(cfg, out, ts):
    ref = cfg.reference([t.cpu() for t in ts])
    err = (out.double().cpu() - ref).abs().max().item()
    assert err < cfg.tolerance(), f"max abs error {err}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.dtype}-d{c.D}-{c.mask}-{'gqa' if c.Hkv else 'mha'}")
def test_kernel_matches_sdpa(cfg):
    compiled = cfg.compile("cuda")
    ts = _on_cuda(cfg.inputs())
    out = compiled(*ts)
    torch.cuda.synchronize()
    _check(cfg, out, ts)


@pytest.mark.parametrize("cfg", [
    Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=1024, H=8),   # 128 KiB shared memory
    Config(num_stages=4, block_n=32, Lq=500, mask="none"),
    Config(unroll=2, num_stages=3, block_n=32, Lq=500),
    Config(Lq=37, Lk=150),
    Config(Lq=3, H=1),
], ids=["128x64x3-d128", "4-stages", "unroll2", "lq-ne-lk", "tiny"])
def test_pipeline_variants(cfg):
    compiled = cfg.compile("cuda")
    ts = _on_cuda(cfg.inputs())
    out = compiled(*ts)
    torch.cuda.synchronize()
    _check(cfg, out, ts)


@pytest.mark.parametrize("mma,tma", [("wgmma", True), ("wgmma", False), ("mma_sync", True)],
                         ids=["wgmma-tma", "wgmma-cp.async", "mma.sync"])
@pytest.mark.parametrize("cfg", [
    Config(D=128, block_m=128, block_n=64, num_stages=3, Lq=1000, H=4, Hkv=2),
    Config(dtype="bf16", mask="none", Lq=333, B=2),
    Config(mask="sliding_window", window=100, block_n=32, num_stages=3, Lq=400),
], ids=["128x64x3-d128-gqa", "bf16-none", "window"])
def test_hopper_kernel_flavours(cfg, mma, tma):
    # Every sm_90a flavour of the kernel on a Hopper GPU (skipped elsewhere).
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("needs an sm_90 GPU (Hopper) for wgmma/TMA")
    compiled = attncc.compiler.compile_graph(
        cfg.graph(), dataclasses.replace(cfg.options(), mma=mma, tma=tma), "sm_90a")
    ts = _on_cuda(cfg.inputs())
    out = compiled(*ts)
    torch.cuda.synchronize()
    _check(cfg, out, ts)
    assert ("wgmma.mma_async" in compiled.ptx) == (mma == "wgmma")
    assert ("cp.async.bulk.tensor" in compiled.ptx) == (mma == "wgmma" and tma)


def test_runs_on_the_current_stream_without_host_sync():
    cfg = Config(Lq=512, H=4)
    compiled = cfg.compile("cuda")
    ts = _on_cuda(cfg.inputs())
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        outs = [compiled(*ts) for _ in range(3)]
    stream.synchronize()
    for out in outs:
        _check(cfg, out, ts)


def test_run_into_a_preallocated_output():
    cfg = Config(mask="none", Lq=200)
    compiled = cfg.compile("cuda")
    ts = _on_cuda(cfg.inputs())
    out = torch.empty(cfg.B, cfg.H, cfg.Lq, cfg.D, dtype=torch.float16, device="cuda")
    compiled._kernel.run(*ts, out)
    torch.cuda.synchronize()
    _check(cfg, out, ts)


def test_dynamic_sequence_length():
    g = attncc.Graph()
    q = g.input("q", (1, 2, None, 64), "f16")
    k = g.input("k", (1, 2, None, 64), "f16")
    g.output(g.attention(q, k, k, mask="causal"))
    from attncc.compiler import compile_graph
    from attncc.options import CompileOptions

    compiled = compile_graph(g, CompileOptions(), "cuda")
    for L in (1, 65, 300):
        cfg = Config(Lq=L, H=2)
        q_, k_, _ = _on_cuda(cfg.inputs())
        out = compiled(q_, k_)
        torch.cuda.synchronize()
        _check(cfg, out, [q_, k_, k_])


def test_compile_api_on_cuda_tensors():
    import torch.nn.functional as F

    def f(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    cfg = Config(Lq=256, H=4)
    ts = _on_cuda(cfg.inputs())
    out = attncc.compile(f, target="cuda")(*ts)
    torch.cuda.synchronize()
    _check(cfg, out, ts)
