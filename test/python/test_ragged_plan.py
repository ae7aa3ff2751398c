"""attncc.plan_paged / paged_attention(plan=...) and attncc.plan_varlen /
varlen_attention(plan=...): a ragged batch's index checks and launches
computed once and shared by the layers of a generate step (FlashInfer's
plan/run split). A plan's results are the same bits as the plan-free call's
and match the float64 reference; the plan's launches are computed once per
configuration; bad plans and tensors that do not fit the plan raise
InputError naming the problem."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import attncc
from attncc.errors import InputError
from attncc.frontend import ragged_schedule
from ragged_testing import Batch, check, make, paged_cache, run_described
from test_paged import PREFILL, VARIANTS
from test_ragged import VARIANTS as VARLEN_VARIANTS
from property_budget import property_seed, examples

DECODE = ((1, 1), (1, 33), (1, 300), (1, 17), (1, 256))


def same_and_checked(b: Batch, planned, direct, q, k, v, cu_q, cu_k, slopes, sinks) -> None:
    """The plan's result is the plan-free call's, bit for bit, and matches
    the float64 reference."""
    for a, d in zip(*(x if b.return_lse else (x,) for x in (planned, direct))):
        assert torch.equal(a, d)
    out, lse = planned if b.return_lse else (planned, None)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks, lse)


def run_both(b: Batch, chunked: bool = True, layers: int = 2):
    """Runs `layers` layers (caches with other data, one plan) with the plan
    and without (`chunked`: with cu_seqlens_q, else decode)."""
    max_q = max((lq for lq, _ in b.lengths), default=0)
    plan = first = None
    for layer in range(layers):
        q, k, v, cu_q, cu_k, slopes, sinks = make(replace(b, seed=b.seed + layer))
        kc, vc, table, lens = paged_cache(b, k, v, cu_k)
        kw = dict(causal=b.causal, window=b.window, softcap=b.softcap, alibi_slopes=slopes,
                  sinks=sinks, layout=b.layout, return_lse=b.return_lse, **b.options)
        idx = dict(cu_seqlens_q=cu_q, max_seqlen_q=max_q) if chunked else {}
        if plan is None:
            plan = attncc.plan_paged(table, lens, page_size=b.page_size, **idx)
            first = (table.clone(), lens.clone())
        # one batch for every layer: paged_cache's page order follows b.seed
        assert torch.equal(first[0], table) and torch.equal(first[1], lens)
        same_and_checked(b, attncc.paged_attention(q, kc, vc, plan=plan, **kw),
                         attncc.paged_attention(q, kc, vc, table, lens, **idx, **kw),
                         q, k, v, cu_q, cu_k, slopes, sinks)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_plan_chunked_prefill_variants(name):
    run_both(VARIANTS[name])


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page", [1, 16, 100])
def test_plan_decode(layout, page):
    """Decode (the packed GQA launch), split-KV forced, sinks (the merge
    path) and a window that trims the key range."""
    for i, extra in enumerate(({}, {"options": {"num_splits": 3}},
                               {"sinks": True, "return_lse": True}, {"window": (40, 0)})):
        b = Batch(DECODE, kv_heads=2, group=4, causal=True, page_size=page, layout=layout,
                  seed=30 + i, **extra)
        run_both(b, chunked=False)


def test_plan_schedules_once(monkeypatch):
    """The launches are computed on a plan's first call of a configuration
    and reused by later layers; another configuration (a window) gets its own."""
    b = Batch(PREFILL + DECODE, causal=True, page_size=16)
    q, k, v, cu_q, cu_k, _, _ = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    calls = []
    real = ragged_schedule.schedule
    monkeypatch.setattr(ragged_schedule, "schedule",
                        lambda *a, **kw: calls.append(kw["sides"]) or real(*a, **kw))
    plan = attncc.plan_paged(table, lens, page_size=16, cu_seqlens_q=cu_q, max_seqlen_q=90)
    outs = [attncc.paged_attention(q, kc, vc, plan=plan, causal=True) for _ in range(3)]
    assert calls == [(-1, 0)]
    assert all(torch.equal(o, outs[0]) for o in outs)
    attncc.paged_attention(q, kc, vc, plan=plan, causal=True, window=(8, 0))
    attncc.paged_attention(q, kc, vc, plan=plan, causal=True, window=(8, 0))
    assert calls == [(-1, 0), (8, 0)]
    attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q, max_seqlen_q=90,
                           causal=True)     # no plan: computed per call
    assert len(calls) == 3
    vplan = attncc.plan_varlen(cu_q, cu_k, 90, 300)
    for _ in range(3):
        attncc.varlen_attention(q, k, v, plan=vplan, causal=True)
    assert len(calls) == 4


def test_plan_snapshots_index_tensors():
    """A plan holds host copies: writing block_table afterwards changes
    nothing for the plan (a new step builds a new plan)."""
    b = Batch(DECODE, kv_heads=2, group=2, page_size=16)
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    plan = attncc.plan_paged(table, lens, page_size=16)
    want = attncc.paged_attention(q, kc, vc, plan=plan)
    table.fill_(0)
    lens.fill_(1)
    assert torch.equal(attncc.paged_attention(q, kc, vc, plan=plan), want)
    check(b, want, q, k, v, cu_q, cu_k, slopes, sinks)


PROPERTY_SEED = property_seed(20261203)


def test_property_plan(capsys):
    with capsys.disabled():
        print(f"\ntest_ragged_plan property: seed {PROPERTY_SEED}")
    lengths = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 200)).map(
        lambda t: (min(t), t[1]) if t[0] % 3 else (1, max(t[1], 1))), min_size=1, max_size=5)

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(12), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(lengths=lengths, page=st.sampled_from([1, 3, 16, 64]),
           layout=st.sampled_from(["NHD", "HND"]), window=st.sampled_from([None, (20, 0)]),
           sinks=st.booleans(), seed_=st.integers(0, 2 ** 16))
    def prop(lengths, page, layout, window, sinks, seed_):
        b = Batch(tuple(lengths), causal=True, window=window, sinks=sinks, page_size=page,
                  layout=layout, seed=seed_, options={"block_m": 16, "block_n": 16})
        run_described(run_both, b)

    prop()


def _args():
    b = Batch(((2, 5), (1, 9)), page_size=4, group=3)
    q, k, v, cu_q, cu_k, _, _ = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    return q, kc, vc, table, lens, cu_q


def test_bad_plans():
    q, kc, vc, table, lens, cu_q = _args()
    plan = attncc.plan_paged(table, lens, page_size=4, cu_seqlens_q=cu_q, max_seqlen_q=2)
    assert "page_size=4" in repr(plan)
    cases = [
        (lambda: attncc.paged_attention(q, kc[:, :2], vc[:, :2], plan=plan),
         "page_size is 2; the plan was made for 4"),
        (lambda: attncc.paged_attention(q[:2], kc, vc, plan=plan), "q has 2 tokens; the plan"),
        (lambda: attncc.paged_attention(q, kc[:2], vc[:2], plan=plan),
         r"block_table\[\d, \d\] = \d+ is not a page of the cache \(0 <= page < 2\)"),
        (lambda: attncc.paged_attention(q, kc, vc, table, plan=plan), "pass no block_table"),
        (lambda: attncc.paged_attention(q, kc, vc, plan=(table, lens)), "attncc.PagedPlan"),
        (lambda: attncc.paged_attention(q, kc, vc), "block_table and seq_lens, or plan="),
        (lambda: attncc.plan_paged(table, lens, page_size=0), "page_size must be"),
        (lambda: attncc.plan_paged(table, lens, page_size=True), "page_size must be"),
        (lambda: attncc.plan_paged(table.masked_fill(table >= 0, -3), lens, page_size=4,
                                   cu_seqlens_q=cu_q), r"block_table\[0, 0\] = -3"),
        (lambda: attncc.plan_paged(table, lens, page_size=2, cu_seqlens_q=cu_q),
         "needs 5 pages of 2"),
        (lambda: attncc.plan_paged(table, lens.long(), page_size=4), "int32"),
        (lambda: attncc.plan_paged(table, lens, page_size=4, cu_seqlens_q=cu_q,
                                   max_seqlen_q=1), "max_seqlen_q = 1"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()


def run_varlen_both(b: Batch, layers: int = 2):
    """varlen_attention with one plan for `layers` layers (other data each)
    and without: the same bits, and checked against the reference."""
    max_q = max((lq for lq, _ in b.lengths), default=0)
    max_k = max((lk for _, lk in b.lengths), default=0)
    plan = None
    for layer in range(layers):
        q, k, v, cu_q, cu_k, slopes, sinks = make(replace(b, seed=b.seed + layer))
        plan = plan or attncc.plan_varlen(cu_q, cu_k, max_q, max_k)
        kw = dict(causal=b.causal, window=b.window, softcap=b.softcap, alibi_slopes=slopes,
                  sinks=sinks, return_lse=b.return_lse, **b.options)
        same_and_checked(b, attncc.varlen_attention(q, k, v, plan=plan, **kw),
                         attncc.varlen_attention(q, k, v, cu_q, cu_k, max_q, max_k, **kw),
                         q, k, v, cu_q, cu_k, slopes, sinks)


@pytest.mark.parametrize("name", sorted(VARLEN_VARIANTS))
def test_varlen_plan_variants(name):
    run_varlen_both(VARLEN_VARIANTS[name])


def test_varlen_plan_decode_split():
    """Decode tokens in a varlen batch (the packed launch), split-KV forced."""
    b = Batch(((1, 700), (1, 1), (4, 300), (1, 513)), kv_heads=2, group=4, causal=True,
              sinks=True, options={"num_splits": 3})
    run_varlen_both(b)


def test_bad_varlen_plans():
    b = Batch(((2, 5), (1, 9)), group=3)
    q, k, v, cu_q, cu_k, _, _ = make(b)
    plan = attncc.plan_varlen(cu_q, cu_k, 2, 9)
    assert "k_tokens=14" in repr(plan)
    cases = [
        (lambda: attncc.varlen_attention(q[:2], k, v, plan=plan), "q has 2 tokens; the plan"),
        (lambda: attncc.varlen_attention(q, k[:5], v[:5], plan=plan),
         "k has 5 tokens; the plan has 14"),
        (lambda: attncc.varlen_attention(q, k, v, cu_q, plan=plan), "pass no cu_seqlens_q"),
        (lambda: attncc.varlen_attention(q, k, v, plan=_args()), "attncc.VarlenPlan"),
        (lambda: attncc.varlen_attention(q, k, v, cu_q, cu_k), "max_seqlen_q and max_seqlen_k"),
        (lambda: attncc.plan_varlen(cu_q, cu_k, 1, 9), "max_seqlen_q = 1"),
        (lambda: attncc.plan_varlen(cu_q, cu_k[:2], 2, 9), "cu_seqlens_k has 2 entries"),
        (lambda: attncc.plan_varlen(cu_q.long(), cu_k, 2, 9), "int32"),
        (lambda: attncc.plan_varlen(cu_q.flip(0), cu_k, 2, 9), r"cu_seqlens_q\[0\] must be 0"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
