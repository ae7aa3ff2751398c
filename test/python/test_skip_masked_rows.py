"""attn-tile's skip-masked-rows on the CPU (the default there): in KV blocks
that reach past the diagonal, the score, softmax and P.V ops run on the rows
(from a multiple of 16) that see a key of the block. Proves the form is in the
compiled kernels where it applies (and not where it does not), and checks the
results against the float64 reference of test_variants over block sizes, Lq
<= Lk with offsets that are not multiples of 16, window right sides and the
other variants (flash-attn's criterion, test_variants.check)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import strategies as st

from attncc.graph import Graph
from attncc.compiler import compile_graph
from attncc.options import CompileOptions
from ragged_testing import Batch
from test_variants import Case, check, kernel, run_property
from property_budget import property_seed
import test_paged
import test_ragged


def kv_loop(ir: str) -> str:
    """The text of the tiled program's KV loop body (up to its attribute)."""
    start = ir.index("scf.for")
    return ir[start:ir.index("attn.kv_loop", start)]


def score_view(bm: int, bn: int) -> str:
    """The type change of a view of the score tile from a dynamic row."""
    return f"memref<{bm}x{bn}xf32> to memref<?x{bn}xf32"


@pytest.mark.parametrize("case,skipped", [
    (Case(causal=True, lq=200, lk=200, block_m=64, block_n=32), True),
    (Case(window=(10, 3), lq=90, lk=90, block_m=32, block_n=16), True),
    (Case(causal=True, align="bottom_right", lq=70, lk=133, block_m=64, block_n=16,
          softcap=5.0, sinks=True, group=2), True),
    (Case(lq=200, lk=200, block_m=64, block_n=32), False),              # no right side
    (Case(window=(10, -1), lq=90, lk=90, block_m=32, block_n=16), False),  # left side only
    (Case(causal=True, alibi=True, lq=90, lk=90, block_m=32, block_n=16), False),
    (Case(causal=True, lq=90, lk=90, block_m=16, block_n=16), False),    # one row granule
])
def test_form_is_where_it_applies(case, skipped):
    compiled = kernel(case)
    body = kv_loop(compiled.ir("tiled"))
    assert (score_view(case.block_m, case.block_n) in body) == skipped, case.describe()
    check(case)


def test_gpu_pipeline_does_not_skip():
    """The option is the CPU's: the GPU tile program keeps whole tiles."""
    g = Graph("attention")
    q, k, v = (g.input(n, (1, 2, 256, 64), "f16") for n in "qkv")
    g.output(g.attention(q, k, v, mask="causal"))
    tiled = compile_graph(g, CompileOptions(), "sm_80", stop_after="tiled").ir("tiled")
    assert "memref.subview" not in kv_loop(tiled) and "attn.tile_softmax" in tiled


