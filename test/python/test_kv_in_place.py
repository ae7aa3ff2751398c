"""attn-tile's kv-in-place form on the CPU (the decode form): K and V are read
where they are stored, Q.K^T as dot products over K's rows and P.V on V's
rows, instead of copying each KV block into packed f32 tile buffers.

Both forms are checked against test_variants' float64 reference with
flash-attn's criterion (error <= 2x the same reference computed in the
inputs' dtype, plus a floor), over the structures of test_split_kv (GQA,
MQA + window + softcap + sinks, ALiBi, causal) and head dims with a vector
tail; the default picks the form from the query block (decode: in place)."""
from __future__ import annotations


import json
import re
from dataclasses import asdict, dataclass, replace

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

import attncc
from attncc.compiler import compile_graph
from attncc.graph import Graph
from attncc.options import KV_IN_PLACE_MAX_ROWS, CompileOptions, OptionError
from attncc.targets import cpu as cpu_target

from test_split_kv import DTYPES, STRUCTURES, Structure, case_of, inputs
from test_variants import FLOOR, reference
from property_budget import property_seed, examples

FLOORS = {**FLOOR, "f16": 1e-3}
CASES = {
    **STRUCTURES,
    # A head dim that leaves a vector tail on every ISA (36 = 4 x 8 + 4), f16.
    "gqa_d36_f16": Structure(kv_heads=2, group=3, head_dim=36, dtype="f16"),
    # GQA 8 (a 8-row packed decode block), bf16, head dim 96.
    "gqa8_d96_bf16": Structure(kv_heads=1, group=8, head_dim=96, dtype="bf16"),
    # GQA 3 and 6: packed groups that are not a power of two (their query
    # tiles are padded to 4 and 8 rows; rows past the group are not stored).
    "gqa3_d64": Structure(kv_heads=2, group=3, head_dim=64, dtype="f32"),
    "gqa6_d128_bf16": Structure(kv_heads=1, group=6, head_dim=128, dtype="bf16"),
    # Head dims below the vector width and not powers of two (dot-product
    # vectors of 12 and 7 lanes; test_head_dims_below_the_vector_width).
    "mha_d12": Structure(kv_heads=2, group=1, head_dim=12, dtype="f32"),
    "gqa2_d7_bf16": Structure(kv_heads=1, group=2, head_dim=7, dtype="bf16"),
}


@dataclass(frozen=True)
class Call:
    structure: str
    batch: int
    lq: int
    lk: int
    in_place: bool
    block_n: int = 16
    seed: int = 0
    cpu: str = "host"

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def check(call: Call, cases: dict = CASES) -> None:
    s = cases[call.structure]
    q, k, v, slopes, sinks = inputs(s, call.batch, call.lq, call.lk, call.seed)
    mask = causal_lower_right(call.lq, call.lk) if s.causal_bottom_right else None
    out = attncc.attention(q, k, v, attn_mask=mask, causal=s.causal, window=s.window,
                           softcap=s.softcap, alibi_slopes=slopes, sinks=sinks,
                           kv_in_place=call.in_place, block_n=call.block_n, num_threads=1,
                           num_splits=1, cpu=call.cpu)
    c = replace(case_of(s, call.batch, call.lq, call.lk), dtype="f32")  # reference only
    ref = reference(c, q, k, v, slopes, sinks)
    assert out.shape == ref.shape and out.dtype == q.dtype, call.describe()
    assert torch.isfinite(out).all(), f"non-finite output: {call.describe()}"
    err = (out.double() - ref).abs().max().item()
    same = reference(c, q, k, v, slopes, sinks, dtype=DTYPES[s.dtype])
    torch_err = (same.double() - ref).abs().max().item()
    bound = 2 * torch_err + FLOORS[s.dtype]
    assert err <= bound, f"error {err:.3g} > 2 x {torch_err:.3g} + {FLOORS[s.dtype]:g}: " \
                         f"{call.describe()}"


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("in_place", [True, False])
def test_forms_match_reference(name, in_place):
    # Decode (Lq = 1), a short chunk against a longer cache, one key, and
    # lengths that are not multiples of the 16-key blocks (the last block's
    # view is shorter than the tile).
    check(Call(name, batch=2, lq=1, lk=75, in_place=in_place))
    check(Call(name, batch=1, lq=5, lk=40, in_place=in_place, seed=1))
    check(Call(name, batch=1, lq=1, lk=1, in_place=in_place, seed=2))


@pytest.mark.parametrize("cpu", ["x86-64-v3", "x86-64-v4"])
@pytest.mark.parametrize("name", ["gqa_plain", "mqa_window_softcap_sinks_bf16",
                                  "causal_bottom_right_alibi", "gqa8_d96_bf16", "gqa3_d64",
                                  "gqa6_d128_bf16"])
def test_dot_product_blocks_of_each_width(cpu, name):
    """The dot products' register blocks and their reductions on 8 and 16
    lanes: 4 rows x 4 keys in one shuffle tree on 16 lanes, 4 x 3 as trees of
    4 x 2 and 4 x 1 on 8 (GQA 3 and 6 in padded 4-row blocks), the trees of
    the 1- and 2-row blocks (MHA, GQA 2) and of
    the key remainders (75 keys: 16-key blocks end in 11 keys, 3 past a
    multiple of 4 and of 2 x 4)."""
    missing = cpu_target.missing_features(cpu_target.ISAS[cpu])
    if missing:
        pytest.skip(f"this host cannot run {cpu} code (lacks {', '.join(missing)})")
    check(Call(name, batch=2, lq=1, lk=75, in_place=True, cpu=cpu))
    check(Call(name, batch=1, lq=3, lk=75, in_place=True, block_n=64, seed=4, cpu=cpu))


