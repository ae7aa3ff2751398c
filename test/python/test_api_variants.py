"""attncc.attention with the score variants of current models: torch's
causal_lower_right / causal_upper_left masks, window=(left, right),
softcap, alibi_slopes and sinks, alone and combined, against a float64
reference written from the definitions (attncc.frontend.variants)."""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

import attncc
from attncc.errors import InputError, InputTypeError

from test_variants import Case
from test_variants import reference as variants_reference

TOL = {torch.float32: 3e-5, torch.bfloat16: 3e-2}


def reference(q, k, v, *, align="top_left", causal=False, window=None, softcap=None,
              slopes=None, sinks=None):
    """The float64 reference of test_variants.py (written from the op's
    definitions), for API-level arguments."""
    B, Hq, L, D = q.shape
    c = Case(batch=B, kv_heads=k.shape[1], group=Hq // k.shape[1], lq=L, lk=k.shape[2],
             head_dim=D, causal=causal, align=align, window=window, softcap=softcap)
    return variants_reference(c, q, k, v, slopes, sinks)


def qkv(B, Hq, Hkv, L, S, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, Hq, L, D, generator=g).to(dtype),
            torch.randn(B, Hkv, S, D, generator=g).to(dtype),
            torch.randn(B, Hkv, S, D, generator=g).to(dtype))


def check(out, ref, dtype):
    err = (out.double() - ref).abs().max().item()
    assert err <= TOL[dtype], f"max error {err:.2e} > {TOL[dtype]:.0e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("L, S", [(1, 77), (5, 40), (64, 64), (33, 100)])
def test_torch_causal_bias_objects(dtype, L, S):
    q, k, v = qkv(2, 8, 2, L, S, 64, dtype)
    check(attncc.attention(q, k, v, attn_mask=causal_lower_right(L, S)),
          reference(q, k, v, causal=True, align="bottom_right"), dtype)
    check(attncc.attention(q, k, v, attn_mask=causal_upper_left(L, S)),
          reference(q, k, v, causal=True), dtype)


@pytest.mark.parametrize("window, causal", [((16, 0), False), ((8, 8), False), ((-1, 3), False),
                                            ((10, -1), False), ((20, 5), True)])
