"""Split-KV (flash decoding) for the decode tokens of `varlen_attention` and
`paged_attention` (issue 12): a decode token's keys cut into pieces that run as
separate work items and are merged with their log-sum-exps. Checked against
the float64 reference per sequence (ragged_testing.py), and that the split
actually ran (the merge sees more pieces than tokens)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import attncc
from attncc.frontend import ragged_schedule, split_kv
from attncc.options import CompileOptions, OptionError
import test_paged
from ragged_testing import Batch, decode_schedule, make, paged_cache, run_described
from test_ragged import run as run_varlen
from property_budget import property_seed, examples

# Decode tokens over caches shorter than one piece (1, 2), around the 256-key
# piece size (257, 600) and several pieces long (1300).
DECODE = ((1, 1), (1, 600), (1, 1300), (1, 257), (1, 2))


@pytest.fixture
def merges(monkeypatch):
    """Records (pieces, tokens) of every split-KV merge: merge_pieces, or
    merge_uniform called directly (a plan's uniform split, Decode.per_token)."""
    seen = []
    real_pieces, real_uniform = split_kv.merge_pieces, split_kv.merge_uniform
    inside = []

    def spy_pieces(o, lse, tok, n):
        seen.append((tok.numel(), n))
        inside.append(True)
        try:
            return real_pieces(o, lse, tok, n)
        finally:
            inside.pop()

    def spy_uniform(o, lse, n, c):
        if not inside:
            seen.append((n * c, n))
        return real_uniform(o, lse, n, c)

    monkeypatch.setattr(split_kv, "merge_pieces", spy_pieces)
    monkeypatch.setattr(split_kv, "merge_uniform", spy_uniform)
    return seen


def run_paged(b: Batch):
    test_paged.run(b, chunked=False)


CASES = {
    # page sizes: gathered rows (1, 100), pages read in place (16, 512: a piece
    # is a multiple of the page when the page is larger than 256 keys)
    "p16_gqa4_f32": Batch(DECODE, group=4, page_size=16, return_lse=True),
    "p1_gqa4_bf16_hnd": Batch(DECODE, group=4, page_size=1, dtype="bf16", layout="HND"),
    "p100_mha_f16": Batch(DECODE, group=1, page_size=100, dtype="f16", return_lse=True),
    "p512_gqa2_f32": Batch(DECODE, group=2, page_size=512, causal=True),
    # a window trims the keys first (pieces of the trimmed range)
    "p16_window_softcap_bf16": Batch(DECODE, group=4, page_size=16, dtype="bf16",
                                     window=(700, 0), softcap=30.0, return_lse=True),
}


@pytest.mark.parametrize("splits", [2, 5])
@pytest.mark.parametrize("name", sorted(CASES))
def test_paged_decode_split(name, splits, merges):
    b = replace(CASES[name], options={"num_splits": splits})
    run_paged(b)
    assert merges and merges[-1][0] > merges[-1][1], f"no split ran: {merges}"


def test_varlen_prefill_and_split_decode(merges):
    """A prefill chunk, decode tokens (one with no keys at all: zeros, LSE
    -inf) and an empty sequence in one call; only the decode tokens split."""
    b = Batch(((20, 900), (1, 1000), (1, 0), (0, 3), (1, 300)), group=3, causal=True,
              return_lse=True, options={"num_splits": 4})
    run_varlen(b)
    assert merges and merges[-1] == (4 + 1 + 2, 3), merges


def test_alibi_does_not_split(merges):
    """ALiBi (a per-head term on every score) keeps decode tokens in the
    general launch, unsplit."""
    b = Batch(DECODE, group=2, alibi=True, sinks=True, options={"num_splits": 4})
    run_varlen(b)
    assert not merges


@pytest.mark.parametrize("splits", [1, 4])
@pytest.mark.parametrize("group", [1, 4])
def test_sinks_join_after_the_kernel(group, splits, merges):
    """Sinks (gpt-oss) stay in the packed decode launch: the kernel runs
    without them and each head's sink joins the merged LSE and rescales the
    output (one piece per token when not split: nothing to merge). A token
    without keys gets zeros and the sink as its LSE."""
    b = Batch(DECODE + ((1, 0),), group=group, sinks=True, causal=True, return_lse=True,
              dtype="bf16", options={"num_splits": splits})
    run_varlen(b)
    if splits == 1:
        assert not merges, merges
        return
    pieces, tokens = merges[-1]
    assert tokens == len(DECODE) + 1 and pieces > tokens, merges


def test_uniform_merge_matches_the_scatter_merge():
    """merge_pieces' reshaped path (every token c pieces, in order) against
    its scatter path (the same pieces, tokens interleaved), -inf LSEs (empty
    pieces, a token without keys) included."""
    g = torch.Generator().manual_seed(5)
    n, c = 5, 3
    o = torch.randn(n * c, 2, 4, 16, generator=g).to(torch.bfloat16)
    lse = torch.randn(n * c, 2, 4, generator=g)
    lse[1] = -torch.inf                       # an empty piece
    lse[3 * c:4 * c] = -torch.inf             # a token without keys
    tok = torch.arange(n).repeat_interleave(c)
    perm = torch.randperm(n * c, generator=g)
    got_o, got_l = split_kv.merge_pieces(o, lse, tok, n)
    ref_o, ref_l = split_kv.merge_pieces(o[perm], lse[perm], tok[perm], n)
    torch.testing.assert_close(got_o, ref_o, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_l, ref_l, rtol=1e-6, atol=1e-6)
    assert bool((got_o[3] == 0).all()) and bool(torch.isneginf(got_l[3]).all())
    # float64: lse = log sum exp(lse_i), out = sum exp(lse_i - lse) o_i per token.
    l64 = lse.double().view(n, c, 2, 4)
    tot = torch.logsumexp(l64, 1)
    w = torch.exp(l64 - tot.unsqueeze(1)).nan_to_num(0.0)
    out64 = (w.unsqueeze(-1) * o.double().view(n, c, 2, 4, 16)).sum(1)
    keep = torch.arange(n) != 3                # the token without keys: checked above
    torch.testing.assert_close(got_o[keep].double(), out64[keep], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_l[keep].double(), tot[keep], rtol=1e-6, atol=1e-6)


def test_auto_split_choice():
    """None: split only where the decode grid leaves threads idle and the keys
    are long enough; 1 never splits; a forced count is used as given."""
    long_, short = torch.tensor([8192]), torch.tensor([300])
    assert split_kv.decode_token_splits(None, 1, long_, 2, 256) > 1        # 1 task, 2 threads
    assert split_kv.decode_token_splits(None, 1, short, 2, 256) == 1       # too short to cut
    assert split_kv.decode_token_splits(None, 8, long_, 2, 256) == 1       # grid fills the threads
    assert split_kv.decode_token_splits(None, 3, long_, 4, 256) > 1
    assert split_kv.decode_token_splits(None, 1, long_, 1, 256) == 1       # one thread
    assert split_kv.decode_token_splits(1, 1, long_, 8, 256) == 1
    assert split_kv.decode_token_splits(7, 64, long_, 2, 256) == 7
    # A CPU piece reads at least CPU_MIN_PIECE_BYTES: as keys, min_piece_keys.
    assert split_kv.decode_token_splits(None, 1, long_, 2, 256, 16384) == 1
    assert split_kv.decode_token_splits(None, 1, torch.tensor([40000]), 2, 256, 16384) == 2
    assert split_kv.decode_token_splits(3, 1, long_, 2, 256, 16384) == 3      # forced


def test_cpu_split_pieces_read_enough_bytes():
    """On the CPU a split piece reads at least CPU_MIN_PIECE_BYTES of K/V
    (below that the pieces' fixed cost, ~0.15 ms a call, exceeds what the
    split saves): bf16 D128 (512 bytes per key and KV head) splits one KV
    head's 32k keys, not its 16k; with the KV heads inside one grid point
    (heads-inner, 8 heads) and fewer tokens than threads, 8k keys are
    (INNER_MIN_PIECE_BYTES pieces; 4k take a point per KV head instead,
    test_heads_inner). The GPU ignores the bound."""
    bf16_d128 = 2 * 128 * 2
    mqa = dict(batch=1, Hkv=1, interleaved=False, key_bytes=bf16_d128)
    assert decode_schedule(lk=16384, **mqa).pieces is None
    assert decode_schedule(lk=32768, **mqa).pieces.numel() == 2
    assert decode_schedule(lk=16384, **{**mqa, "key_bytes": 0}).pieces is not None  # no bound
    inner = decode_schedule(batch=1, lk=8192, key_bytes=bf16_d128)
    assert inner.heads_inner and inner.pieces.numel() == 2
    outer = decode_schedule(batch=1, lk=4096, key_bytes=bf16_d128)
    assert not outer.heads_inner and outer.pieces is None
    gpu = decode_schedule(lk=4096, target="sm_90a", threads=132, **mqa)
    assert gpu.pieces is not None and gpu.pieces.numel() > 2


def test_auto_split_runs_for_mqa(merges):
    """One KV head, one long sequence, two threads: the default splits (f32,
    head_dim 32: 256 bytes per key, so 2 x CPU_MIN_PIECE_BYTES is 64k keys)."""
    b = Batch(((1, 70000),), kv_heads=1, group=4, page_size=16,
              options={"num_threads": 2})
    run_paged(b)
    assert merges and merges[-1][0] > 1, merges


def test_pieces_cover_the_keys():
    ks, kn = np.array([0, 100, 7, 50]), np.array([1000, 0, 256, 5000])
    tok, start, n = split_kv.split_pieces(ks, kn, 3, 256)
    assert (np.diff(tok) >= 0).all()      # tokens in order (the plan's per-token merge)
    for t in range(4):
        sel = tok == t
        assert int(n[sel].sum()) == int(kn[t])
        assert int(start[sel][0]) == int(ks[t])
        assert ((start[sel] - ks[t]) % 256 == 0).all()
        assert int(sel.sum()) <= 3


@pytest.mark.parametrize("bad", [0, 257, True, 2.5])
def test_bad_num_splits(bad):
    b = Batch(DECODE)
    q, k, v, cu_q, cu_k, _, _ = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    with pytest.raises(OptionError, match="num_splits"):
        attncc.paged_attention(q, kc, vc, table, lens, num_splits=bad)
    with pytest.raises(OptionError, match="num_splits"):
        attncc.varlen_attention(q, k, v, cu_q, cu_k, 1, 1300, num_splits=bad)


PROPERTY_SEED = property_seed(20261201)


def test_property_split_decode(capsys):
    with capsys.disabled():
        print(f"\ntest_ragged_split property: seed {PROPERTY_SEED}")

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(12), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(kv=st.lists(st.integers(1, 1500), min_size=1, max_size=4),
           page=st.integers(1, 300), group=st.sampled_from([1, 2, 4]),
           dtype=st.sampled_from(["f32", "bf16", "f16"]), splits=st.integers(2, 9),
           window=st.sampled_from([None, (400, 0)]), seed_=st.integers(0, 2 ** 16))
    def prop(kv, page, group, dtype, splits, window, seed_):
        b = Batch(tuple((1, n) for n in kv), group=group, page_size=page, dtype=dtype,
                  window=window, seed=seed_, return_lse=True,
                  options={"num_splits": splits})
        run_described(run_paged, b)

    prop()


def test_plan_precomputes_the_merge():
    """What a split step's calls need besides the kernel is computed once per
    plan (Decode.piece_rows, per_token, all_rows): each token's pieces in
    order and equal in number take merge_uniform, and a batch of decode tokens
    only gets its output copied rather than scattered."""
    even = decode_schedule(batch=3, lk=4096, Hkv=1, interleaved=False, num_splits=2)
    assert even.per_token == 2 and even.all_rows
    assert torch.equal(even.piece_rows, even.tokens[even.pieces])
    # Lengths that cut into different numbers of pieces: the general merge.
    n = torch.tensor([4096, 100])
    uneven = ragged_schedule.schedule(
        torch.arange(2), torch.ones(2, dtype=torch.int64), torch.arange(2),
        torch.zeros(2, dtype=torch.int64), n, page_size=16, paged=True, G=4, Hkv=1,
        sides=None, alibi=False, sinks=False, opts=CompileOptions(), threads=2,
        packed_ok=True, num_splits=2, target="cpu", interleaved=False).decode
    assert uneven.pieces.numel() == 3 and uneven.per_token == 0 and uneven.all_rows
    # A prefill row beside the decode token: the decode rows are scattered.
    mixed = ragged_schedule.schedule(
        torch.tensor([0, 5]), torch.tensor([5, 1]), torch.arange(2),
        torch.zeros(2, dtype=torch.int64), torch.tensor([4096, 4096]), page_size=16,
        paged=True, G=4, Hkv=1, sides=None, alibi=False, sinks=False,
        opts=CompileOptions(), threads=2, packed_ok=True, num_splits=2, target="cpu",
        interleaved=False)
    assert mixed.decode.per_token == 2 and not mixed.decode.all_rows and mixed.groups
