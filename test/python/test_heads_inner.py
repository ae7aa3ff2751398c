"""Decode on K/V whose heads interleave by row (NHD pages of a static
power-of-two size, packed varlen K/V): attn-tile `heads-inner`, one grid point
per token whose KV heads run in a loop inside the KV loop, so each KV block's
rows of every head are read together (docs/ragged-paged.md). The choice
(ragged_schedule.heads_inner), a spy proving the form ran, the kernel's IR,
and the numerics against the float64 reference (FlashAttention's criterion)
over dtypes, variants, split-KV and page sizes, also property-based."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from attncc import ragged
from attncc.frontend import ragged_schedule
from attncc.options import CompileOptions
from ragged_testing import Batch, decode_schedule, run_described
from test_paged import run as run_paged
from test_ragged import run as run_varlen
from property_budget import property_seed, examples


@pytest.fixture
def launched(monkeypatch):
    """The heads_inner flag of every kernel the calls fetch (ragged._kernel)."""
    seen: list[bool] = []
    real = ragged._kernel

    def spy(*args, **kwargs):
        seen.append(bool(kwargs.get("heads_inner", args[16] if len(args) > 16 else False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(ragged, "_kernel", spy)
    return seen


@pytest.mark.parametrize("kw, inner", [
    (dict(), True),                                     # NHD pages of 16
    (dict(page_size=256), True),
    (dict(paged=False, page_size=4096), True),          # packed varlen K/V
    (dict(interleaved=False), False),                   # HND: a head's page is contiguous
    (dict(page_size=1), False),                         # rows gathered one by one
    (dict(page_size=48), False),                        # not a power of two
    (dict(Hkv=1, G=32), False),                         # nothing to interleave
    (dict(opts=CompileOptions(kv_in_place=False)), False),
])
def test_when_heads_run_inside(kw, inner):
    assert decode_schedule(**kw).heads_inner is inner


def test_gpu_never_runs_heads_inside():
    assert not ragged_schedule.heads_inner(CompileOptions(), 4, 8, True, True, 16, "sm_80")


def test_split_rule_counts_tokens_not_heads():
    """A grid point per token: one sequence on two threads is split (a point
    per (token, KV head) had 8 points, enough to fill them)."""
    one = decode_schedule(batch=1, lk=8192)
    assert one.heads_inner and one.pieces is not None and one.pieces.numel() >= 2
    outer = decode_schedule(batch=1, lk=8192, interleaved=False)
    assert not outer.heads_inner and outer.pieces is None


def test_heads_inside_only_where_they_fill_the_threads():
    """Fewer tokens than threads and too few keys for INNER_MIN_PIECE_BYTES
    pieces: a point per (token, KV head) instead, so no thread idles and
    nothing is merged (B1 KV 1k bf16 D128 page 16: 0.204 -> 0.128 ms,
    docs/ragged-paged.md). Enough tokens, or a split, keep the heads inside."""
    bf16_d128 = 2 * 128 * 2
    for lk in (1024, 4096):
        short = decode_schedule(batch=1, lk=lk, key_bytes=bf16_d128)
        assert not short.heads_inner and short.pieces is None, lk
    assert decode_schedule(batch=2, lk=1024, key_bytes=bf16_d128).heads_inner
    assert decode_schedule(batch=1, lk=1024, threads=1, key_bytes=bf16_d128).heads_inner
    long_ = decode_schedule(batch=1, lk=16384, key_bytes=bf16_d128)
    assert long_.heads_inner and long_.pieces.numel() == 2
    # num_splits=1 forbids the split: heads outside fill the threads.
    assert not decode_schedule(batch=1, lk=16384, key_bytes=bf16_d128,
                               num_splits=1).heads_inner


def test_kernel_keeps_every_heads_state():
    """The tiled IR: a one-dimensional grid, row tiles [Hkv, G, D] for Q and
    the accumulator, [Hkv, G] for max and sum."""
    c, _ = ragged._kernel(torch.bfloat16, 8, 8, 128, 128, True, 0.125, None, None, False,
                          False, 4, CompileOptions(), page=16, heads_inner=True)
    tiled = c.ir("tiled")
    assert "memref<8x4x128xf32>" in tiled and "memref<8x4xf32>" in tiled
    grid = next(line for line in tiled.splitlines() if "scf.parallel" in line)
    assert grid.count("%arg") == 1, grid                 # (work item) only
    outer, _ = ragged._kernel(torch.bfloat16, 8, 8, 128, 128, True, 0.125, None, None, False,
                              False, 4, CompileOptions(), page=16)
    assert "memref<8x4x128xf32>" not in outer.ir("tiled")


DECODE = ((1, 1), (1, 41), (1, 300), (0, 7), (1, 17), (0, 0), (1, 64))

CASES = {
    "nhd16_f32": Batch(DECODE, kv_heads=4, group=2, head_dim=64, page_size=16),
    "nhd32_bf16_gqa8": Batch(DECODE, kv_heads=2, group=8, head_dim=128, dtype="bf16",
                             page_size=32),
    "nhd256_f16_causal": Batch(DECODE, kv_heads=3, group=2, head_dim=64, dtype="f16",
                               page_size=256, causal=True),
    "nhd16_sinks_softcap_lse": Batch(DECODE, kv_heads=2, group=4, head_dim=32, page_size=16,
                                     sinks=True, softcap=10.0, return_lse=True),
    "nhd16_split3_lse": Batch(DECODE, kv_heads=2, group=2, head_dim=32, page_size=16,
                              return_lse=True, options={"num_splits": 3}),
    "nhd64_mha_bf16": Batch(DECODE, kv_heads=4, group=1, head_dim=64, dtype="bf16",
                            page_size=64),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_paged_nhd_decode(name, launched):
    run_paged(CASES[name])          # cu_seqlens_q: sequences without a new token too
    assert launched and all(launched), launched


@pytest.mark.parametrize("name", ["nhd16_f32", "nhd32_bf16_gqa8", "nhd16_sinks_softcap_lse"])
def test_varlen_decode(name, launched):
    # + a token without keys (a varlen batch may have one): zeros.
    run_varlen(replace(CASES[name], lengths=DECODE + ((1, 0),)))
    assert launched and all(launched), launched


def test_one_sequence_on_two_threads(launched):
    """One decode token: split with its heads inside when its keys are enough
    (num_splits forces it here), else a point per KV head (3000 f32 keys of
    2 heads are 6 MiB, under two CPU_MIN_PIECE_BYTES pieces)."""
    b = Batch(((1, 3000),), kv_heads=2, group=4, head_dim=64, page_size=16,
              return_lse=True, options={"num_threads": 2})
    run_paged(b, chunked=False)
    run_paged(replace(b, options={"num_threads": 2, "num_splits": 2}), chunked=False)
    assert launched == [False, True]


def test_hnd_and_gathered_pages_keep_a_point_per_head(launched):
    """HND, and rows gathered one by one: pages of 3, or a window whose first
    key is not page-aligned (the any-page-size kernel)."""
    for b in (Batch(DECODE, kv_heads=2, group=2, page_size=16, layout="HND"),
              Batch(DECODE, kv_heads=2, group=2, page_size=3),
              Batch(DECODE, kv_heads=2, group=2, page_size=16, window=(20, 0))):
        run_paged(b)
    assert launched == [False, False, False]


PROPERTY_SEED = property_seed(20261203)


def test_property_heads_inner(capsys):
    with capsys.disabled():
        print(f"\ntest_heads_inner property: seed {PROPERTY_SEED}")
    lengths = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 700)), min_size=1,
                       max_size=5)

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(12), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(lengths=lengths, page=st.sampled_from([16, 32, 64, 128, 256]),
           kv_heads=st.integers(2, 4), group=st.sampled_from([1, 2, 3, 4]),
           dtype=st.sampled_from(["f32", "f16", "bf16"]),
           window=st.sampled_from([None, (33, 0)]), sinks=st.booleans(),
           softcap=st.sampled_from([None, 7.5]), return_lse=st.booleans(),
           splits=st.sampled_from([None, 1, 2, 5]), paged=st.booleans(),
           seed_=st.integers(0, 2 ** 16))
    def prop(lengths, page, kv_heads, group, dtype, window, sinks, softcap, return_lse,
             splits, paged, seed_):
        b = Batch(tuple((min(lq, lk), lk) for lq, lk in lengths), kv_heads=kv_heads,
                  group=group, head_dim=32, dtype=dtype, causal=True, window=window,
                  sinks=sinks, softcap=softcap, page_size=page, return_lse=return_lse,
                  seed=seed_, options={"num_splits": splits})
        run_described(run_paged if paged else run_varlen, b)

    prop()