@pytest.mark.parametrize("L, S", [(1, 90), (24, 70), (48, 48)])
def test_window_flash_attn_semantics(window, causal, L, S):
    q, k, v = qkv(1, 4, 4, L, S, 32, torch.float32, seed=L)
    right = 0 if causal else window[1]
    check(attncc.attention(q, k, v, window=window, causal=causal),
          reference(q, k, v, align="bottom_right", causal=causal, window=(window[0], right)),
          torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softcap_alibi_sinks_each_and_combined(dtype):
    B, Hq, Hkv, L, S, D = 2, 8, 2, 7, 53, 64
    q, k, v = qkv(B, Hq, Hkv, L, S, D, dtype, seed=3)
    g = torch.Generator().manual_seed(4)
    slopes = torch.rand(Hq, generator=g) * 0.5
    sinks = torch.randn(Hq, generator=g)
    check(attncc.attention(q, k, v, softcap=5.0), reference(q, k, v, softcap=5.0), dtype)
    check(attncc.attention(q, k, v, alibi_slopes=slopes), reference(q, k, v, slopes=slopes),
          dtype)
    check(attncc.attention(q, k, v, sinks=sinks.to(dtype)),
          reference(q, k, v, sinks=sinks.to(dtype).float()), dtype)
    check(attncc.attention(q, k, v, window=(16, 0), softcap=20.0, sinks=sinks,
                           attn_mask=causal_lower_right(L, S)),
          reference(q, k, v, align="bottom_right", causal=True, window=(16, 0), softcap=20.0,
                    sinks=sinks), dtype)


def test_decode_loop_with_variants_compiles_once():
    """A generate-style loop (bottom-right causal, window, softcap, sinks)
    compiles nothing after its first decode step."""
    Hq, Hkv, D = 4, 2, 32
    sinks = torch.randn(Hq)
    kw = dict(window=(31, 0), softcap=30.0, sinks=sinks)
    q, k, v = qkv(1, Hq, Hkv, 20, 20, D, torch.float32, seed=9)
    attncc.attention(q, k, v, attn_mask=causal_lower_right(20, 20), **kw)
    compiled = None
    for S in range(21, 41):
        q, k, v = qkv(1, Hq, Hkv, 1, S, D, torch.float32, seed=S)
        out = attncc.attention(q, k, v, attn_mask=causal_lower_right(1, S), **kw)
        check(out, reference(q, k, v, align="bottom_right", causal=True, window=(31, 0),
                             softcap=30.0, sinks=sinks), torch.float32)
        if compiled is None:
            compiled = attncc.cache_info()["compiled"]
    assert attncc.cache_info()["compiled"] == compiled


@pytest.mark.parametrize("L, S", [(6, 10), (10, 6), (1, 5)])
def test_no_window_leaves_causal_top_left(L, S):
    # (-1, -1) is flash-attn's "no window": with causal=True the mask stays
    # torch's top-left one, as with window=None (it was aligned bottom-right).
    q, k, v = qkv(1, 2, 2, L, S, 32, torch.float32, seed=S)
    out = attncc.attention(q, k, v, causal=True, window=(-1, -1))
    check(out, reference(q, k, v, causal=True), torch.float32)
    assert torch.equal(out, attncc.attention(q, k, v, causal=True))


def test_no_keys_give_zeros_and_the_sinks_lse():
    # Without keys the softmax has the sink alone: zero rows, LSE = the sink,
    # as for rows a mask leaves without keys and for varlen's empty sequences.
    q = torch.randn(2, 3, 4, 16)
    k = torch.randn(2, 3, 0, 16)
    sinks = torch.tensor([0.5, -1.0, 2.0])
    out, lse = attncc.attention(q, k, k, sinks=sinks, return_lse=True)
    assert torch.equal(out, torch.zeros(2, 3, 4, 16))
    assert torch.equal(lse, sinks.view(1, 3, 1).expand(2, 3, 4))
    _, lse = attncc.attention(q, k, k, return_lse=True)
    assert bool((lse == float("-inf")).all()) and lse.shape == (2, 3, 4)


def test_fully_masked_rows_are_zeros():
    q, k, v = qkv(1, 2, 2, 8, 4, 16, torch.float32)
    out = attncc.attention(q, k, v, attn_mask=causal_lower_right(8, 4), sinks=torch.zeros(2))
    assert torch.all(out[:, :, :4] == 0)
    check(out, reference(q, k, v, align="bottom_right", causal=True, sinks=torch.zeros(2)),
          torch.float32)


@pytest.mark.parametrize("kw, err, match", [
    (dict(softcap=-1.0), InputError, "softcap must be a positive"),
    (dict(softcap=float("inf")), InputError, "softcap"),
    (dict(alibi_slopes=torch.ones(3)), InputError, r"alibi_slopes must have shape \[4\]"),
    (dict(alibi_slopes=[1.0] * 4), InputTypeError, "alibi_slopes must be a torch.Tensor"),
    (dict(sinks=torch.ones(4, dtype=torch.int32)), InputError, "sinks must be a float tensor"),
    (dict(sinks=torch.full((4,), float("nan"))), InputError, "sinks has non-finite"),
    (dict(window=(4,)), InputTypeError, "window must be a"),
    (dict(window=(-2, 0)), InputError, "window sides must be >= -1"),
    (dict(window=(2 ** 64, 0)), InputError, r"window sides must be at most 2\*\*62"),
    (dict(attn_mask=causal_lower_right(3, 9)), InputError, "causal bias for"),
    (dict(attn_mask=causal_lower_right(5, 9), causal=True), InputError, "not both"),
])
def test_bad_variant_arguments_name_the_argument(kw, err, match):
    q, k, v = qkv(1, 4, 2, 5, 9, 16, torch.float32)
    with pytest.raises(err, match=match):
        attncc.attention(q, k, v, **kw)


def test_gpu_targets_lower_the_variants():
    """The GPU lowering implements the variants (numerics in the emulator:
    test_gpu_variants.py): the soft-cap is in the sm_80 kernel, not dropped."""
    from attncc import Graph
    from attncc.compiler import compile_graph

    g = Graph("attention")
    q = g.input("q", (1, 4, 64, 64), "f16")
    k = g.input("k", (1, 4, 64, 64), "f16")
    v = g.input("v", (1, 4, 64, 64), "f16")
    g.output(g.attention(q, k, v, softcap=30.0))
    gpu = compile_graph(g, target="sm_80", stop_after="gpu").ir("gpu")
    assert gpu.count('"llvm.nvvm.rcp.approx.ftz.f"') == 32   # one per score of a lane's 16x64 tile
