"""bf16 prefill on AVX-512-BF16 (ISA class x86-64-v4-bf16, issue 9): the same
bf16-pairs tile program as the AMX class, its matmuls lowered to vdpbf16ps
register blocks (attn-lower-to-cpu `bf16-dot`, x86vector.avx512.dot). The
class is only used when forced (host_isa does not pick it: slower than f32
FMAs on the host it was measured on, docs/cpu-backend.md). IR and assembly
are checked on any host; the numerics run where the host has AVX-512-BF16."""
from __future__ import annotations

import re
from dataclasses import asdict

import pytest
from hypothesis import strategies as st

from attncc.compiler import compile_graph
from attncc.graph import Graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from test_variants import Case, check, run_property

BF16 = cpu_target.ISAS["x86-64-v4-bf16"]
MISSING = cpu_target.missing_features(BF16)
needs_bf16 = pytest.mark.skipif(bool(MISSING), reason="this host cannot run x86-64-v4-bf16 "
                                f"code: it lacks {', '.join(MISSING)} (IR and assembly "
                                "checked above)")


def _compile(dtype: str, D: int = 64):
    g = Graph("attention")
    q, k, v = (g.input(n, (1, 2, None, D), dtype) for n in "qkv")
    g.output(g.attention(q, k, v, mask="causal"))
    return compile_graph(g, CompileOptions(cpu="x86-64-v4-bf16"), "cpu", stop_after="llvm",
                         query_len=256)


def test_bf16_prefill_is_vdpbf16ps_on_any_host():
    c = _compile("bf16")
    tiled = c.ir("tiled")
    assert "transposed pairs" in tiled and "attn.tile_convert" in tiled
    assert len(re.findall(r"attn\.tile_matmul .* pairs (scale \S+ )?into", tiled)) == 2
    llvm = c.ir("llvm")
    assert "llvm.x86.avx512bf16.dpbf16ps.512" in llvm and "tdpbf16ps" not in llvm
    assert re.search(r'attn\.cpu = \{bf16_dot, isa = "x86-64-v4-bf16"', llvm)
    asm = cpu_target.assembly(llvm, BF16)
    assert re.search(r"\bvdpbf16ps\s+%zmm", asm)
    assert re.search(r"\bvcvtneps2bf16\b", asm)       # P rounded natively
    assert "__truncsfbf2" not in asm and "tileloadd" not in asm


@pytest.mark.parametrize("dtype, D", [("f32", 64), ("f16", 64), ("bf16", 40)])
def test_other_inputs_keep_f32_fmas(dtype, D):
    c = _compile(dtype, D)
    assert "pairs" not in c.ir("tiled") and "dpbf16ps" not in c.ir("llvm")


def test_the_host_is_never_given_the_class():
    """A host with AVX-512-BF16 and no AMX gets x86-64-v4 (f32 FMAs)."""
    host = cpu_target.HostCpu("x86_64-unknown-linux-gnu", "znver4",
                              frozenset(BF16.requires + ("avx2", "fma", "f16c")))
    assert cpu_target.host_isa(host).name == "x86-64-v4"
    assert BF16.as_dict()["bf16_matmul"] == "vdpbf16ps"


EXAMPLES = {
    "causal_d64": Case(lq=77, lk=77, head_dim=64, dtype="bf16", causal=True, block_m=32,
                       block_n=64),
    "gqa_window_softcap_d128": Case(kv_heads=2, group=4, lq=40, lk=150, head_dim=128,
                                    dtype="bf16", causal=True, align="bottom_right",
                                    window=(50, 0), softcap=30.0, block_m=16, block_n=32),
    "alibi_sinks_d32": Case(lq=65, lk=130, head_dim=32, dtype="bf16", alibi=True, sinks=True,
                            block_m=64, block_n=64, dynamic=True),
}


@needs_bf16
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bf16_dot_examples(name):
    check(Case(**{**asdict(EXAMPLES[name]), "cpu": "x86-64-v4-bf16"}))


PROPERTY_SEED = 20261201

cases = st.builds(
    Case,
    batch=st.sampled_from([1, 2]),
    kv_heads=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2, 4]),
    lq=st.sampled_from([1, 16, 31, 70]),
    lk=st.sampled_from([1, 33, 64, 100, 160]),
    head_dim=st.sampled_from([32, 64, 128]),
    dtype=st.just("bf16"),
    causal=st.booleans(),
    align=st.sampled_from(["top_left", "bottom_right"]),
    window=st.one_of(st.none(), st.tuples(st.sampled_from([-1, 0, 10, 40]),
                                          st.sampled_from([-1, 0, 5]))),
    softcap=st.one_of(st.none(), st.just(20.0)),
    alibi=st.booleans(),
    sinks=st.booleans(),
    dynamic=st.sampled_from([False, True]),
    block_m=st.sampled_from([16, 32, 64]),
    block_n=st.sampled_from([32, 64]),
    seed=st.integers(0, 2 ** 16),
    cpu=st.just("x86-64-v4-bf16"),
)


@needs_bf16
def test_property_bf16_dot(capsys):
    run_property(cases, PROPERTY_SEED, "test_cpu_bf16_dot", capsys)
