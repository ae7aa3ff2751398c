"""bf16 prefill on AVX-512-BF16 (ISA class x86-64-v4-bf16, issue 9): the same
bf16-pairs tile program as the AMX class, its matmuls lowered to vdpbf16ps
register blocks (attn-lower-to-cpu `bf16-dot`, x86vector.avx512.dot). The host
gets the class where vdpbf16ps issues at an FMA's rate (AMD Zen 4 and
later); elsewhere it is only used when forced (Intel without AMX: slower
than f32 FMAs, docs/cpu-backend.md). IR and assembly
are checked on any host; the numerics run where the host has AVX-512-BF16."""
from __future__ import annotations

import re

import pytest

from attncc.compiler import compile_graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
import pairs_testing
from test_cpu_isa import _graph as isa_graph
from test_variants import check, run_property
from property_budget import property_seed

BF16 = cpu_target.ISAS["x86-64-v4-bf16"]
MISSING = cpu_target.missing_features(BF16)
needs_bf16 = pytest.mark.skipif(bool(MISSING), reason="this host cannot run x86-64-v4-bf16 "
                                f"code: it lacks {', '.join(MISSING)} (IR and assembly "
                                "checked above)")


def _compile(dtype: str, D: int = 64):
    g = isa_graph(dtype, L=None, S=None, D=D)     # dynamic lengths
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


@pytest.mark.parametrize("name, expected", [
    ("znver4", "x86-64-v4-bf16"), ("znver5", "x86-64-v4-bf16"),
    ("znver3", "x86-64-v4"),
    ("cooperlake", "x86-64-v4"), ("emeraldrapids", "x86-64-v4"), ("generic", "x86-64-v4")])
def test_the_host_gets_the_class_where_vdpbf16ps_pays(name, expected):
    """AVX-512-BF16 without AMX: AMD Zen 4 and later get vdpbf16ps, Intel
    keeps f32 FMAs (slower there, one port for vdpbf16ps)."""
    host = cpu_target.HostCpu("x86_64-unknown-linux-gnu", name,
                              frozenset(BF16.requires + ("avx2", "fma", "f16c")))
    assert cpu_target.host_isa(host).name == expected
    no_bf16 = cpu_target.HostCpu(host.triple, name, host.features - {"avx512bf16"})
    assert cpu_target.host_isa(no_bf16).name == "x86-64-v4"
    assert BF16.as_dict()["bf16_matmul"] == "vdpbf16ps"


@needs_bf16
@pytest.mark.parametrize("name", sorted(pairs_testing.EXAMPLES))
def test_bf16_dot_examples(name):
    check(pairs_testing.example(name, "x86-64-v4-bf16"))


PROPERTY_SEED = property_seed(20261201)


@needs_bf16
def test_property_bf16_dot(capsys):
    run_property(pairs_testing.cases("x86-64-v4-bf16"), PROPERTY_SEED, "test_cpu_bf16_dot", capsys)
