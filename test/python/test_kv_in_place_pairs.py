"""The bf16 decode form on AVX-512-BF16 (attn-tile `kv-in-place-pairs`, class
x86-64-v4-bf16, issue 11): Q.K^T as vdpbf16ps dot products on K's rows as
stored and P.V as vdpbf16ps on V's rows interleaved into pairs as they are
loaded, P rounded to bf16 (as the bf16 prefill of that class does). IR and
assembly on any host; the numerics (against float64, FlashAttention's
criterion) where the host has AVX-512-BF16, for contiguous and paged caches,
odd key counts (the last key pairs with zeros) and every variant."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import strategies as st

from attncc.compiler import compile_graph
from attncc.graph import Graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from ragged_testing import Batch
from test_kv_in_place import CASES, Call, check, run_property
from test_paged import run as run_paged
from property_budget import property_seed

BF16 = "x86-64-v4-bf16"
MISSING = cpu_target.missing_features(cpu_target.ISAS[BF16])
needs_bf16 = pytest.mark.skipif(bool(MISSING), reason="this host cannot run x86-64-v4-bf16 "
                                f"code: it lacks {', '.join(MISSING)} (IR and assembly "
                                "checked on any host)")

# Every kv-in-place structure in bf16 where the head dim allows the form
# (a multiple of 32: Q.K^T takes 32 bf16 per vdpbf16ps).
BF16_CASES = {f"{name}/bf16": replace(s, dtype="bf16") for name, s in CASES.items()
              if s.head_dim % 32 == 0}
QK = re.compile(r"transposed pairs scale \S+ into")
PV = re.compile(r"attn\.tile_matmul %\S+, %\S+ pairs into %\S+ accumulate")


def _decode(dtype: str = "bf16", D: int = 128, cpu: str = BF16, query_len: int = 1):
    g = Graph("attention")
    q = g.input("q", (None, 32, None, D), dtype)
    k = g.input("k", (None, 8, None, D), dtype)
    v = g.input("v", (None, 8, None, D), dtype)
    g.output(g.attention(q, k, v))
    return compile_graph(g, CompileOptions(cpu=cpu, num_threads=1), "cpu", stop_after="llvm",
                         query_len=query_len)


def test_bf16_decode_is_vdpbf16ps_on_any_host():
    c = _decode()
    tiled = c.ir("tiled")
    assert QK.search(tiled) and PV.search(tiled) and "attn.tile_convert" in tiled
    assert "attn.copy_tile %arg1" not in tiled            # K/V still read in place
    llvm = c.ir("llvm")
    assert "llvm.x86.avx512bf16.dpbf16ps.512" in llvm
    asm = cpu_target.assembly(llvm, cpu_target.ISAS[BF16])
    assert re.search(r"\bvdpbf16ps\s+", asm)
    assert re.search(r"\bvcvtneps2bf16\b", asm)            # P rounded natively
    assert "__truncsfbf2" not in asm


@pytest.mark.parametrize("dtype, D, cpu", [
    ("bf16", 128, "x86-64-v4"), ("bf16", 128, "x86-64-v4-amx"), ("bf16", 128, "x86-64-v3"),
    ("f16", 128, BF16), ("f32", 128, BF16), ("bf16", 48, BF16)])
def test_other_classes_and_inputs_keep_f32_dot_products(dtype, D, cpu):
    """Intel's AMX class (vdpbf16ps at half the FMA rate there), AVX-512 and
    AVX2 widen K/V to f32 FMAs; so do other input types and head dims that
    are not a multiple of 32 on the bf16 class."""
    tiled = _decode(dtype, D, cpu).ir("tiled")
    assert "transposed into" in tiled and "pairs" not in tiled


def test_prefill_keeps_its_own_form():
    # A 1024-row query block is not kv-in-place: the bf16-pairs copies.
    tiled = _decode(query_len=1024).ir("tiled")
    assert not QK.search(tiled) and "transposed pairs valid" in tiled


@needs_bf16
@pytest.mark.parametrize("name", sorted(BF16_CASES))
def test_decode_pairs_match_reference(name):
    # Decode, a short chunk, one key, 75 keys in 16-key blocks (the last
    # block's 11 keys: an odd last key paired with zeros).
    check(Call(name, batch=2, lq=1, lk=75, in_place=True, cpu=BF16), BF16_CASES)
    check(Call(name, batch=1, lq=4, lk=40, in_place=True, block_n=64, seed=1, cpu=BF16),
          BF16_CASES)
    check(Call(name, batch=1, lq=1, lk=1, in_place=True, seed=2, cpu=BF16), BF16_CASES)


@needs_bf16
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size", [1, 2, 3, 16, 100, 128])
def test_paged_decode_pairs_match_reference(layout, page_size):
    """The pairs form on pages: rows gathered into bf16 tiles (page sizes 1,
    2, 3, 100: one kernel for run-time page sizes) and page views (16, 128:
    static power-of-two pages, frontend.ragged_schedule.static_page); odd
    sequence lengths, a sequence of one key, sinks and a window, GQA 4, head
    dim 64."""
    b = Batch(((1, 1), (1, 33), (1, 301), (1, 17), (1, 128)), kv_heads=2, group=4,
              head_dim=64, dtype="bf16", causal=True, window=(100, 0), sinks=True,
              page_size=page_size, layout=layout, return_lse=True, seed=page_size,
              options={"cpu": BF16})
    run_paged(b, chunked=False)


calls = st.builds(
    Call,
    structure=st.sampled_from(sorted(BF16_CASES)),
    batch=st.integers(1, 3),
    lq=st.sampled_from([1, 2, 3, 4]),
    lk=st.integers(1, 150),
    in_place=st.just(True),
    block_n=st.sampled_from([16, 32, 64]),
    seed=st.integers(0, 2 ** 16),
    cpu=st.just(BF16),
)

PROPERTY_SEED = property_seed(20261203)


@needs_bf16
def test_property_kv_in_place_pairs(capsys):
    run_property(calls, PROPERTY_SEED, "test_kv_in_place_pairs", capsys, BF16_CASES)