CASES = {
    # Offsets Lk - Lq that are not multiples of 16, query tails, several blocks.
    "top_left_tail": Case(causal=True, lq=201, lk=201, block_m=64, block_n=32),
    "top_left_lq_lt_lk": Case(causal=True, lq=77, lk=150, block_m=32, block_n=16),
    "bottom_right_offset_13": Case(causal=True, align="bottom_right", lq=150, lk=163,
                                   block_m=64, block_n=16),
    "bottom_right_block_256": Case(causal=True, align="bottom_right", lq=300, lk=333,
                                   block_m=256, block_n=64, head_dim=64),
    "window_right_2": Case(window=(20, 2), lq=120, lk=120, block_m=64, block_n=16),
    "window_right_bottom_right": Case(window=(40, 5), align="bottom_right", lq=100, lk=141,
                                      block_m=32, block_n=32),
    "causal_sinks_softcap_gqa": Case(causal=True, lq=130, lk=130, block_m=64, block_n=16,
                                     sinks=True, softcap=8.0, group=4, kv_heads=1),
    "dynamic": Case(causal=True, align="bottom_right", dynamic=True, lq=99, lk=170,
                    block_m=32, block_n=16),
    "bf16": Case(causal=True, lq=140, lk=140, block_m=64, block_n=32, dtype="bf16",
                 head_dim=64),
    "avx2": Case(causal=True, align="bottom_right", lq=90, lk=107, block_m=64, block_n=16,
                 cpu="x86-64-v3"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_skipped_rows_match_reference(name):
    c = CASES[name]
    if c.cpu != "host":
        from attncc.targets import cpu as cpu_target
        missing = cpu_target.missing_features(cpu_target.ISAS[c.cpu])
        if missing:
            pytest.skip(f"this host cannot run {c.cpu} code: lacks {', '.join(missing)}")
    check(c)


def test_dynamic_kernel_across_lengths():
    """One dynamic kernel: the first seen row moves with the run-time offset."""
    for lq, lk in [(1, 50), (16, 16), (17, 80), (64, 64), (65, 200), (130, 131)]:
        check(Case(causal=True, align="bottom_right", dynamic=True, lq=lq, lk=lk,
                   block_m=64, block_n=16))


cases = st.builds(
    Case,
    batch=st.integers(1, 2),
    kv_heads=st.integers(1, 2),
    group=st.sampled_from([1, 2]),
    lq=st.integers(1, 200),
    lk=st.integers(1, 200),
    head_dim=st.sampled_from([16, 32]),
    dtype=st.sampled_from(["f32", "bf16"]),
    causal=st.booleans(),
    align=st.sampled_from(["top_left", "bottom_right"]),
    window=st.one_of(st.none(), st.tuples(st.sampled_from([-1, 4, 30]),
                                          st.sampled_from([0, 1, 17]))),
    softcap=st.one_of(st.none(), st.just(10.0)),
    sinks=st.booleans(),
    block_m=st.sampled_from([32, 64, 128]),
    block_n=st.sampled_from([16, 32]),
    seed=st.integers(0, 2 ** 16),
)


def test_property_skipped_rows(capsys):
    run_property(cases, property_seed(20261202), "test_skip_masked_rows", capsys, examples=15)



# Ragged / paged prefill (attn.ragged_attention's tile program): sequences
# long enough for query blocks of 64-256 rows with several diagonal KV blocks,
# chunks whose bottom-right offset is not a multiple of 16, decode tokens and
# empty sequences beside them; default block sizes.
RAGGED_LENGTHS = ((300, 300), (0, 7), (1, 90), (150, 333), (77, 77), (40, 41))
RAGGED = {
    "causal_f32": Batch(RAGGED_LENGTHS, causal=True),
    "window_right_softcap_f16": Batch(RAGGED_LENGTHS, dtype="f16", window=(50, 3),
                                      softcap=20.0),
    "causal_sinks_gqa_bf16": Batch(RAGGED_LENGTHS, dtype="bf16", causal=True, sinks=True,
                                   group=4, kv_heads=1, head_dim=64),
}


@pytest.mark.parametrize("name", sorted(RAGGED))
def test_varlen_prefill(name):
    test_ragged.run(RAGGED[name])


@pytest.mark.parametrize("page_size", [3, 16])
def test_paged_chunked_prefill(page_size):
    test_paged.run(replace(RAGGED["causal_f32"], page_size=page_size, causal=True))


def test_ragged_tile_program_has_the_views():
    """The ragged program's KV loop works on views of the row tiles (the
    kernel varlen_attention compiles for a causal prefill group)."""
    g = Graph("ragged")
    q = g.input("q", (1, 4, None, 32), "f32")
    k = g.input("k", (1, 2, None, 32), "f32")
    v = g.input("v", (1, 2, None, 32), "f32")
    w = g.input("work", (None, 7), "i32")
    g.output(g.ragged_attention(q, k, v, w, scale=0.125, window_sides=(-1, 0)))
    tiled = compile_graph(g, CompileOptions(block_m=64, block_n=32), "cpu",
                          stop_after="tiled").ir("tiled")
    assert score_view(64, 32) in kv_loop(tiled)
