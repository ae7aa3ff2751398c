"""The CPU JIT's LLVM IR passes (CompileOptions.llvm_opt, runtime/KernelJit.cpp):
every choice compiles and computes the same attention (float64 reference), the
defaults follow the kernel form, the choice is part of the kernel cache key,
and bad pipelines or levels are errors, not aborts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attncc
from attncc import OptionError
from attncc._attncc import jit_engine
from attncc.compiler import compile_graph
from attncc.context import mlir_context
from attncc.graph import Graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from mlir import ir


def reference(q, k, v, causal):
    g = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    return F.scaled_dot_product_attention(q.double(), k, v, is_causal=causal)


@pytest.mark.parametrize("llvm_opt", cpu_target.LLVM_OPT)
@pytest.mark.parametrize("dtype, lq, causal", [(torch.float32, 70, True),
                                               (torch.bfloat16, 1, False),
                                               (torch.float32, 1, False)])
def test_every_pipeline_computes_attention(llvm_opt, dtype, lq, causal, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE", "0")
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, lq, 64, generator=gen).to(dtype)
    k = torch.randn(2, 2, 133, 64, generator=gen).to(dtype)
    v = torch.randn(2, 2, 133, 64, generator=gen).to(dtype)
    out = attncc.attention(q, k, v, causal=causal, llvm_opt=llvm_opt)
    ref = reference(q, k, v, causal)
    # FlashAttention's criterion: at most 2x torch's own error in the dtype + a floor.
    same = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    bound = 2 * (same.double() - ref).abs().max().item() + \
        (1e-5 if dtype == torch.float32 else 1e-3)
    err = (out.double() - ref).abs().max().item()
    assert out.dtype == dtype and err <= bound, (llvm_opt, err, bound)


def test_defaults_follow_the_kernel_form():
    decode = CompileOptions().resolved("cpu", 1)
    prefill = CompileOptions().resolved("cpu", 512)
    assert (decode.kv_in_place, decode.llvm_opt) == (True, "light")
    assert (prefill.kv_in_place, prefill.llvm_opt) == (False, "O3")
    assert CompileOptions(llvm_opt="O1").resolved("cpu", 1).llvm_opt == "O1"
    assert CompileOptions().resolved("gpu", 512).llvm_opt is None   # not a GPU option
    assert cpu_target.jit_pipeline("light") == cpu_target.LLVM_OPT_PIPELINES["light"]
    assert cpu_target.jit_pipeline(None) == "default<O3>"


def test_the_choice_is_in_the_cache_key(monkeypatch, tmp_path):
    """The kernel cache is keyed by the passes: another choice compiles (and
    is kept on disk beside the first), the same choice again is a hit."""
    monkeypatch.setenv("ATTNCC_CACHE", "1")
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path))
    attncc.clear_caches()
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 1, 32, generator=gen)
    k, v = torch.randn(1, 2, 40, 32, generator=gen), torch.randn(1, 2, 40, 32, generator=gen)
    ref = reference(q, k, v, False)
    counts = []
    for llvm_opt in ("light", "O3", "light"):
        attncc.clear_caches()            # memory only: the disk entries stay
        before = attncc.cache_info()
        out = attncc.attention(q, k, v, llvm_opt=llvm_opt)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        after = attncc.cache_info()
        counts.append((after["compiled"] - before["compiled"],
                       after["memory_hits"] + after["disk_hits"]
                       - before["memory_hits"] - before["disk_hits"]))
    assert counts == [(1, 0), (1, 0), (0, 1)], counts
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2   # one entry per choice


def test_stage_seconds_name_the_jit(monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE", "0")
    g = Graph("attention")
    q = g.input("q", (1, 2, 1, 32), "f32")
    k = g.input("k", (1, 2, None, 32), "f32")
    v = g.input("v", (1, 2, None, 32), "f32")
    g.output(g.attention(q, k, v, scale=32 ** -0.5))
    c = compile_graph(g, CompileOptions(num_threads=1), "cpu")
    assert c.options.llvm_opt == "light" and c.stage_seconds["jit"] > 0
    gen = torch.Generator().manual_seed(1)
    qt, kt, vt = (torch.randn(1, 2, n, 32, generator=gen) for n in (1, 50, 50))
    torch.testing.assert_close(c(qt, kt, vt).double(), reference(qt, kt, vt, False),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", ["fast", "-O3", 3, ""])
def test_unknown_choice_is_an_option_error(bad):
    with pytest.raises(OptionError, match="llvm_opt must be one of"):
        CompileOptions(llvm_opt=bad)
    with pytest.raises(OptionError, match="llvm_opt must be one of"):
        attncc.attention(torch.randn(1, 1, 4, 16), torch.randn(1, 1, 4, 16),
                         torch.randn(1, 1, 4, 16), llvm_opt=bad)


EMPTY = """
llvm.func @kernel() attributes {llvm.emit_c_interface} {
  llvm.return
}
"""


def test_native_errors_are_exceptions():
    """An unparsable pipeline or a code generation level out of range comes
    back as LLVM's message in a RuntimeError (the C API's engine would be a
    bare null)."""
    with mlir_context():
        module = ir.Module.parse(EMPTY)
        with pytest.raises(RuntimeError, match="no-such-pass"):
            jit_engine(module, "function(no-such-pass)", 3, False)
        with pytest.raises(RuntimeError, match="code generation level must be 0..3"):
            jit_engine(module, "default<O0>", 7, False)
        with pytest.raises(TypeError, match="expected an mlir.ir.Module"):
            jit_engine(object(), "default<O0>", 3, False)


def test_command_line_takes_the_choice():
    from attncc.cli.errors import CliError
    from attncc.cli.inputs import parse_option_spec
    from attncc.cli.main import build_parser

    assert parse_option_spec("llvm_opt=o3, llvm-opt=light") == {"llvm_opt": "light"}
    assert parse_option_spec("llvm_opt=O1") == {"llvm_opt": "O1"}
    with pytest.raises(CliError, match="expected one of light, O1, O2, O3"):
        parse_option_spec("llvm_opt=fast")
    args = build_parser().parse_args(["compile", "f.py", "--llvm-opt", "O2"])
    assert args.llvm_opt == "O2"


@pytest.mark.parametrize("cpu", ["x86-64-v3", "x86-64-v4", "x86-64-v4-bf16", "x86-64-v4-amx"])
def test_light_pipeline_compiles_a_paged_decode_instcombine_does_not_settle(cpu, monkeypatch):
    """A paged decode batch (MHA, bf16, sinks, LSE, page 16; found by
    test_heads_inner's property on the AVX-512 + AMX host) whose kernel takes
    instcombine more than one iteration for the AVX-512 classes: the textual
    `instcombine` verified a fixpoint and stopped the process with an LLVM
    fatal error; the "light" pipeline runs it as the default pipelines do."""
    isa = cpu_target.resolve(cpu)
    missing = cpu_target.missing_features(isa)
    if missing:
        pytest.skip(f"this host cannot run {cpu} (lacks {', '.join(missing)})")
    monkeypatch.setenv("ATTNCC_CACHE", "0")
    from ragged_testing import Batch
    from test_paged import run as run_paged
    lengths = ((0, 311), (0, 173), (1, 599), (1, 158), (1, 308))
    b = Batch(lengths, kv_heads=3, group=1, head_dim=32, dtype="bf16", causal=True,
              sinks=True, page_size=16, return_lse=True, seed=1316,
              options={"cpu": cpu, "llvm_opt": "light"})
    assert "no-verify-fixpoint" in cpu_target.jit_pipeline("light")
    run_paged(b)     # checks the output and LSE against the float64 reference
