"""attncc.varlen_attention (issue 12): ragged batches on packed
[total_tokens, heads, head_dim] tensors with int32 cumulative lengths,
flash-attn's flash_attn_varlen_func semantics (bottom-right alignment per
sequence), against a float64 reference run per sequence (ragged_testing.py).
Kernels are compiled per structure (dtype, heads, variants), not per batch:
the tests vary lengths freely and keep the dtype x variant combinations few."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import attncc
from attncc.errors import CompileError, InputError
from attncc.compiler import compile_graph
from attncc.graph import Graph
from ragged_testing import Batch, check, make, run_described
from property_budget import property_seed, examples

# Empty sequences, a single token, Lq = Lk, Lq < Lk, a prefill longer than a
# query block, and one with more queries than keys (its first rows see no key
# under a causal mask: zeros).
LENGTHS = ((3, 3), (0, 5), (1, 1), (1, 40), (0, 0), (37, 37), (5, 70), (20, 90), (6, 2))


def run(b: Batch):
    q, k, v, cu_q, cu_k, slopes, sinks = make(b)
    max_q = max((lq for lq, _ in b.lengths), default=0)
    max_k = max((lk for _, lk in b.lengths), default=0)
    out = attncc.varlen_attention(q, k, v, cu_q, cu_k, max_q, max_k, causal=b.causal,
                                  window=b.window, softcap=b.softcap, alibi_slopes=slopes,
                                  sinks=sinks, return_lse=b.return_lse, **b.options)
    out, lse = out if b.return_lse else (out, None)
    check(b, out, q, k, v, cu_q, cu_k, slopes, sinks, lse)
    return out


# One query block size (16) for most variants: the default picks a block size per
# sequence length bucket (a launch per bucket), which the plain variant covers.
B16 = {"block_m": 16}

VARIANTS = {
    "plain_f32": Batch(LENGTHS),
    "causal_f16": Batch(LENGTHS, dtype="f16", causal=True, options=B16),
    "window_softcap_bf16": Batch(LENGTHS, dtype="bf16", window=(7, 2), softcap=20.0,
                                 options=B16),
    "causal_alibi_sinks_f32": Batch(LENGTHS, causal=True, alibi=True, sinks=True, options=B16),
    # return_lse: rows that see no key (-inf), sinks (their term joins the LSE),
    # decode tokens (the GQA-packed launch writes a strided view of the LSE).
    "lse_causal_sinks_bf16": Batch(LENGTHS, dtype="bf16", causal=True, sinks=True,
                                   return_lse=True, options=B16),
    "lse_window_gqa_f32": Batch(LENGTHS, group=3, window=(7, 0), softcap=20.0,
                                return_lse=True),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_varlen_variants(name):
    run(VARIANTS[name])


def test_one_kernel_serves_every_batch():
    """Lengths, batch size and composition are data: once the batch's two
    kernels exist (query blocks of 16 rows; decode tokens, GQA-packed),
    batches of the same structure compile nothing."""
    b = Batch(((4, 9), (0, 3), (1, 6)), causal=True, options={"block_m": 16, "block_n": 16})
    run(b)
    before = attncc.cache_info()["compiled"]
    run(replace(b, lengths=((16, 16), (1, 100), (33, 40), (0, 0), (2, 2)), seed=3))
    run(replace(b, lengths=((5, 5),), seed=4))
    assert attncc.cache_info()["compiled"] == before


def test_decode_gqa_packs_query_heads_and_trims_window():
    """One token per sequence with GQA: the query heads of a KV head form the
    rows of one block (same numbers as the reference), a window trims keys."""
    for window in (None, (5, 0)):
        b = Batch(((1, 30), (1, 1), (0, 4), (1, 77), (1, 0)), kv_heads=2, group=4,
                  causal=True, window=window)
        run(b)


def test_mha_decode_runs_one_row_tiles():
    """MHA decode tokens (G = 1) take the packed decode launch too: their
    kernel's query block is one row, not the general launch's 16."""
    from attncc import ragged
    ragged.clear_cache()
    b = Batch(((1, 30), (1, 1), (0, 4), (1, 77), (1, 0)), kv_heads=4, group=1, causal=True,
              window=(20, 0))
    run(b)
    blocks = [key[11] for key in ragged._KERNELS]
    assert blocks == [1], blocks


def test_alibi_decode_runs_one_row_tiles():
    """Decode tokens with ALiBi stay in the general launch (per-head slopes)
    with one-row query blocks; a prefill chunk in the same call keeps its own
    block size."""
    from attncc import ragged
    ragged.clear_cache()
    b = Batch(((1, 30), (1, 1), (0, 4), (1, 77), (20, 40)), kv_heads=2, group=2, causal=True,
              alibi=True, sinks=True)
    run(b)
    assert sorted(key[11] for key in ragged._KERNELS) == [1, 32]


PROPERTY_SEED = property_seed(20261201)


def test_property_varlen(capsys):
    with capsys.disabled():
        print(f"\ntest_ragged property: seed {PROPERTY_SEED}")

    lengths = st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 60)).map(
            lambda t: (t[0], max(t)) if t[0] % 3 else (t[0], t[0])),   # Lq <= Lk, some Lq = Lk
        min_size=1, max_size=6)

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(15), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(lengths=lengths, seed_=st.integers(0, 2 ** 16),
           window=st.sampled_from([None, (4, 0), (-1, 3), (10, 10)]),
           return_lse=st.booleans())
    def prop(lengths, seed_, window, return_lse):
        b = Batch(tuple(lengths), causal=True, window=window, seed=seed_,
                  return_lse=return_lse, options={"block_m": 16, "block_n": 16})
        run_described(run, b)

    prop()


def _inputs():
    b = Batch(((2, 3), (1, 4)))
    return make(b)[:5]


@pytest.mark.parametrize("mutate, match", [
    (lambda a: {**a, "cu_seqlens_q": a["cu_seqlens_q"].to(torch.int64)}, "int32"),
    (lambda a: {**a, "cu_seqlens_q": torch.tensor([0, 2, 1, 3], dtype=torch.int32)},
     "non-decreasing"),
    (lambda a: {**a, "cu_seqlens_q": torch.tensor([1, 3], dtype=torch.int32)}, r"\[0\] must be 0"),
    (lambda a: {**a, "cu_seqlens_k": torch.tensor([0, 3, 8], dtype=torch.int32)},
     "packed token count"),
    (lambda a: {**a, "cu_seqlens_k": torch.tensor([0, 7], dtype=torch.int32)}, "entries"),
    (lambda a: {**a, "max_seqlen_q": 1}, "longest"),
    (lambda a: {**a, "k": a["k"][:, :, :16]}, "head_dim"),
    (lambda a: {**a, "q": a["q"].double()}, "dtype"),
    (lambda a: {**a, "k": a["k"].half()}, "dtypes differ"),
    (lambda a: {**a, "q": a["q"][:, :3]}, "multiple"),
    (lambda a: {**a, "return_lse": 1}, "return_lse"),
    (lambda a: {**a, "window": (-2, 0)}, "window"),
    (lambda a: {**a, "softcap": 0.0}, "softcap"),
    (lambda a: {**a, "alibi_slopes": torch.ones(3)}, "alibi_slopes"),
    (lambda a: {**a, "alibi_slopes": torch.full((4,), float("inf"))},
     "alibi_slopes has non-finite"),
    (lambda a: {**a, "sinks": torch.full((4,), float("nan"))}, "sinks has non-finite"),
    (lambda a: {**a, "sinks": torch.zeros(4, requires_grad=True)}, "'sinks' requires grad"),
    (lambda a: {**a, "q": a["q"].clone().requires_grad_()}, "'q' requires grad"),
    (lambda a: {**a, "v": a["v"].clone().requires_grad_()}, "'v' requires grad"),
    (lambda a: {**a, "window": (2 ** 64, 0)}, "at most 2"),
    (lambda a: {**a, "target": "sm_80"}, "takes CUDA tensors"),
    (lambda a: {**a, "target": "tpu"}, "unknown target"),
])
def test_bad_inputs(mutate, match):
    q, k, v, cu_q, cu_k = _inputs()
    args = dict(q=q, k=k, v=v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=2,
                max_seqlen_k=4)
    args = mutate(args)
    with pytest.raises(InputError, match=match):
        attncc.varlen_attention(**args)


def test_gpu_lowering_names_what_it_cannot_do():
    # Ragged attention lowers for the GPU (test_gpu_ragged.py); head dim 32
    # does not, and the diagnostic says so.
    g = Graph("ragged_attention")
    q = g.input("q", (None, 4, None, 32), "f16")
    k = g.input("k", (None, 2, None, 32), "f16")
    v = g.input("v", (None, 2, None, 32), "f16")
    w = g.input("work", (None, 7), "i32")
    g.output(g.ragged_attention(q, k, v, w, scale=0.125))
    with pytest.raises(CompileError, match="head dim 32 is not supported on the GPU"):
        compile_graph(g, None, "sm_80", stop_after="gpu")



@pytest.mark.parametrize("kv_in_place", [False, True])
def test_varlen_both_forms(kv_in_place):
    """Packed K/V read through views (kv_in_place, decode and 16-row blocks)
    or copied into tile buffers: both agree with the reference, with a
    window, soft-capping and ALiBi, in f32 and bf16 (D 40: a vector tail)."""
    for i, dtype in enumerate(("f32", "bf16")):
        b = Batch(((1, 1), (1, 50), (9, 40), (0, 3), (16, 16), (3, 200)), kv_heads=2, group=3,
                  head_dim=40, dtype=dtype, causal=True, window=(30, 0), softcap=20.0,
                  alibi=i == 1, seed=20 + i,
                  options={"block_m": 16, "kv_in_place": kv_in_place})
        run(b)
