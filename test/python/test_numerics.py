"""Numerics of compiled attention on the CPU backend against a float64 reference.

Criterion (FlashAttention's): in each dtype, attncc's max error against the
float64 result must be at most twice torch's own max error in that dtype (torch
SDPA for `attncc.attention`, the user's function itself for `attncc.compile`)
plus a small absolute floor.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import attncc

FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def close_enough(out, ref64, torch_out):
    assert out.dtype == torch_out.dtype and out.shape == ref64.shape
    assert torch.isfinite(out).all()
    err = (out.double() - ref64).abs().max().item()
    torch_err = (torch_out.double() - ref64).abs().max().item()
    bound = 2 * torch_err + FLOOR[out.dtype]
    assert err <= bound, f"attncc error {err:.3g} > 2 x torch error {torch_err:.3g} + floor"


def rand(*shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


def reference(q, k, v, scale=None, mask=None, causal=False):
    """float64 softmax(q k^T * scale + mask) v with GQA by head repetition."""
    q, k, v = q.double(), k.double(), v.double()
    n = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
    s = q @ k.mT * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    L, S = s.shape[-2:]
    if causal:
        s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    return torch.softmax(s, -1) @ v


def torch_sdpa(q, k, v, scale=None, mask=None, causal=False):
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                          scale=scale, enable_gqa=True)


def band(L, S, w):
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    return (j <= i) & (j > i - w)


# -- attncc.attention ---------------------------------------------------------------------

CASES = {
    "plain": dict(B=2, H=4, Hkv=4, L=64, S=64, D=64),
    "ragged": dict(B=1, H=3, Hkv=3, L=100, S=77, D=64),
    "causal": dict(B=1, H=4, Hkv=4, L=130, S=130, D=64, causal=True),
    "causal_rect": dict(B=1, H=2, Hkv=2, L=48, S=96, D=32, causal=True),
    "gqa_causal": dict(B=2, H=8, Hkv=2, L=96, S=96, D=64, causal=True),
    "mqa_d128": dict(B=1, H=4, Hkv=1, L=40, S=72, D=128),
    "scale": dict(B=1, H=2, Hkv=2, L=64, S=64, D=32, scale=0.3),
    "sliding_bool": dict(B=1, H=2, Hkv=2, L=128, S=128, D=64, mask="sliding"),
    "random_bool": dict(B=2, H=2, Hkv=2, L=64, S=80, D=32, mask="random"),
    "float_bias": dict(B=2, H=2, Hkv=1, L=64, S=64, D=32, mask="float"),
    "padding": dict(B=2, H=2, Hkv=2, L=32, S=50, D=32, mask="padding"),
}


def make_mask(kind, B, H, L, S, dtype):
    g = torch.Generator().manual_seed(7)
    if kind == "sliding":
        return band(L, S, 16)
    if kind == "random":
        m = torch.rand(B, 1, L, S, generator=g) > 0.4
        m[..., 0] = True
        return m
    if kind == "float":
        return torch.randn(B, H, L, S, generator=g).to(dtype)
    if kind == "padding":
        m = torch.ones(B, 1, 1, S, dtype=torch.bool)
        m[1, ..., 40:] = False
        return m
    return None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", list(CASES))
def test_attention_matches_reference(case, dtype):
    c = dict(CASES[case])
    q = rand(c["B"], c["H"], c["L"], c["D"], dtype=dtype, seed=1)
    k = rand(c["B"], c["Hkv"], c["S"], c["D"], dtype=dtype, seed=2)
    v = rand(c["B"], c["Hkv"], c["S"], c["D"], dtype=dtype, seed=3)
    mask = make_mask(c.get("mask"), c["B"], c["H"], c["L"], c["S"], dtype)
    causal, scale = c.get("causal", False), c.get("scale")
    out = attncc.attention(q, k, v, causal=causal, scale=scale, attn_mask=mask)
    close_enough(out, reference(q, k, v, scale, mask, causal),
                 torch_sdpa(q, k, v, scale, mask, causal))


@pytest.mark.parametrize("opts", [
    dict(block_m=16, block_n=16),
    dict(block_m=32, block_n=64, num_stages=1),
    dict(block_m=64, block_n=32, num_stages=3, unroll=2),
    dict(block_m=128, block_n=128, num_stages=2, unroll=1, num_threads=1),
], ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_attention_options(opts):
    dtype = torch.float16
    q = rand(1, 4, 150, 64, dtype=dtype, seed=1)
    k = rand(1, 2, 150, 64, dtype=dtype, seed=2)
    v = rand(1, 2, 150, 64, dtype=dtype, seed=3)
    out = attncc.attention(q, k, v, causal=True, **opts)
    close_enough(out, reference(q, k, v, causal=True), torch_sdpa(q, k, v, causal=True))


# -- attncc.compile on plain PyTorch code ---------------------------------------------------

def style_textbook(q, k, v):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return torch.softmax(s, dim=-1) @ v


def style_causal_upcast(q, k, v):
    s = torch.matmul(q, k.mT) * q.shape[-1] ** -0.5
    L, S = s.shape[-2:]
    s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    return F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype) @ v


def style_einsum_where_finfo(q, k, v):
    s = torch.einsum("bhqd,bhkd->bhqk", q * q.shape[-1] ** -0.5, k)
    keep = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).tril()
    s = torch.where(keep, s, torch.finfo(s.dtype).min)
    return torch.einsum("bhqk,bhkd->bhqd", s.float().softmax(-1).type_as(q), v)


def style_gqa_hf(q, k, v):
    def repeat_kv(x, n):
        b, h, s, d = x.shape
        return x[:, :, None, :, :].expand(b, h, n, s, d).reshape(b, h * n, s, d)
    n = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n), repeat_kv(v, n)
    s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(q.shape[-1])
    s = s + torch.full(s.shape[-2:], float("-inf")).triu(1)
    return torch.matmul(F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype), v)


def style_sliding(q, k, v):
    s = q @ k.mT / math.sqrt(q.shape[-1])
    i = torch.arange(s.shape[-2])[:, None]
    j = torch.arange(s.shape[-1])[None, :]
    return s.masked_fill((j > i) | (j <= i - 24), float("-inf")).softmax(-1) @ v


def style_bshd_layout(q, k, v):
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))   # inputs are [B, L, H, D]
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1)


def style_upcast_qkv(q, k, v):
    qf, kf, vf = q.float(), k.float(), v.float()
    return (torch.softmax(qf @ kf.mT / math.sqrt(q.shape[-1]), -1) @ vf).to(q.dtype)


STYLES = [style_textbook, style_causal_upcast, style_einsum_where_finfo, style_gqa_hf,
          style_sliding, style_bshd_layout, style_upcast_qkv]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("fn", STYLES, ids=lambda f: f.__name__)
def test_compiled_styles_match_reference(fn, dtype):
    hkv = 2 if fn is style_gqa_hf else 4
    if fn is style_bshd_layout:
        shapes = [(1, 90, 4, 32)] * 3
    else:
        shapes = [(2, 4, 90, 32), (2, hkv, 90, 32), (2, hkv, 90, 32)]
    q, k, v = (rand(*s, dtype=dtype, seed=i) for i, s in enumerate(shapes))
    out = attncc.compile(fn)(q, k, v)
    close_enough(out, fn(q.double(), k.double(), v.double()), fn(q, k, v))


def test_compiled_mask_inputs_per_call_structure():
    def fn(q, k, v, keep):
        s = q @ k.mT / math.sqrt(q.size(-1))
        return torch.softmax(s.masked_fill(~keep, float("-inf")), -1) @ v
    c = attncc.compile(fn)
    dtype = torch.float16
    q, k, v = (rand(1, 2, 70, 32, dtype=dtype, seed=i) for i in range(3))
    for keep in (torch.ones(70, 70, dtype=torch.bool).tril(), band(70, 70, 9),
                 torch.rand(1, 2, 70, 70, generator=torch.Generator().manual_seed(3)) > 0.5,
                 torch.ones(70, 70, dtype=torch.bool)):
        keep = keep.clone()
        keep[..., 0] = True
        out = c(q, k, v, keep)
        close_enough(out, fn(q.double(), k.double(), v.double(), keep), fn(q, k, v, keep))


def test_compiled_additive_mask_before_scale():
    def fn(q, k, v, bias):
        return torch.softmax((q @ k.mT + bias) / math.sqrt(q.size(-1)), -1) @ v
    dtype = torch.float32
    q, k, v = (rand(2, 2, 64, 32, dtype=dtype, seed=i) for i in range(3))
    bias = rand(2, 1, 64, 64, dtype=dtype, seed=9) * 3
    out = attncc.compile(fn)(q, k, v, bias)
    close_enough(out, fn(q.double(), k.double(), v.double(), bias.double()), fn(q, k, v, bias))


def test_compiled_padding_mask_from_lengths():
    def fn(q, k, v, lengths):
        s = q @ k.mT / math.sqrt(q.size(-1))
        pad = torch.arange(s.shape[-1])[None, :] >= lengths[:, None]
        s = s.masked_fill(pad[:, None, None, :], torch.finfo(s.dtype).min)
        return torch.softmax(s, -1) @ v
    dtype = torch.bfloat16
    q, k, v = (rand(3, 2, 40, 32, dtype=dtype, seed=i) for i in range(3))
    lengths = torch.tensor([40, 17, 1])
    out = attncc.compile(fn)(q, k, v, lengths)
    close_enough(out, fn(q.double(), k.double(), v.double(), lengths), fn(q, k, v, lengths))


def test_compiled_rank3_bmm():
    def fn(q, k, v):
        s = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.size(-1))
        return torch.bmm(torch.softmax(s.float(), dim=2).to(q.dtype), v)
    dtype = torch.float16
    q, k, v = (rand(6, 50, 32, dtype=dtype, seed=i) for i in range(3))
    out = attncc.compile(fn)(q, k, v)
    close_enough(out, fn(q.double(), k.double(), v.double()), fn(q, k, v))


def test_compiled_model_code():
    from test_capture import NanoGPTAttention, hf_causal_mask, hf_eager_attention
    dtype = torch.float16
    q = rand(2, 8, 60, 64, dtype=dtype, seed=1)
    k = rand(2, 2, 60, 64, dtype=dtype, seed=2)
    v = rand(2, 2, 60, 64, dtype=dtype, seed=3)
    for pad in (0, 5):
        mask = hf_causal_mask(2, 60, 60, dtype, pad=pad)
        out = attncc.compile(hf_eager_attention)(q, k, v, mask, 0.125)
        ref = hf_eager_attention(q.double(), k.double(), v.double(), mask.double(), 0.125)
        close_enough(out, ref, hf_eager_attention(q, k, v, mask, 0.125))
    m = NanoGPTAttention().eval()
    q, k, v = (rand(1, 4, 50, 32, dtype=dtype, seed=i) for i in range(3))
    close_enough(attncc.compile(m)(q, k, v), m.double()(q.double(), k.double(), v.double()),
                 m.to(dtype)(q, k, v))


def test_compiled_alibi():
    from test_capture import alibi_attention
    dtype = torch.float16
    q, k, v = (rand(1, 4, 64, 32, dtype=dtype, seed=i) for i in range(3))
    c = attncc.compile(alibi_attention)
    for _ in range(2):   # the constant bias is computed once and kept
        out = c(q, k, v)
        close_enough(out, alibi_attention(q.double(), k.double(), v.double()),
                     alibi_attention(q, k, v))
