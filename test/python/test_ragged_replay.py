"""frontend/ragged_replay.py: a paged call with a plan whose signature was
seen before runs the kernels that signature launched without the full path
(the layers of a decode step, and the steps after it, with new plans). The
replayed results are the plan-free call's bit for bit and match the float64
reference; the full path runs once per signature (a spy on ragged._run);
what the replay cannot vouch for (another plan's page size or pages beyond
the cache, inputs that require grad, split-KV pieces) still goes the full
path or raises as it does. `out=` is written in place on both paths."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import attncc
from attncc import ragged
from attncc.errors import InputError
from attncc.frontend import ragged_replay
from ragged_testing import Batch, check, make, paged_cache

STEP = ((1, 33), (1, 17), (1, 300))
NEXT = ((1, 34), (1, 18), (1, 301))     # the next decode step: the same pages
MIXED = ((5, 40), (1, 33), (12, 12))     # prefill chunks and a decode token


@pytest.fixture
def full_runs(monkeypatch) -> list:
    """Records every call that went the full path (ragged._run); forgets the
    signatures other tests left."""
    ragged_replay.clear()
    runs: list = []
    real = ragged._run
    monkeypatch.setattr(ragged, "_run", lambda *a, **kw: runs.append(1) or real(*a, **kw))
    return runs


def layer(b: Batch, data_seed: int):
    """One layer's tensors: q/k/v from `data_seed`, pages laid out as b's
    (every layer of a step shares the block table)."""
    q, k, v, cu_q, cu_k, slopes, sinks = make(replace(b, seed=data_seed))
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    return q, k, v, cu_q, cu_k, kc, vc, table, lens


def same_as_plan_free(b: Batch, got, q, k, v, cu_q, cu_k, kc, vc, table, lens, idx) -> None:
    kw = dict(causal=b.causal, window=b.window, layout=b.layout)
    want = attncc.paged_attention(q, kc, vc, table, lens, **idx, **kw)
    assert torch.equal(got, want), b.describe()
    check(b, got, q, k, v, cu_q, cu_k, None, None)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_decode_steps_replay(full_runs, layout, dtype):
    """Two layers of a step, then two of the next step (a new plan, one more
    key per sequence): one full-path call in all."""
    ours = 0
    for step, lengths in enumerate((STEP, NEXT)):
        b = Batch(lengths, kv_heads=2, group=4, causal=True, page_size=16, layout=layout,
                  dtype=dtype, seed=10 + step)
        plan = None
        for lay in range(2):
            q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 100 * step + lay)
            plan = plan or attncc.plan_paged(table, lens, page_size=16)
            got = attncc.paged_attention(q, kc, vc, plan=plan, causal=True, layout=layout)
            ours += 1
            n = len(full_runs)
            same_as_plan_free(b, got, q, k, v, cu_q, cu_k, kc, vc, table, lens, {})
            del full_runs[n:]        # (the plan-free call's own)
    assert ours == 4 and len(full_runs) == 1, full_runs


def test_mixed_batch_replays_every_launch(full_runs):
    """Prefill chunks beside a decode token (the packed decode launch and
    query-block launches) with a window: the second layer replays them all."""
    b = Batch(MIXED, kv_heads=2, group=2, causal=True, window=(20, 0), page_size=8, seed=3)
    plan, ours = None, []
    for lay in range(2):
        q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 7 + lay)
        idx = dict(cu_seqlens_q=cu_q, max_seqlen_q=12)
        plan = plan or attncc.plan_paged(table, lens, page_size=8, **idx)
        n = len(full_runs)
        got = attncc.paged_attention(q, kc, vc, plan=plan, causal=True, window=(20, 0))
        ours.append(len(full_runs) - n)
        same_as_plan_free(b, got, q, k, v, cu_q, cu_k, kc, vc, table, lens, idx)
    assert ours == [1, 0]


def test_out_written_in_place(full_runs):
    b = Batch(STEP, kv_heads=2, group=4, causal=True, seed=5)
    plan = None
    for lay in range(2):
        q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 20 + lay)
        plan = plan or attncc.plan_paged(table, lens, page_size=16)
        out = torch.full((q.shape[0], q.shape[1], v.shape[2]), float("nan"))
        got = attncc.paged_attention(q, kc, vc, plan=plan, causal=True, out=out)
        assert got is out
        same_as_plan_free(b, out, q, k, v, cu_q, cu_k, kc, vc, table, lens, {})
    assert len(full_runs) == 3       # the first layer's call and the two plan-free calls
    T, H, D = q.shape
    for bad, what in ((torch.empty(T, H, D + 1), "shape"), (torch.empty(T, H, D).half(), "dtype"),
                      (torch.empty(H, T, D).transpose(0, 1), "contiguous"), ([0.0], "list")):
        with pytest.raises(InputError, match="out must be a contiguous"):
            attncc.paged_attention(q, kc, vc, plan=plan, causal=True, out=bad)


def test_replay_checks_the_plan_against_the_cache(full_runs):
    """Another plan under a known signature: its page size and its largest
    page are checked against the cache as on the full path."""
    b = Batch(STEP, kv_heads=2, group=4, causal=True, seed=6)
    q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 30)
    attncc.paged_attention(q, kc, vc, plan=attncc.plan_paged(table, lens, page_size=16),
                           causal=True)
    runs = len(full_runs)
    with pytest.raises(InputError, match="page_size is 16; the plan was made for 8"):
        table8 = torch.zeros((3, 38), dtype=torch.int32)      # 300 keys in pages of 8
        attncc.paged_attention(q, kc, vc, causal=True,
                               plan=attncc.plan_paged(table8, lens, page_size=8))
    beyond = table.clone()
    beyond[2, 0] = kc.shape[0]
    with pytest.raises(InputError, match="is not a page of the cache"):
        attncc.paged_attention(q, kc, vc, causal=True,
                               plan=attncc.plan_paged(beyond, lens, page_size=16))
    assert len(full_runs) == runs          # both refused by the replay's plan check
    q.requires_grad_(True)      # the replay leaves it to the full path's refusal
    with pytest.raises(InputError, match="requires grad"):
        attncc.paged_attention(q, kc, vc, causal=True,
                               plan=attncc.plan_paged(table, lens, page_size=16))


def test_split_pieces_go_the_full_path(full_runs):
    """Split-KV pieces merge in torch: every call runs the full path, with
    the same results."""
    b = Batch(STEP, kv_heads=2, group=4, causal=True, seed=8)
    q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 40)
    plan = attncc.plan_paged(table, lens, page_size=16)
    outs = [attncc.paged_attention(q, kc, vc, plan=plan, causal=True, num_splits=3)
            for _ in range(2)]
    assert len(full_runs) == 2 and torch.equal(outs[0], outs[1])
    check(b, outs[1], q, k, v, cu_q, cu_k, None, None)


def test_varlen_layers_replay(full_runs):
    """varlen_attention with a plan: the second layer of a step replays the
    first one's launches (packed decode and query blocks); another plan's
    token counts are checked as on the full path."""
    b = Batch(MIXED, kv_heads=2, group=2, causal=True, softcap=30.0, seed=9)
    plan, ours = None, []
    for lay in range(2):
        q, k, v, cu_q, cu_k, _, _ = make(replace(b, seed=50 + lay))
        plan = plan or attncc.plan_varlen(cu_q, cu_k, 12, 40)
        n = len(full_runs)
        got = attncc.varlen_attention(q, k, v, plan=plan, causal=True, softcap=30.0)
        ours.append(len(full_runs) - n)
        want = attncc.varlen_attention(q, k, v, cu_q, cu_k, 12, 40, causal=True, softcap=30.0)
        assert torch.equal(got, want)
        check(b, got, q, k, v, cu_q, cu_k, None, None)
    assert ours == [1, 0]
    other = attncc.plan_varlen(torch.tensor([0, 5, 6, 17], dtype=torch.int32), cu_k, 12, 40)
    with pytest.raises(InputError, match="q has 18 tokens; the plan has 17"):
        attncc.varlen_attention(q, k, v, plan=other, causal=True, softcap=30.0)


def test_replay_follows_the_cpu_class(full_runs, monkeypatch):
    """ATTNCC_CPU (the default CPU class) is part of the signature: after it
    changes, the next call goes the full path (the other class's kernels)."""
    from attncc.targets import cpu as cpu_target
    if cpu_target.missing_features(cpu_target.ISAS["x86-64-v3"]):
        pytest.skip("needs a host that runs x86-64-v3 (AVX2) code")
    b = Batch(STEP, kv_heads=2, group=4, causal=True, seed=11)
    q, k, v, cu_q, cu_k, kc, vc, table, lens = layer(b, 60)
    plan = attncc.plan_paged(table, lens, page_size=16)
    monkeypatch.delenv("ATTNCC_CPU", raising=False)
    for _ in range(2):
        attncc.paged_attention(q, kc, vc, plan=plan, causal=True)
    assert len(full_runs) == 1
    monkeypatch.setenv("ATTNCC_CPU", "x86-64-v3")
    check(b, attncc.paged_attention(q, kc, vc, plan=plan, causal=True), q, k, v, cu_q, cu_k,
          None, None)
    assert len(full_runs) == 2
