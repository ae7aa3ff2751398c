"""One kernel for every length (issue 11): attncc.attention and
attncc.compile(dynamic=True) compile per structure, not per batch size or
sequence length; attncc.cache_info() counts what was compiled; dynamic
kernels lower for the GPU with grids computed from the call's shapes."""
import math

import pytest
import torch
import torch.nn.functional as F

import attncc
from attncc.compiler import compile_graph
from attncc.errors import InputError
from attncc.frontend.dynamic import bias_shape, qkv_shape
from attncc.options import CompileOptions
from attncc.runtime.grid import eval_expr
from attncc.targets import gpu as agpu

TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def _ref(q, k, v, **kw):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True,
                                          **kw)


def _err(out, ref):
    return (out.double() - ref).abs().max().item()


def test_dynamic_shapes_keep_heads_head_dims_and_broadcast_dims():
    assert qkv_shape((2, 8, 100, 64)) == (None, 8, None, 64)
    assert bias_shape((1, 1, 100, 300), 2, 8, 100, 300) == (1, 1, None, None)
    assert bias_shape((2, 1, 1, 300), 2, 8, 1, 300) == (None, 1, 1, None)
    assert bias_shape((2, 8, 100, 300), 2, 8, 100, 300) == (None, 8, None, None)
    assert bias_shape((100, 300), 2, 8, 100, 300) == (None, None)


