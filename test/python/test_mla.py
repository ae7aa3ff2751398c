"""Multi-head latent attention (DeepSeek's MLA) on the CPU, in its absorbed
decode form: every query head attends over one latent KV head of 576 = 512 +
64 (rope) elements, and V is the first 512 of them, V = K[..., :512], a view
of the same cache (FlashMLA's and vLLM's MLA layout). Also any K/V view of unit
inner stride, such as a [B, L, H, D] projection seen as [B, H, L, D].

What must hold: results against a float64 reference within flash-attn's
criterion (error <= 2x the same computation in the inputs' dtype, plus a
floor), for decode (the kv-in-place form, group 16), a short chunk and 128
heads (the copying form, split over the threads), contiguous and paged; and
the views reach the kernel as they are: no copy of K or V by the runtime
(CpuKernel's argument fix-up) or by torch's `contiguous`."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention.bias import causal_lower_right

import attncc
from attncc.runtime import cpu as cpu_runtime

DK, DV = 576, 512
SCALE = 192 ** -0.5            # DeepSeek's softmax scale (qk_nope 128 + rope 64)
FLOOR = {torch.float32: 1e-5, torch.bfloat16: 2e-3}


def attend(q, k, v, causal_offset=None, dtype=torch.float64):
    """softmax(q k^T * SCALE) v per (batch, head) in `dtype`; `causal_offset`:
    query row i sees keys up to i + offset (bottom-right)."""
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = (q @ k.transpose(-1, -2)) * SCALE
    if causal_offset is not None:
        L, S = s.shape[-2:]
        seen = torch.arange(S)[None, :] <= torch.arange(L)[:, None] + causal_offset
        s = s.masked_fill(~seen, float("-inf"))
    return torch.softmax(s.float() if dtype != torch.float64 else s, -1).to(dtype) @ v


def assert_close(got, q, k, v, where, causal_offset=None):
    ref = attend(q, k, v, causal_offset)
    own = attend(q, k, v, causal_offset, dtype=q.dtype)
    err = float((got.double() - ref).abs().max())
    bound = 2 * float((own.double() - ref).abs().max()) + FLOOR[q.dtype]
    assert err <= bound, json.dumps(dict(where, err=err, bound=bound))


@pytest.fixture
def copies(monkeypatch):
    """Copies of a K/V view: the runtime's fix-up of arguments that do not
    match the kernel's types, and torch `contiguous` calls on a non-contiguous
    tensor."""
    made = []
    fix_up = cpu_runtime.CpuKernel._checked

    def checked(self, first, tensors, fix=False):
        if fix:
            made.extend(("runtime", tuple(t.shape)) for t in tensors
                        if isinstance(t, torch.Tensor) and not t.is_contiguous())
        return fix_up(self, first, tensors, fix)

    real = torch.Tensor.contiguous

    def contiguous(self, *args, **kwargs):
        if not self.is_contiguous(*args, **kwargs):
            made.append(("contiguous", tuple(self.shape)))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cpu_runtime.CpuKernel, "_checked", checked)
    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    return made


# (batch, query heads, query length, KV length): decode at group 16 (kv-in-place),
# a 3-token chunk (48 rows: the copying form), 128 heads (one 128-row query block
# per batch row, the KV range split over the threads).
SHAPES = [(2, 16, 1, 300), (1, 16, 3, 129), (1, 128, 1, 200), (3, 128, 1, 65)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("B,Hq,L,S", SHAPES)
def test_latent_cache_decode(B, Hq, L, S, dtype, copies):
    g = torch.Generator().manual_seed(B * 1000 + Hq + L + S)
    q = torch.randn(B, Hq, L, DK, generator=g).to(dtype)
    latent = torch.randn(B, 1, S, DK, generator=g).to(dtype)
    v = latent[..., :DV]
    causal = L > 1   # a chunk of new tokens sees the cache and itself
    got = attncc.attention(q, latent, v, scale=SCALE,
                           attn_mask=causal_lower_right(L, S) if causal else None)
    assert got.shape == (B, Hq, L, DV)
    assert copies == [], copies
    assert_close(got, q, latent, v, dict(B=B, Hq=Hq, L=L, S=S, dtype=str(dtype)),
                 causal_offset=S - L if causal else None)


@pytest.mark.parametrize("causal", [False, True])
def test_transposed_projection_views(causal, copies):
    """K and V as [B, L, H, D] projections viewed [B, H, L, D] (strides
    [L H D, D, H D, 1]), prefill (the copying form) and decode (in place)."""
    g = torch.Generator().manual_seed(11)
    for L, S in ((70, 70), (1, 90)):
        k = torch.randn(2, S, 2, 64, generator=g).transpose(1, 2)
        v = torch.randn(2, S, 2, 32, generator=g).transpose(1, 2)
        q = torch.randn(2, 8, L, 64, generator=g)
        got = attncc.attention(q, k, v, causal=causal, scale=SCALE)
        assert copies == [], copies
        ref = torch.nn.functional.scaled_dot_product_attention(
            q.double(), k.double(), v.double(), is_causal=causal, scale=SCALE, enable_gqa=True)
        assert float((got.double() - ref).abs().max()) < 5e-6, (L, S, causal)


@pytest.mark.parametrize("page", [1, 16, 64])
def test_paged_latent_cache(page, copies):
    """vLLM's MLA cache: [num_pages, page, 1, 576] with V = its first 512
    columns; decode of 3 sequences and a chunked prefill against it, pages
    in shuffled order."""
    g = torch.Generator().manual_seed(page)
    lens = [37, 1, 130]
    need = [(n + page - 1) // page for n in lens]
    num_pages = sum(need) + 3
    cache = torch.randn(num_pages, page, 1, DK, generator=g)
    perm = torch.randperm(num_pages, generator=g).to(torch.int32)
    table = torch.zeros(len(lens), max(need), dtype=torch.int32)
    used = 0
    for i, n in enumerate(need):
        table[i, :n] = perm[used:used + n]
        used += n
    seq_lens = torch.tensor(lens, dtype=torch.int32)

    def gathered(i):
        return cache[table[i, :need[i]].long()].reshape(-1, DK)[:lens[i]][None, None]

    q = torch.randn(len(lens), 16, DK, generator=g)
    got = attncc.paged_attention(q, cache, cache[..., :DV], table, seq_lens, scale=SCALE)
    for i in range(len(lens)):
        kv = gathered(i)
        assert_close(got[i][None, :, None], q[i][None, :, None], kv, kv[..., :DV],
                     dict(page=page, seq=i, form="decode"))
    # Chunked prefill: 2 new tokens of sequence 0 and 0, 5 and 1 of the others.
    ql = [2, 0, 5] if lens[1] < 5 else [2, 5, 1]
    ql = [min(n, lens[i]) for i, n in enumerate(ql)]
    cu = torch.tensor([0] + list(torch.tensor(ql).cumsum(0)), dtype=torch.int32)
    qc = torch.randn(int(cu[-1]), 16, DK, generator=g)
    got = attncc.paged_attention(qc, cache, cache[..., :DV], table, seq_lens, scale=SCALE,
                                 cu_seqlens_q=cu, max_seqlen_q=max(ql), causal=True)
    for i in range(len(lens)):
        if ql[i] == 0:
            continue
        kv = gathered(i)
        qi = qc[cu[i]:cu[i + 1]].transpose(0, 1)[None]
        assert_close(got[cu[i]:cu[i + 1]].transpose(0, 1)[None], qi, kv, kv[..., :DV],
                     dict(page=page, seq=i, form="chunk"), causal_offset=lens[i] - ql[i])
    assert copies == [], copies


def test_kernels_take_views_only_where_needed():
    """Dense K/V prefill keeps the kernel of dense arguments (its packing
    copies are faster with constant row strides); K/V views get the strided
    kernel; decode kernels (kv-in-place) always take views, so a decode loop
    over a preallocated cache keeps one kernel whether it slices it or not."""
    from attncc.frontend import fast_path
    g = torch.Generator().manual_seed(5)

    def recipe(q, k, v):
        attncc.attention(q, k, v)
        return fast_path.lookup(fast_path.key(q, k, v, False, None, None, None))

    q = torch.randn(1, 2, 64, 32, generator=g)
    k, v = torch.randn(1, 2, 64, 32, generator=g), torch.randn(1, 2, 64, 48, generator=g)
    assert not recipe(q, k, v).strided_kv
    assert recipe(q, k, v[..., :40]).strided_kv
    cache = torch.randn(1, 2, 100, 32, generator=g)
    decode = torch.randn(1, 8, 1, 32, generator=g)
    assert recipe(decode, cache[:, :, :50], cache[:, :, :50]).strided_kv
    assert recipe(decode, cache, cache).strided_kv


def test_strided_kv_is_refused_for_gpu_targets():
    from attncc import Graph
    from attncc.compiler import compile_graph
    from attncc.errors import CompileError
    g = Graph("attention")
    q, k, v = (g.input(n, (1, 2, 16, 64), "f16") for n in "qkv")
    g.output(g.attention(q, k, v))
    with pytest.raises(CompileError, match="strided_kv is a CPU form"):
        compile_graph(g, target="sm_90a", strided_kv=True)


def test_one_block_calls_take_the_split_form():
    """MLA's 128 packed query rows are one block: B1 would be one grid point
    on one thread; the split form spreads its keys over the threads. Calls
    of several query blocks keep the plain form."""
    from attncc.frontend import split_kv
    one = split_kv.plan("cpu", "cpu", 2, 128, 64, 1, 1, 128, 4096, DK, None)
    assert one.split_kernel and one.splits == 2, one
    many = split_kv.plan("cpu", "cpu", 2, 128, 64, 1, 1, 300, 4096, DK, None)
    assert not many.split_kernel, many


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2], ids=["e4m3", "e5m2"])
@pytest.mark.parametrize("B,Hq,L,S", SHAPES[:3])
def test_fp8_latent_cache(B, Hq, L, S, fp8, copies):
    """FlashMLA's FP8 KV: the latent cache in fp8 with one scale (V still a
    view of it), dequantized as the kernel loads it, without a copy."""
    g = torch.Generator().manual_seed(B + Hq + L + S)
    q = torch.randn(B, Hq, L, DK, generator=g)
    scale = 0.02
    latent = (torch.randn(B, 1, S, DK, generator=g) / scale).clamp(-448, 448).to(fp8)
    causal = L > 1
    got = attncc.attention(q, latent, latent[..., :DV], scale=SCALE, k_scale=scale,
                           v_scale=scale, attn_mask=causal_lower_right(L, S) if causal else None)
    assert copies == [], copies
    real = latent.double() * scale
    assert_close(got, q, real, real[..., :DV], dict(B=B, Hq=Hq, L=L, S=S, fp8=str(fp8)),
                 causal_offset=S - L if causal else None)
