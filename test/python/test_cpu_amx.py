"""bf16 prefill on AMX tiles (ISA class x86-64-v4-amx, issue 9): attn-tile's
bf16-pairs form (bf16 tiles, K/V pair-packed, P rounded to bf16) lowered to
upstream's `amx` dialect. Its IR and assembly are checked on any host; the
numerics (every score variant, GQA, lengths off the block sizes, against a
float64 reference with flash-attn's criterion) run where the host has AMX and
the OS grants it (runtime/amx.py)."""
from __future__ import annotations

import re

import pytest
import torch

from attncc.compiler import compile_graph
from attncc.errors import CompileError
from attncc.graph import Graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
import pairs_testing
from test_cpu_isa import _graph as isa_graph
from test_variants import check, run_property
from property_budget import property_seed

AMX = cpu_target.ISAS["x86-64-v4-amx"]
MISSING = cpu_target.missing_features(AMX)
needs_amx = pytest.mark.skipif(bool(MISSING), reason="this host cannot run x86-64-v4-amx code: "
                               f"it lacks {', '.join(MISSING)} (IR and assembly checked above)")


def _graph(dtype: str, D: int = 64, mask: str = "causal") -> Graph:
    return isa_graph(dtype, L=None, S=None, D=D, mask=mask)     # dynamic lengths


def _compile(dtype: str, D: int = 64, cpu: str = "x86-64-v4-amx", **opts):
    return compile_graph(_graph(dtype, D), CompileOptions(cpu=cpu, **opts), "cpu",
                         stop_after="llvm", query_len=256)


def test_bf16_prefill_is_pairs_on_amx_on_any_host():
    c = _compile("bf16")
    tiled = c.ir("tiled")
    assert "transposed pairs" in tiled and "attn.tile_convert" in tiled
    assert len(re.findall(r"attn\.tile_matmul .* pairs (scale \S+ )?into", tiled)) == 2
    assert "pairs scale 1.250000e-01 into" in tiled     # the scale on the f32 scores
    llvm = c.ir("llvm")
    assert "llvm.x86.tdpbf16ps.internal" in llvm and "llvm.x86.tileloadd64.internal" in llvm
    assert re.search(r'attn\.cpu = \{amx, isa = "x86-64-v4-amx"', llvm)
    asm = cpu_target.assembly(llvm, AMX)
    assert re.search(r"\btdpbf16ps\b", asm) and re.search(r"\bldtilecfg\b", asm)
    assert "__truncsfbf2" not in asm


@pytest.mark.parametrize("dtype, D, cpu", [
    ("f32", 64, "x86-64-v4-amx"),     # f32 stays on FMAs
    ("f16", 64, "x86-64-v4-amx"),     # AMX-FP16 is not in the class
    ("bf16", 40, "x86-64-v4-amx"),    # a head dim off the 32-wide tiles
    ("bf16", 64, "x86-64-v4"),        # the class without AMX
])
def test_other_inputs_and_classes_keep_f32_tiles(dtype, D, cpu):
    c = _compile(dtype, D, cpu)
    assert "pairs" not in c.ir("tiled") and "tdpbf16ps" not in c.ir("llvm")


def test_refused_permission_drops_the_class(monkeypatch):
    """Where the OS refuses AMX tile data (arch_prctl), the host is not given
    the AMX class, and forcing it is a clear error before any JIT."""
    if AMX.arch != cpu_target.host_cpu().arch or \
            any(f not in cpu_target.host_cpu().features for f in AMX.requires):
        pytest.skip("the host has no AMX features: nothing to refuse")
    monkeypatch.setattr(cpu_target.amx, "tile_permission", lambda: "refused for the test")
    assert cpu_target.host_isa().name == "x86-64-v4"
    with pytest.raises(CompileError, match="AMX tile data \\(refused for the test\\)"):
        compile_graph(_graph("bf16"), CompileOptions(cpu="x86-64-v4-amx"), "cpu",
                      query_len=256)


@needs_amx
@pytest.mark.parametrize("name", sorted(pairs_testing.EXAMPLES))
def test_amx_examples(name):
    check(pairs_testing.example(name, "x86-64-v4-amx"))


PROPERTY_SEED = property_seed(20261201)


@needs_amx
def test_property_amx(capsys):
    run_property(pairs_testing.cases("x86-64-v4-amx"), PROPERTY_SEED, "test_cpu_amx", capsys)