def test_query_block_is_a_bucket_of_the_query_length():
    o = CompileOptions()
    assert [o.query_block("cpu", n) for n in (1, 3, 4, 16, 17, 100, 256, 5000)] == \
        [1, 4, 4, 16, 32, 128, 256, 256]
    assert o.query_block("cpu", None) == 256
    assert o.query_block("sm_80", 1) == o.query_block("sm_80", 4096) == 64
    assert CompileOptions(block_m=32).query_block("cpu", 1000) == 32
    for n in (1, 17, 300):   # resolved (the one place defaults live) agrees
        assert o.resolved("cpu", n).block_m == o.query_block("cpu", n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_generate_loop_compiles_nothing_after_its_first_decode_step(dtype):
    """A 100-step generate loop (GQA Hq8/Hkv2, D64): prefill, then Lq=1 with
    the KV length growing by one; causal (SDPA's top-left causal) and, as a
    real decode step attends to every key, no mask."""
    torch.manual_seed(0)
    Hq, Hkv, D, P = 8, 2, 64, 37
    k = torch.randn(1, Hkv, P, D, dtype=dtype)
    v = torch.randn(1, Hkv, P, D, dtype=dtype)
    q = torch.randn(1, Hq, P, D, dtype=dtype)
    assert _err(attncc.attention(q, k, v, causal=True), _ref(q, k, v, is_causal=True)) \
        < TOL[dtype]
    compiled_after_first_step = None
    for step in range(100):
        k = torch.cat([k, torch.randn(1, Hkv, 1, D, dtype=dtype)], dim=2)
        v = torch.cat([v, torch.randn(1, Hkv, 1, D, dtype=dtype)], dim=2)
        q = torch.randn(1, Hq, 1, D, dtype=dtype)
        for causal in (True, False):
            out = attncc.attention(q, k, v, causal=causal)
            assert out.shape == (1, Hq, 1, D) and out.dtype == dtype
            assert _err(out, _ref(q, k, v, is_causal=causal)) < TOL[dtype], (step, causal)
        if step == 0:
            compiled_after_first_step = attncc.cache_info()["compiled"]
        else:
            assert attncc.cache_info()["compiled"] == compiled_after_first_step, step


def test_batch_and_lengths_share_a_kernel_per_bucket():
    torch.manual_seed(1)
    attncc.attention(torch.randn(1, 4, 40, 32), torch.randn(1, 4, 50, 32),
                     torch.randn(1, 4, 50, 32))
    before = attncc.cache_info()
    for B, L, S in [(2, 33, 7), (3, 64, 200), (1, 50, 1)]:   # bucket 64, other B and S
        q, k, v = torch.randn(B, 4, L, 32), torch.randn(B, 4, S, 32), torch.randn(B, 4, S, 32)
        assert _err(attncc.attention(q, k, v), _ref(q, k, v)) < 2e-5
    after = attncc.cache_info()
    assert after["compiled"] == before["compiled"]
    assert after["hits"] == before["hits"] + 3
    assert set(after) >= {"compiled", "compiled_by_target", "hits", "memory_hits", "disk_hits"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gqa_query_heads_share_one_query_block_without_a_mask(dtype):
    """GQA without a mask runs as Hkv heads of group * L rows: the kernel of
    [B, Hq, L, D] x [B, Hkv, S, D] is the one of [B, Hkv, group * L, D], so
    calling that shape afterwards compiles nothing, and decode (L = 1) gives
    the float64 reference."""
    torch.manual_seed(2)
    B, Hq, Hkv, S, D = 2, 8, 2, 37, 64
    for L in (1, 3):
        q = torch.randn(B, Hq, L, D).to(dtype)
        k, v = torch.randn(B, Hkv, S, D).to(dtype), torch.randn(B, Hkv, S, D).to(dtype)
        ref = _ref(q, k, v)
        own = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        assert _err(attncc.attention(q, k, v), ref) <= 2 * _err(own, ref) + TOL[dtype] / 10
        before = attncc.cache_info()["compiled"]
        packed = q.reshape(B, Hkv, (Hq // Hkv) * L, D)
        attncc.attention(packed, k, v, scale=D ** -0.5)
        assert attncc.cache_info()["compiled"] == before
    # A causal mask depends on the row's position: no packing, still exact.
    q = torch.randn(B, Hq, 5, D)
    k, v = torch.randn(B, Hkv, 5, D), torch.randn(B, Hkv, 5, D)
    assert _err(attncc.attention(q, k, v, causal=True), _ref(q, k, v, is_causal=True)) < 2e-5


def test_bias_lengths_are_dynamic_and_broadcast_dims_stay():
    """A key-padding bias [B, 1, 1, S] and a full [1, 1, L, S] bias: other
    lengths reuse the kernel; numerics at each."""
    torch.manual_seed(2)
    for shape_of in (lambda B, L, S: (B, 1, 1, S), lambda B, L, S: (1, 1, L, S)):
        counts = []
        for B, L, S in [(2, 20, 30), (2, 25, 41), (3, 31, 90)]:
            q = torch.randn(B, 4, L, 32)
            k, v = torch.randn(B, 2, S, 32), torch.randn(B, 2, S, 32)
            bias = torch.randn(shape_of(B, L, S))
            out = attncc.attention(q, k, v, attn_mask=bias)
            assert _err(out, _ref(q, k, v, attn_mask=bias.double())) < 2e-5
            counts.append(attncc.cache_info()["compiled"])
        assert counts[1] == counts[2] == counts[0], counts


def test_clear_caches_still_empties_the_attention_cache():
    q = torch.randn(1, 2, 8, 16)
    attncc.attention(q, q, q)
    assert attncc.cache_info()["attention_kernels"] >= 1
    attncc.clear_caches()
    assert attncc.cache_info()["attention_kernels"] == 0
    attncc.attention(q, q, q)   # the kernel cache of compile_graph answers now
    assert attncc.cache_info()["memory_hits"] >= 1


def test_bad_inputs_name_the_argument():
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(InputError, match="k and v have different sequence lengths"):
        attncc.attention(q, torch.randn(1, 2, 9, 16), torch.randn(1, 2, 10, 16))
    with pytest.raises(InputError, match="^k must have shape"):
        attncc.attention(q, torch.randn(2, 9, 16), torch.randn(1, 2, 9, 16))
    with pytest.raises(InputError, match="^v must have shape"):
        attncc.attention(q, torch.randn(1, 2, 9, 16), torch.randn(1, 1, 2, 9, 16))


def _causal_gqa(q, k, v):
    s = q @ k.repeat_interleave(4, dim=1).transpose(-2, -1) / math.sqrt(q.size(-1))
    L, S = s.shape[-2:]
    s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.repeat_interleave(4, dim=1)


def test_compile_dynamic_compiles_once_for_five_lengths():
    torch.manual_seed(3)
    fn = attncc.compile(_causal_gqa, dynamic=True)
    before = attncc.cache_info()["compiled"]
    for L in (33, 40, 47, 55, 64):    # one query-length bucket
        q = torch.randn(2, 8, L, 64)
        k, v = torch.randn(2, 2, L, 64), torch.randn(2, 2, L, 64)
        assert _err(fn(q, k, v), _ref(q, k, v, is_causal=True)) < 2e-5
    assert attncc.cache_info()["compiled"] == before + 1
    graph = fn.lower(q, k, v).ir("graph")
    assert "tensor<?x8x?x64xf32>" in graph and "mask causal" in graph


def test_compile_static_is_the_default_and_compiles_per_shape():
    fn = attncc.compile(_causal_gqa)
    assert fn.dynamic is False and attncc.compile(_causal_gqa, dynamic=None).dynamic is False
    before = attncc.cache_info()["compiled"]
    for L in (9, 10):
        q, k = torch.randn(1, 8, L, 16), torch.randn(1, 2, L, 16)
        assert _err(fn(q, k, k), _ref(q, k, k, is_causal=True)) < 2e-5
    assert attncc.cache_info()["compiled"] == before + 2
    assert "tensor<1x8x10x16xf32>" in fn.lower(q, k, k).ir("graph")
    with pytest.raises(attncc.InputTypeError, match="dynamic"):
        attncc.compile(_causal_gqa, dynamic="yes")


def test_compile_dynamic_with_a_shape_dependent_bias():
    """A bias computed from the shapes (ALiBi-like) is rebuilt per call."""
    def alibi(q, k, v):
        L, S = q.shape[2], k.shape[2]
        pos = torch.arange(S)[None, :] - torch.arange(L)[:, None]
        s = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5 + 0.1 * pos.float()
        return torch.softmax(s, -1) @ v

    torch.manual_seed(4)
    fn = attncc.compile(alibi, dynamic=True)
    before = attncc.cache_info()["compiled"]
    for L, S in [(20, 30), (24, 50)]:
        q, k, v = torch.randn(1, 2, L, 16), torch.randn(1, 2, S, 16), torch.randn(1, 2, S, 16)
        assert _err(fn(q, k, v), _ref(q, k, v, attn_mask=alibi_bias(L, S))) < 2e-5
    assert attncc.cache_info()["compiled"] == before + 1


def alibi_bias(L, S):
    pos = torch.arange(S)[None, :] - torch.arange(L)[:, None]
    return 0.1 * pos.double()


# -- GPU ------------------------------------------------------------------------------------

needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None, reason="ptxas not installed")


@needs_ptxas
@pytest.mark.parametrize("chip", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("bias", [False, True], ids=["causal", "bias"])
def test_dynamic_kernel_grid_follows_the_arguments_and_assembles(chip, bias, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path))
    g = attncc.Graph()
    q = g.input("q", (None, 8, None, 64), "f16")
    k = g.input("k", (None, 2, None, 64), "f16")
    v = g.input("v", (None, 2, None, 64), "f16")
    b = g.input("mask", (1, 1, None, None), "f32") if bias else None
    g.output(g.attention(q, k, v, mask="none" if bias else "causal", bias=b))
    c = compile_graph(g, CompileOptions(), chip, stop_after="cubin")
    md = c.metadata
    assert c.cubin, c.ir("cubin")
    assert md["spill_store_bytes"] == 0 and md["spill_load_bytes"] == 0, c.ir("cubin")
    if chip == "sm_90a":   # TMA descriptors are made at launch from the runtime shapes
        assert "tensormap" in c.ir("gpu")
    for B, L, S in [(1, 1, 4096), (3, 1000, 1000), (2, 65, 7)]:
        shapes = [(B, 8, L, 64), (B, 2, S, 64), (B, 2, S, 64)] + ([(1, 1, L, S)] if bias else [])
        grid = [eval_expr(e, shapes) for e in md["grid"]]
        assert grid == [-(-L // md["block_m"]), 8, B], (md["grid"], grid)