@pytest.mark.parametrize("cpu", ["x86-64-v3", "x86-64-v4"])
@pytest.mark.parametrize("head_dim", [1, 3, 5, 6, 7, 9, 12, 15])
def test_head_dims_below_the_vector_width(cpu, head_dim):
    """Head dims below the ISA's vector width make dot-product vectors of
    head_dim lanes; where that is not a power of two the 16-score shuffle tree
    does not apply (it summed the wrong lanes: errors of 0.1-0.7 at head dims
    3, 5-7 and 9-15), so each dot product keeps its own reduction. MHA and a
    2-row GQA decode block, f32 and bf16."""
    missing = cpu_target.missing_features(cpu_target.ISAS[cpu])
    if missing:
        pytest.skip(f"this host cannot run {cpu} code (lacks {', '.join(missing)})")
    cases = {"mha": Structure(kv_heads=2, group=1, head_dim=head_dim, dtype="f32"),
             "gqa": Structure(kv_heads=2, group=2, head_dim=head_dim, dtype="bf16")}
    check(Call("mha", batch=1, lq=5, lk=37, in_place=True, cpu=cpu), cases)
    check(Call("gqa", batch=1, lq=1, lk=37, in_place=True, cpu=cpu, seed=1), cases)


@pytest.mark.parametrize("name", ["causal_bottom_right_alibi", "mqa_window_softcap_sinks_bf16"])
def test_in_place_forced_on_prefill_blocks(name):
    # kv_in_place=True on a 128-row query block (the dot products of several
    # 4-row groups per K row block) and a chunk shorter than the cache.
    check(Call(name, batch=1, lq=70, lk=90, in_place=True, block_n=64, seed=3))


def test_in_place_is_the_decode_default():
    def tiled(query_len, **kw):
        g = Graph("attention")
        q = g.input("q", (None, 8, None, 64), "bf16")
        k = g.input("k", (None, 2, None, 64), "bf16")
        g.output(g.attention(q, k, k))
        opts = CompileOptions(num_threads=1, **kw)
        return compile_graph(g, opts, "cpu", stop_after="tiled", query_len=query_len).ir("tiled")

    # The dot-product Q.K^T on K's rows: f32 FMAs, or `pairs` on the
    # AVX-512-BF16 class (kv-in-place-pairs, test_kv_in_place_pairs.py).
    dots = re.compile(r"transposed (pairs scale \S+ )?into")
    decode = tiled(1)
    assert dots.search(decode) and "attn.copy_tile %arg1" not in decode
    assert CompileOptions().resolved("cpu", 1).block_m == 1
    assert CompileOptions().resolved("cpu", 4).block_m == 4
    prefill = tiled(1024)
    assert not dots.search(prefill) and "attn.copy_tile %arg1" in prefill
    assert CompileOptions().resolved("cpu", KV_IN_PLACE_MAX_ROWS).kv_in_place is True
    assert CompileOptions().resolved("cpu", 2 * KV_IN_PLACE_MAX_ROWS).kv_in_place is False
    # Forced either way.
    assert not dots.search(tiled(1, kv_in_place=False))
    assert dots.search(tiled(1024, kv_in_place=True))


def test_bad_kv_in_place_options():
    with pytest.raises(OptionError, match="kv_in_place must be True, False or None, got 'yes'"):
        CompileOptions(kv_in_place="yes")
    with pytest.raises(OptionError, match="kv_in_place=True is a CPU form"):
        CompileOptions(kv_in_place=True).resolved("gpu", 64)
    with pytest.raises(OptionError, match="block_m must be at least 16 on the GPU targets"):
        CompileOptions(block_m=4).resolved("gpu", 64)
    with pytest.raises(OptionError, match="block_m must be a power of two in \\[1, 256\\], got 3"):
        CompileOptions(block_m=3)


calls = st.builds(
    Call,
    structure=st.sampled_from(list(CASES)),
    batch=st.integers(1, 3),
    lq=st.sampled_from([1, 2, 3, 4]),
    lk=st.integers(1, 150),
    in_place=st.just(True),
    block_n=st.sampled_from([16, 64]),
    seed=st.integers(0, 2 ** 16),
)

PROPERTY_SEED = property_seed(20261201)


def run_property(strategy, seed_value: int, name: str, capsys, cases: dict = CASES) -> None:
    """`check` over `strategy`'s calls; the seed is printed, a failure names its call."""
    with capsys.disabled():
        print(f"\n{name} property: seed {seed_value}")

    @seed(seed_value)
    @settings(max_examples=examples(25), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(call: Call) -> None:
        try:
            check(call, cases)
        except Exception as e:
            raise AssertionError(f"failing configuration: {call.describe()}: {e}") from e

    prop()


def test_property_kv_in_place(capsys):
    run_property(calls, PROPERTY_SEED, "test_kv_in_place", capsys)
