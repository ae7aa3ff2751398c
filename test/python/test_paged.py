"""attncc.paged_attention and attncc.paged_kv_append (issue 12): attention
against a paged KV cache ([num_pages, page_size, Hkv, D] "NHD" or
[num_pages, Hkv, page_size, D] "HND", int32 block tables, any page size),
decode (one token per sequence) and chunked prefill (ragged queries), against
the float64 reference on the gathered sequences (ragged_testing.py). Pages
are written in shuffled order and unused pages hold garbage."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import attncc
from attncc.errors import InputError
from ragged_testing import Batch, check, make, paged_cache, run_described
from property_budget import property_seed, examples

PREFILL = ((3, 3), (0, 5), (1, 1), (1, 40), (0, 0), (37, 37), (5, 70), (20, 90))


def run(b: Batch, chunked: bool = True):
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    kw = dict(causal=b.causal, window=b.window, softcap=b.softcap, alibi_slopes=slopes,
              sinks=sinks, layout=b.layout, return_lse=b.return_lse, **b.options)
    if chunked:
        max_q = max((lq for lq, _ in b.lengths), default=0)
        out = attncc.paged_attention(q, kc, vc, table, lens, cu_seqlens_q=cu_q,
                                     max_seqlen_q=max_q, **kw)
    else:
        out = attncc.paged_attention(q, kc, vc, table, lens, **kw)
    out, lse = out if b.return_lse else (out, None)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks, lse)
    return out


# One query block size (16) for most variants: the default picks a block size per
# sequence length bucket (a launch per bucket), which the plain variant covers.
B16 = {"block_m": 16}

VARIANTS = {
    "plain_f32_p16": Batch(PREFILL, page_size=16),
    "causal_f16_p3_hnd": Batch(PREFILL, dtype="f16", causal=True, page_size=3, layout="HND",
                               options=B16),
    "window_softcap_bf16_p1": Batch(PREFILL, dtype="bf16", window=(9, 0), softcap=15.0,
                                    page_size=1, options=B16),
    "causal_alibi_sinks_f32_p128": Batch(PREFILL, causal=True, alibi=True, sinks=True,
                                         page_size=128, options=B16),
    "lse_causal_sinks_f16_p5": Batch(PREFILL, dtype="f16", causal=True, sinks=True,
                                     page_size=5, return_lse=True, options=B16),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_paged_chunked_prefill_variants(name):
    run(VARIANTS[name])


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_paged_decode_every_page_size(layout):
    """One token per sequence (q [batch, Hq, D], no cu_seqlens_q), GQA 4:
    one kernel for page sizes 1, 3, 100, 8 and 2 (K rows gathered through the
    block table; a row's page and slot by a shift and a mask where the size is
    a power of two, by a division where not: both branches of the same kernel
    run here); power-of-two pages of at least 16 each get the kernel that
    reads pages in place (16 and 256 here: one kernel each, then reused)."""
    from attncc import ragged
    ragged.clear_cache()

    def decode(i, P):
        b = Batch(((1, 1), (1, 33), (1, 300), (1, 17), (1, 256)), kv_heads=2, group=4,
                  causal=True, page_size=P, layout=layout, seed=i)
        run(b, chunked=False)
        return ragged.kernels_cached()

    assert [decode(i, P) for i, P in enumerate((1, 3, 100, 8, 2, 16, 256, 16, 256))] == \
        [1, 1, 1, 1, 1, 2, 3, 3, 3]


PROPERTY_SEED = property_seed(20261202)


def test_property_paged(capsys):
    with capsys.disabled():
        print(f"\ntest_paged property: seed {PROPERTY_SEED}")
    lengths = st.lists(st.tuples(st.integers(0, 24), st.integers(0, 300)).map(
        lambda t: (min(t), t[1]) if t[0] % 4 else (min(t), min(t))), min_size=1, max_size=5)

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(15), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(lengths=lengths, page=st.integers(1, 256), layout=st.sampled_from(["NHD", "HND"]),
           window=st.sampled_from([None, (20, 0), (-1, -1)]), seed_=st.integers(0, 2 ** 16),
           return_lse=st.booleans())
    def prop(lengths, page, layout, window, seed_, return_lse):
        b = Batch(tuple(lengths), causal=True, window=window, page_size=page, layout=layout,
                  seed=seed_, return_lse=return_lse, options={"block_m": 16, "block_n": 16})
        run_described(run, b)

    prop()


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_kv_append_then_attend(layout):
    """paged_kv_append writes tokens to their slots (a -1 slot is skipped);
    attending over the appended cache equals varlen attention over the
    tokens."""
    g = torch.Generator().manual_seed(7)
    P, Hkv, D, lens = 5, 2, 16, [7, 0, 12]
    pages = [(n + P - 1) // P for n in lens]
    num_pages = sum(pages) + 2
    perm = torch.randperm(num_pages, generator=g)
    table = torch.zeros(len(lens), max(pages), dtype=torch.int32)
    slots, nxt = [], 0
    for s, n in enumerate(lens):
        for i in range(pages[s]):
            table[s, i] = perm[nxt]
            nxt += 1
        slots += [int(table[s, t // P]) * P + t % P for t in range(n)]
    T = sum(lens)
    k = torch.randn(T + 1, Hkv, D, generator=g)
    v = torch.randn(T + 1, Hkv, D, generator=g)
    slot_mapping = torch.tensor(slots + [-1], dtype=torch.int32)   # last token: padding
    shape = (num_pages, P, Hkv, D) if layout == "NHD" else (num_pages, Hkv, P, D)
    kc, vc = torch.zeros(shape), torch.zeros(shape)
    attncc.paged_kv_append(kc, vc, k, v, slot_mapping, layout=layout)
    kn = kc if layout == "NHD" else kc.transpose(1, 2)
    for t, slot in enumerate(slots):
        assert torch.equal(kn[slot // P, slot % P], k[t])
    assert int((kc != 0).sum()) == T * Hkv * D      # nothing else written (padding skipped)
    q = torch.randn(T, 4, D, generator=g)
    cu = torch.tensor([0, 7, 7, 19], dtype=torch.int32)
    out = attncc.paged_attention(q, kc, vc, table, torch.tensor(lens, dtype=torch.int32),
                                 cu_seqlens_q=cu, max_seqlen_q=12, causal=True, layout=layout)
    ref = attncc.varlen_attention(q, k[:T], v[:T], cu, cu, 12, 12, causal=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def _paged_args():
    b = Batch(((2, 5), (1, 9)), page_size=4, group=3)   # Hq 6: an HND view of it has 4 heads
    q, k, v, cu_q, cu_k, _, _ = make(b)
    kc, vc, table, lens = paged_cache(b, k, v, cu_k)
    return dict(q=q, k_cache=kc, v_cache=vc, block_table=table, seq_lens=lens,
                cu_seqlens_q=cu_q, max_seqlen_q=2)


@pytest.mark.parametrize("mutate, match", [
    (lambda a: {**a, "block_table": a["block_table"].masked_fill(a["block_table"] >= 0, 99)},
     r"block_table\[0, 0\] = 99"),
    (lambda a: {**a, "block_table": a["block_table"].to(torch.int64)}, "int32"),
    (lambda a: {**a, "seq_lens": torch.tensor([5, 13], dtype=torch.int32)}, "needs 4 pages"),
    (lambda a: {**a, "seq_lens": torch.tensor([5, -1], dtype=torch.int32)}, "non-negative"),
    (lambda a: {**a, "seq_lens": torch.tensor([1, 9], dtype=torch.int32)}, "new tokens"),
    (lambda a: {**a, "seq_lens": torch.tensor([5], dtype=torch.int32)}, "entries"),
    (lambda a: {**a, "cu_seqlens_q": torch.tensor([0, 2, 2], dtype=torch.int32)},
     "packed token count"),
    (lambda a: {**a, "cu_seqlens_q": torch.tensor([0, 3], dtype=torch.int32)}, "entries"),
    (lambda a: {**a, "layout": "HND"}, "layout 'HND'"),
    (lambda a: {**a, "layout": "NCHW"}, "layout must be"),
    (lambda a: {**a, "k_cache": a["k_cache"][0]}, "rank 4"),
    (lambda a: {**a, "cu_seqlens_q": None}, "one per sequence"),
    (lambda a: {**a, "k_cache": a["k_cache"].clone().requires_grad_()},
     "'k_cache' requires grad"),
    (lambda a: {**a, "sinks": torch.full((6,), float("nan"))}, "sinks has non-finite"),
])
def test_bad_paged_inputs(mutate, match):
    args = mutate(_paged_args())
    with pytest.raises(InputError, match=match):
        attncc.paged_attention(**args)


@pytest.mark.parametrize("mutate, match", [
    (lambda a: {**a, "slot_mapping": a["slot_mapping"].long()}, "int32"),
    (lambda a: {**a, "slot_mapping": torch.tensor([0, 40], dtype=torch.int32)}, r"\[0, 40\)"),
    (lambda a: {**a, "slot_mapping": torch.tensor([0, -2], dtype=torch.int32)}, "-1"),
    (lambda a: {**a, "slot_mapping": torch.tensor([0], dtype=torch.int32)}, "one entry"),
    (lambda a: {**a, "k": a["k"][:, :1]}, "does not fit"),
    (lambda a: {**a, "layout": "HND"}, "does not fit"),
])
def test_bad_append_inputs(mutate, match):
    args = dict(k_cache=torch.zeros(10, 4, 2, 8), v_cache=torch.zeros(10, 4, 2, 8),
                k=torch.ones(2, 2, 8), v=torch.ones(2, 2, 8),
                slot_mapping=torch.tensor([0, 5], dtype=torch.int32))
    with pytest.raises(InputError, match=match):
        attncc.paged_kv_append(**mutate(args))


@pytest.mark.parametrize("kv_in_place", [False, True])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_paged_decode_both_forms(layout, kv_in_place):
    """The decode form (K rows gathered untransposed, Q.K^T as dot products)
    and the packing form agree with the reference: f16 with a head dim off the
    vector width (36), bf16 GQA 8 with sinks (one row per block), pages of 5;
    with the LSE (the GQA-packed launch writes it through a strided view)."""
    for i, (dtype, D, group, sinks) in enumerate((("f16", 36, 4, False),
                                                 ("bf16", 96, 8, True))):
        b = Batch(((1, 1), (1, 41), (1, 300), (1, 7), (1, 5)), kv_heads=2, group=group,
                  head_dim=D, dtype=dtype, causal=True, sinks=sinks, page_size=5,
                  layout=layout, return_lse=True, seed=10 + i,
                  options={"kv_in_place": kv_in_place})
        run(b, chunked=False)

