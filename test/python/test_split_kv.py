"""Split-KV (flash decoding) and return_lse of attncc.attention on the CPU
(issue 11 item 3), against the float64 reference of test_variants.py.

Criterion (flash-attn's): attncc's error <= 2x the error of the same
reference computed in the inputs' dtype, plus a floor; the LSE against a
float64 logsumexp of the same scores (sink column included). Kernels are few
and reused: the structures below are fixed, and batch, lengths and the split
count (all run-time values of one kernel) vary."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Optional

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

import attncc
from attncc.errors import CompileError, InputTypeError
from attncc.frontend import split_kv
from attncc.options import OptionError

from test_variants import FLOOR, Case, masked_scores, reference
from property_budget import property_seed, examples

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
# Small blocks so that short test lengths still give several query blocks and
# KV blocks to split; one thread: the kernels compile fastest serial.
OPTS = dict(block_m=16, block_n=16, num_threads=1)


@dataclass(frozen=True)
class Structure:
    """What a kernel is compiled for (the API's cache key, lengths apart)."""

    kv_heads: int
    group: int
    head_dim: int
    dtype: str
    causal_bottom_right: bool = False   # torch's causal_lower_right(L, S)
    causal: bool = False                # is_causal (top-left)
    window: Optional[tuple] = None      # flash-attn window_size, bottom-right
    softcap: Optional[float] = None
    alibi: bool = False
    sinks: bool = False


STRUCTURES = {
    # GQA without a mask: heads of a KV head packed into one query block.
    "gqa_plain": Structure(kv_heads=2, group=2, head_dim=64, dtype="f32"),
    # window + softcap + sinks + MQA, bf16: one query head per grid point.
    "mqa_window_softcap_sinks_bf16": Structure(kv_heads=1, group=4, head_dim=128, dtype="bf16",
                                               window=(20, 0), softcap=15.0, sinks=True),
    "causal_bottom_right_alibi": Structure(kv_heads=2, group=1, head_dim=32, dtype="f32",
                                           causal_bottom_right=True, alibi=True),
    "causal_top_left_gqa": Structure(kv_heads=1, group=2, head_dim=64, dtype="f32",
                                     causal=True),
}


@dataclass(frozen=True)
class Call:
    structure: str
    batch: int
    lq: int
    lk: int
    num_splits: int
    seed: int = 0

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def case_of(s: Structure, batch: int, lq: int, lk: int) -> Case:
    """test_variants' Case (its reference's conventions) for an API call."""
    align = "bottom_right" if (s.causal_bottom_right or s.window) else "top_left"
    return Case(batch=batch, kv_heads=s.kv_heads, group=s.group, lq=lq, lk=lk,
                head_dim=s.head_dim, dtype=s.dtype, causal=s.causal or s.causal_bottom_right,
                align=align, window=s.window, softcap=s.softcap, alibi=s.alibi, sinks=s.sinks)


def inputs(s: Structure, batch: int, lq: int, lk: int, seed_: int):
    g = torch.Generator().manual_seed(seed_)
    dt = DTYPES[s.dtype]
    hq = s.kv_heads * s.group
    q = torch.randn(batch, hq, lq, s.head_dim, generator=g).to(dt)
    k = torch.randn(batch, s.kv_heads, lk, s.head_dim, generator=g).to(dt)
    v = torch.randn(batch, s.kv_heads, lk, s.head_dim, generator=g).to(dt)
    slopes = torch.rand(hq, generator=g) * 0.5 if s.alibi else None
    sinks = torch.randn(hq, generator=g) * 2 if s.sinks else None
    return q, k, v, slopes, sinks


def run(s: Structure, q, k, v, slopes, sinks, **kw):
    mask = causal_lower_right(q.shape[2], k.shape[2]) if s.causal_bottom_right else None
    return attncc.attention(q, k, v, attn_mask=mask, causal=s.causal, window=s.window,
                            softcap=s.softcap, alibi_slopes=slopes, sinks=sinks, **OPTS, **kw)


def lse_reference(c: Case, q, k, slopes, sinks) -> torch.Tensor:
    s = masked_scores(c, q, k, slopes)
    if sinks is not None:
        s = torch.cat([s, sinks.double()[None, :, None, None].expand(*s.shape[:3], 1)], -1)
    return torch.logsumexp(s, -1)


def check(call: Call, return_lse: bool = True) -> None:
    s = STRUCTURES[call.structure]
    q, k, v, slopes, sinks = inputs(s, call.batch, call.lq, call.lk, call.seed)
    got = run(s, q, k, v, slopes, sinks, num_splits=call.num_splits, return_lse=return_lse)
    out, lse = got if return_lse else (got, None)
    c = case_of(s, call.batch, call.lq, call.lk)
    ref = reference(c, q, k, v, slopes, sinks)
    assert out.shape == ref.shape and out.dtype == q.dtype, call.describe()
    assert torch.isfinite(out).all(), f"non-finite output: {call.describe()}"
    err = (out.double() - ref).abs().max().item()
    same = reference(c, q, k, v, slopes, sinks, dtype=DTYPES[s.dtype])
    torch_err = (same.double() - ref).abs().max().item()
    bound = 2 * torch_err + FLOOR[s.dtype]
    assert err <= bound, f"error {err:.3g} > 2 x {torch_err:.3g} + {FLOOR[s.dtype]:g}: " \
                         f"{call.describe()}"
    if lse is None:
        return
    lref = lse_reference(c, q, k, slopes, sinks)
    assert lse.shape == lref.shape and lse.dtype == torch.float32, call.describe()
    # Rows no key reaches: -inf in both; elsewhere f32 accuracy (scores in f32).
    assert torch.equal(torch.isneginf(lse), torch.isneginf(lref)), call.describe()
    finite = torch.isfinite(lref)
    lerr = (lse.double()[finite] - lref[finite]).abs()
    tol = 2e-4 + 1e-5 * lref[finite].abs()
    assert (lerr <= tol).all(), f"lse error {lerr.max().item():.3g}: {call.describe()}"


# -- examples -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("num_splits", [1, 3])
def test_structures(name, num_splits):
    # Lq = 1 (decode) and Lq = 21 (two query blocks, not a multiple of 16),
    # Lk not a multiple of the 16-key blocks.
    check(Call(name, batch=2, lq=1, lk=75, num_splits=num_splits))
    check(Call(name, batch=1, lq=21, lk=50, num_splits=num_splits, seed=1))


def test_more_splits_than_blocks_and_single_key():
    # 8 splits of 2 KV blocks: most splits see no key (weight 0 in the combine).
    check(Call("gqa_plain", batch=1, lq=1, lk=20, num_splits=8))
    check(Call("causal_bottom_right_alibi", batch=3, lq=1, lk=1, num_splits=8))
    check(Call("mqa_window_softcap_sinks_bf16", batch=1, lq=1, lk=1, num_splits=5))


def test_split_output_without_lse_matches():
    check(Call("causal_top_left_gqa", batch=2, lq=9, lk=40, num_splits=4), return_lse=False)
    check(Call("mqa_window_softcap_sinks_bf16", batch=1, lq=3, lk=90, num_splits=2),
          return_lse=False)


def test_fully_masked_rows_give_zeros_and_neg_inf_lse():
    # Bottom-right causal with Lq > Lk: rows i < Lq - Lk see no key.
    s = STRUCTURES["causal_bottom_right_alibi"]
    q, k, v, slopes, _ = inputs(s, 1, 20, 12, 3)
    for num_splits in (1, 3):
        out, lse = run(s, q, k, v, slopes, None, num_splits=num_splits, return_lse=True)
        assert torch.equal(out[:, :, :8], torch.zeros_like(out[:, :, :8]))
        assert torch.isneginf(lse[:, :, :8]).all() and torch.isfinite(lse[:, :, 8:]).all()
        assert torch.isfinite(out).all()
    # No keys at all.
    out, lse = attncc.attention(q, k[:, :, :0], v[:, :, :0], return_lse=True)
    assert torch.equal(out, torch.zeros_like(out)) and torch.isneginf(lse).all()


def test_sinks_with_fully_masked_rows_and_splits():
    # Sinks and a window that leaves rows without keys: the sink alone is the
    # denominator (output 0, lse = sink), in the combine as without splits.
    s = STRUCTURES["mqa_window_softcap_sinks_bf16"]
    q, k, v, _, sinks = inputs(s, 1, 30, 10, 4)   # Lq > Lk: first 20 rows see no key
    for num_splits in (1, 4):
        out, lse = run(s, q, k, v, None, sinks, num_splits=num_splits, return_lse=True)
        assert torch.equal(out[:, :, :20], torch.zeros_like(out[:, :, :20]))
        torch.testing.assert_close(lse[0, :, :20], sinks[:, None].expand(-1, 20).float(),
                                   atol=1e-5, rtol=1e-5)


# -- property test ----------------------------------------------------------------------

calls = st.builds(
    Call,
    structure=st.sampled_from(list(STRUCTURES)),
    batch=st.integers(1, 3),
    lq=st.sampled_from([1, 2, 7, 16, 17, 33]),
    lk=st.integers(1, 130),
    num_splits=st.integers(1, 8),
    seed=st.integers(0, 2 ** 16),
)

PROPERTY_SEED = property_seed(20261130)


def test_property_split_kv(capsys):
    with capsys.disabled():
        print(f"\ntest_split_kv property: seed {PROPERTY_SEED}")

    @seed(PROPERTY_SEED)
    @settings(max_examples=examples(30), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(calls)
    def prop(call: Call) -> None:
        if call.lq > call.lk:
            call = Call(**{**asdict(call), "lq": call.lk})    # Lq <= Lk (KV-cache shapes)
        try:
            check(call)
        except Exception as e:
            raise AssertionError(f"failing configuration: {call.describe()}: {e}") from e

    prop()


# -- the decode loop: one kernel ------------------------------------------------------

def test_decode_loop_compiles_once_while_the_split_count_changes():
    """A decode loop over a growing KV cache (B=1, 8 query heads on 1 KV head,
    two threads: the heuristic picks the split form, its split count grows
    with S) compiles its kernel at the first step and nothing after."""
    B, Hq, Hkv, D = 1, 8, 1, 64
    g = torch.Generator().manual_seed(7)
    k_all = torch.randn(B, Hkv, 1200, D, generator=g)
    v_all = torch.randn(B, Hkv, 1200, D, generator=g)
    lengths = [5, 64, 300, 700, 1200]
    # After GQA packing (a 1-row bottom-right causal mask hides nothing): 1
    # head of 8 rows, 16-row query blocks, 64-key blocks.
    splits = {split_kv.plan("cpu", "cpu", 2, 16, 64, B, Hkv, Hq // Hkv, S, D, None).splits
              for S in lengths}
    assert len(splits) > 1, splits      # the run-time split count does change
    compiled = None
    for step, S in enumerate(lengths):
        q = torch.randn(B, Hq, 1, D, generator=g)
        k, v = k_all[:, :, :S], v_all[:, :, :S]
        out, lse = attncc.attention(q, k, v, attn_mask=causal_lower_right(1, S),
                                    return_lse=True, num_threads=2)
        if step == 0:
            compiled = attncc.cache_info()["compiled"]
        else:
            assert attncc.cache_info()["compiled"] == compiled, f"recompiled at S={S}"
        c = Case(batch=B, kv_heads=Hkv, group=Hq // Hkv, lq=1, lk=S, head_dim=D, causal=True,
                 align="bottom_right")
        assert (out.double() - reference(c, q, k, v, None, None)).abs().max() < 1e-5
        assert (lse.double() - lse_reference(c, q, k, None, None)).abs().max() < 2e-4


# -- bad input ----------------------------------------------------------------------------

def test_bad_arguments_are_named():
    q = torch.randn(1, 2, 1, 16)
    for bad in (0, -1, 257, 2.0, True, "4"):
        with pytest.raises(OptionError, match="num_splits"):
            attncc.attention(q, q, q, num_splits=bad)
    with pytest.raises(InputTypeError, match="return_lse"):
        attncc.attention(q, q, q, return_lse=1)


def test_gpu_lowering_takes_the_split_and_lse_forms():
    from attncc.compiler import compile_graph
    from attncc.graph import Graph
    from attncc.options import CompileOptions

    g = Graph("attention")
    q = g.input("q", (1, 2, 64, 64), "f16")
    k = g.input("k", (1, 2, None, 64), "f16")
    g.output(g.attention(q, k, k))
    # test_gpu_lse.py and test_gpu_split_kv.py run them in the GPU emulator.
    ir = compile_graph(g, CompileOptions(), "sm_80", stop_after="gpu", lse=True).ir("gpu")
    assert "llvm.nvvm.lg2.approx.ftz.f" in ir and ir.count("gpu.launch_func") == 1
    ir = compile_graph(g, CompileOptions(), "sm_80", stop_after="gpu", split_kv=True).ir("gpu")
    assert ir.count("gpu.launch_func") == 2 and "gpu.func @attention_combine" in ir


def test_split_heuristic_fills_the_threads_and_no_more():
    """P from the shapes (CPU decode bucket: 16-row query blocks, 64-key
    blocks, D 128): no split where the grid already deals out evenly over the
    threads or the work is one thread's; otherwise the fewest splits that
    make it even, bounded by the KV length."""
    def splits(threads, B, H, S):
        p = split_kv.plan("cpu", "cpu", threads, 16, 64, B, H, 4, S, 128, None)
        assert p.split_kernel and 1 <= p.team <= threads
        return p.splits, p.team
    assert splits(2, 1, 2, 4096) == (1, 2)     # 2 KV heads on 2 threads
    assert splits(2, 1, 8, 4096) == (1, 2)
    assert splits(2, 1, 1, 4096) == (2, 2)     # MQA: one head, split in two
    assert splits(2, 1, 3, 4096) == (2, 2)     # 3 points -> 6
    assert splits(16, 1, 8, 1 << 16) == (2, 16)
    assert splits(2, 1, 1, 64) == (1, 1)       # one KV block: nothing to split
    assert splits(2, 1, 1, 300)[0] == 1        # by length: 5 blocks < 2 * 4
    assert splits(1, 1, 1, 1 << 16) == (1, 1)  # one thread
    # Forced counts are kept whatever the heuristic would say.
    assert split_kv.plan("cpu", "cpu", 2, 16, 64, 1, 2, 4, 4096, 128, 3).splits == 3


def test_gpu_split_heuristic_fills_the_sms():
    """On the GPU (`threads` = SMs; 64 x 64 blocks): one query block (decode,
    GQA-packed heads) takes the split form whatever B and S are, with about
    two blocks per SM, bounded by the KV length; longer queries never split."""
    def plan(sms, B, H, L, S, forced=None):
        return split_kv.plan("cuda", "cuda", sms, 64, 64, B, H, L, S, 128, forced)
    assert plan(132, 1, 8, 4, 32768) == split_kv.Plan(True, 33, 1)   # 8 blocks -> 264
    assert plan(132, 8, 8, 4, 4096) == split_kv.Plan(True, 5, 1)     # 64 blocks -> 320
    assert plan(132, 1, 8, 4, 512).splits == 2                        # 8 KV blocks: 2 splits
    assert plan(132, 1, 8, 1, 100) == split_kv.Plan(True, 1, 1)       # too short: P = 1
    assert plan(132, 64, 32, 1, 4096).splits == 1                      # the grid fills the SMs
    assert plan(132, 1, 8, 65, 32768) == split_kv.Plan(False, 1, 1)  # two query blocks
    assert plan(132, 1, 8, 4, 32768, forced=3) == split_kv.Plan(True, 3, 1)
    # The split kernel's grid z (splits x B) stays within CUDA's 65535.
    with pytest.raises(OptionError, match="65535"):
        plan(132, 512, 1, 1, 4096, forced=256)
    assert plan(132, 512, 1, 1, 4096, forced=1) == split_kv.Plan(False, 1, 1)


def test_workspaces_reused_only_where_the_caller_keeps_none():
    q = torch.randn(1, 2, 4, 32)
    a = split_kv.workspaces(q, 32, 2, True, reuse=True)
    b = split_kv.workspaces(q, 32, 2, True, reuse=True)
    assert all(x is y for x, y in zip(a, b))            # the thread's pool
    c = split_kv.workspaces(q, 32, 2, True)
    assert not any(x is y for x, y in zip(a, c))        # fresh: the caller keeps lse
    # A returned lse is never a pooled buffer a later call overwrites.
    g = torch.Generator().manual_seed(5)
    qq, kk, vv = (torch.randn(1, 8, 1, 64, generator=g), torch.randn(1, 2, 300, 64, generator=g),
                  torch.randn(1, 2, 300, 64, generator=g))
    _, lse1 = attncc.attention(qq, kk, vv, return_lse=True)
    keep = lse1.clone()
    attncc.attention(qq * 2, kk, vv)
    attncc.attention(qq * 3, kk, vv, return_lse=True)
    assert torch.equal(lse1, keep)
