"""Capture of plain PyTorch attention code: each style users write is traced,
mapped to attn graph ops, and fused (stop_after="fused") into exactly one
attn.attention with the right scale, mask and kv_group."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from attncc import CaptureError
from attncc.compiler import compile_graph
from attncc.frontend import capture

B, H, L, S, D = 1, 4, 16, 16, 32
SCALE = 1 / math.sqrt(D)


def qkv(dtype=torch.float32, hkv=H, l=L, s=S, d=D, device="cpu"):
    g = torch.Generator().manual_seed(0)
    mk = lambda *shape: torch.randn(*shape, generator=g).to(dtype).to(device)  # noqa: E731
    return mk(B, H, l, d), mk(B, hkv, s, d), mk(B, hkv, s, d)


_ATT = re.compile(r"attn\.attention (?P<operands>.*?) scale (?P<scale>\S+) mask (?P<mask>\w+)"
                  r"(?: window (?P<window>\d+))? kv_group (?P<group>\d+)")


def fused(fn, *args, **kwargs):
    """Fused IR of `fn` captured on the example inputs, and its attention attributes."""
    cap = capture(fn, *args, **kwargs)
    graph = cap.lowered_for(cap_tensors(args, kwargs)).graph
    text = compile_graph(graph, stop_after="fused").ir("fused")
    body = [ln.strip() for ln in text.splitlines()
            if "=" in ln and "func.func" not in ln]
    atts = [m for m in map(_ATT.search, body) if m]
    assert len(atts) == 1, text
    others = [ln for ln in body if "attn.attention" not in ln]
    # the only other op allowed: a scale of a bias argument (bias before a scale)
    assert all("attn.scale %arg" in ln for ln in others), text
    m = atts[0]
    info = dict(scale=float(m["scale"]), mask=m["mask"], group=int(m["group"]),
                window=int(m["window"]) if m["window"] else None,
                bias="bias(" in m["operands"], text=text, graph=str(graph))
    return info


def cap_tensors(args, kwargs):
    return [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]


def check(info, scale=SCALE, mask="none", group=1, window=None, bias=False):
    assert info["scale"] == pytest.approx(scale, rel=1e-6), info["text"]
    assert info["mask"] == mask, info["text"]
    assert info["group"] == group, info["text"]
    assert info["window"] == window, info["text"]
    assert info["bias"] == bias, info["text"]


# -- Q K^T spellings and scales -------------------------------------------------------------

def test_matmul_transpose_div_sqrt():
    def fn(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        return torch.softmax(s, dim=-1) @ v
    check(fused(fn, *qkv()))


def test_mT_and_torch_matmul_mul_scale():
    def fn(q, k, v):
        s = torch.matmul(q, k.mT) * 0.2
        return torch.matmul(F.softmax(s, dim=-1), v)
    check(fused(fn, *qkv()), scale=0.2)


def test_transpose_2_3_and_permute():
    def fn(q, k, v):
        s = q.matmul(k.transpose(2, 3)) * SCALE
        return s.softmax(-1) @ v

    def fn2(q, k, v):
        return (q @ k.permute(0, 1, 3, 2) * SCALE).softmax(-1) @ v
    check(fused(fn, *qkv()))
    check(fused(fn2, *qkv()))


def test_einsum():
    def fn(q, k, v):
        s = torch.einsum("bhqd,bhkd->bhqk", q, k) * SCALE
        return torch.einsum("bhqk,bhkd->bhqd", s.softmax(dim=-1), v)

    def fn_ellipsis(q, k, v):
        s = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(D)
        return torch.einsum("...qk,...kd->...qd", s.softmax(dim=-1), v)
    check(fused(fn, *qkv()))
    check(fused(fn_ellipsis, *qkv()))


def test_scale_on_q_first():
    def fn(q, k, v):
        q = q * q.shape[-1] ** -0.5
        return torch.softmax(q @ k.mT, dim=-1) @ v
    check(fused(fn, *qkv()))


def test_scale_split_on_q_and_k():
    def fn(q, k, v):
        f = q.shape[-1] ** -0.25
        return torch.softmax((q * f) @ (k * f).transpose(-2, -1), dim=-1) @ v
    check(fused(fn, *qkv()))


def test_scale_as_tensor_sqrt():
    def fn(q, k, v):
        s = q @ k.mT / torch.sqrt(torch.tensor(q.shape[-1], dtype=torch.float32))
        return s.softmax(-1) @ v
    check(fused(fn, *qkv()))


def test_no_scale():
    def fn(q, k, v):
        return torch.softmax(q @ k.mT, -1) @ v
    check(fused(fn, *qkv()), scale=1.0)


def test_k_given_transposed_as_input():
    # K passed as [B, H, D, S]: torch transposes it back before the kernel.
    def fn(q, kt, v):
        return torch.softmax(q @ kt * SCALE, -1) @ v
    q, k, v = qkv()
    check(fused(fn, q, k.mT.contiguous(), v))


# -- masks -------------------------------------------------------------------------------------

def test_causal_triu_masked_fill_inside_fn():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        Lq, Sk = s.shape[-2:]
        m = torch.triu(torch.ones(Lq, Sk, dtype=torch.bool), diagonal=1)
        return s.masked_fill(m, float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_causal_tril_ones_where_finfo_min():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        s = torch.where(keep, s, torch.finfo(s.dtype).min)
        return torch.softmax(s, -1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_causal_tril_eq_zero_masked_fill():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        tri = torch.tril(torch.ones(L, S))
        return s.masked_fill(tri == 0, float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_causal_arange_compare():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        i = torch.arange(s.shape[-2])
        return s.masked_fill(i[None, :] > i[:, None], float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_causal_additive_triu_inf_before_scale():
    def fn(q, k, v):
        mask = torch.full((L, S), float("-inf")).triu(1)
        s = (q @ k.mT + mask) * SCALE
        return s.softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_causal_closed_over_global_mask():
    keep = torch.ones(L, S, dtype=torch.bool).tril()

    def fn(q, k, v):
        return (q @ k.mT * SCALE).masked_fill(~keep, float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")


def test_sliding_window_inside_fn():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        i = torch.arange(L)[:, None]
        j = torch.arange(S)[None, :]
        keep = (j <= i) & (j > i - 4)
        return s.masked_fill(~keep, float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="sliding_window", window=4)


def test_sliding_window_tril_triu():
    def fn(q, k, v):
        ones = torch.ones(L, S, dtype=torch.bool)
        keep = ones.tril() & ones.triu(-7)
        return torch.where(keep, q @ k.mT * SCALE, float("-inf")).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="sliding_window", window=8)


def test_two_masks_causal_and_sliding_combine():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        ones = torch.ones(L, S, dtype=torch.bool)
        s = s.masked_fill(~ones.tril(), float("-inf"))
        s = s.masked_fill(~ones.triu(-3), float("-inf"))
        return s.softmax(-1) @ v
    check(fused(fn, *qkv()), mask="sliding_window", window=4)


def test_bool_mask_input_causal_is_recognized():
    def fn(q, k, v, keep):
        s = q @ k.mT * SCALE
        return s.masked_fill(~keep, float("-inf")).softmax(-1) @ v
    keep = torch.ones(L, S, dtype=torch.bool).tril()
    check(fused(fn, *qkv(), keep), mask="causal")
    # an arbitrary mask stays a bias (converted from bool at call time)
    other = torch.rand(L, S, generator=torch.Generator().manual_seed(1)) > 0.3
    other[:, 0] = True
    check(fused(fn, *qkv(), other), mask="bias", bias=True)


def test_bool_mask_input_meta_is_bias():
    def fn(q, k, v, keep):
        return (q @ k.mT * SCALE).masked_fill(~keep, float("-inf")).softmax(-1) @ v
    q, k, v = qkv(device="meta")
    keep = torch.ones(L, S, dtype=torch.bool, device="meta")
    check(fused(fn, q, k, v, keep), mask="bias", bias=True)


def test_additive_float_mask_input():
    def fn(q, k, v, mask):
        return torch.softmax(q @ k.mT * SCALE + mask, dim=-1) @ v
    mask = torch.randn(B, 1, L, S)
    info = fused(fn, *qkv(), mask)
    check(info, mask="bias", bias=True)
    assert "tensor<1x1x16x16xf32>" in info["text"]


def test_additive_mask_before_scale_is_scaled():
    def fn(q, k, v, mask):
        return torch.softmax((q @ k.mT + mask) / math.sqrt(D), dim=-1) @ v
    info = fused(fn, *qkv(), torch.randn(L, S))
    check(info, mask="bias", bias=True)
    assert re.search(r"attn.scale %arg\d by 0.17677", info["text"]), info["text"]


def test_padding_mask_from_input_eq_zero():
    def fn(q, k, v, attention_mask):
        s = q @ k.mT * SCALE
        return s.masked_fill(attention_mask[:, None, None, :] == 0,
                             torch.finfo(s.dtype).min).softmax(-1) @ v
    am = torch.ones(B, S, dtype=torch.long)
    am[:, -3:] = 0
    info = fused(fn, *qkv(), am)
    check(info, mask="bias", bias=True)
    # no padding at all: no mask
    check(fused(fn, *qkv(), torch.ones(B, S, dtype=torch.long)), mask="none")


# -- softmax precision and casts -----------------------------------------------------------

def test_softmax_dtype_float32_upcast_and_cast_back():
    def fn(q, k, v):
        s = q @ k.transpose(-2, -1) * SCALE
        p = F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
        return p @ v
    info = fused(fn, *qkv(torch.float16))
    check(info)
    assert "-> tensor<1x4x16x32xf16>" in info["text"]


def test_float_then_type_as():
    def fn(q, k, v):
        s = (q @ k.mT * SCALE).float()
        return torch.softmax(s, -1).type_as(q) @ v
    check(fused(fn, *qkv(torch.bfloat16)))


def test_upcast_qkv_then_cast_result():
    def fn(q, k, v):
        qf, kf, vf = q.float(), k.float(), v.float()
        o = torch.softmax(qf @ kf.mT * SCALE, -1) @ vf
        return o.to(q.dtype)
    info = fused(fn, *qkv(torch.float16))
    check(info)
    assert "-> tensor<1x4x16x32xf16>" in info["text"]


# -- GQA / MQA -------------------------------------------------------------------------------

def test_gqa_repeat_interleave():
    def fn(q, k, v):
        n = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(n, dim=1)
        v = torch.repeat_interleave(v, n, dim=1)
        return torch.softmax(q @ k.mT * SCALE, -1) @ v
    check(fused(fn, *qkv(hkv=2)), group=2)


def test_gqa_expand_reshape_hf_style():
    def repeat_kv(x, n):
        b, h, s, d = x.shape
        if n == 1:
            return x
        x = x[:, :, None, :, :].expand(b, h, n, s, d)
        return x.reshape(b, h * n, s, d)

    def fn(q, k, v):
        k, v = repeat_kv(k, 4), repeat_kv(v, 4)
        s = torch.matmul(q, k.transpose(2, 3)) * SCALE
        return torch.matmul(F.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype), v)
    check(fused(fn, *qkv(hkv=1)), group=4)


def test_mqa_expand():
    def fn(q, k, v):
        k = k.expand(-1, q.shape[1], -1, -1)
        v = v.expand(-1, q.shape[1], -1, -1)
        return torch.softmax(q @ k.mT * SCALE, -1) @ v
    check(fused(fn, *qkv(hkv=1)), group=H)


def test_gqa_with_causal_mask_and_bf16():
    def fn(q, k, v):
        k = k.repeat_interleave(2, dim=1)
        v = v.repeat_interleave(2, dim=1)
        s = q @ k.mT / math.sqrt(q.size(-1))
        causal = torch.ones(s.shape[-2:], dtype=torch.bool).tril()
        s = s.masked_fill(~causal, torch.finfo(s.dtype).min)
        return torch.softmax(s.float(), -1).to(q.dtype) @ v
    check(fused(fn, *qkv(torch.bfloat16, hkv=2)), mask="causal", group=2)


# -- layouts -----------------------------------------------------------------------------------

def test_bshd_inputs_and_output_layout():
    # [B, L, H, D] inputs transposed to [B, H, L, D]; output back to [B, L, H*D].
    def fn(q, k, v):
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        o = torch.softmax(q @ k.mT * SCALE, -1) @ v
        return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)
    q, k, v = (x.transpose(1, 2).contiguous() for x in qkv())
    cap = capture(fn, q, k, v)
    assert len(cap.base.post) == 2
    check(fused(fn, q, k, v))


# -- SDPA ----------------------------------------------------------------------------------------

def test_sdpa_plain_and_causal():
    check(fused(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), *qkv()))
    check(fused(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                *qkv()), mask="causal")


def test_sdpa_scale_and_gqa():
    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, scale=0.3, enable_gqa=True)
    check(fused(fn, *qkv(hkv=2)), scale=0.3, group=2)


def test_sdpa_repeat_kv_by_hand():
    def fn(q, k, v):
        k, v = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    check(fused(fn, *qkv(hkv=1)), mask="causal", group=4)


def test_sdpa_masks():
    def fn(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    check(fused(fn, *qkv(), torch.randn(L, S)), mask="bias", bias=True)
    check(fused(fn, *qkv(), torch.ones(L, S, dtype=torch.bool).tril()), mask="causal")
    check(fused(fn, *qkv(), torch.ones(L, S, dtype=torch.bool)), mask="none")


def test_sdpa_kwargs_and_defaults_of_fn():
    def fn(q, k, v, causal=False, scale=None):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    check(fused(fn, *qkv(), causal=True, scale=0.5), mask="causal", scale=0.5)
    check(fused(fn, *qkv()))


def test_module_forward():
    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.softmax(q @ k.mT * SCALE, -1) @ v
    check(fused(Attn(), *qkv()))


def test_meta_inputs():
    check(fused(lambda q, k, v: torch.softmax(q @ k.mT * SCALE, -1) @ v,
                *qkv(device="meta")))


def test_distinct_inputs_even_if_same_tensor():
    q, k, _ = qkv()
    cap = capture(lambda q, k, v: torch.softmax(q @ k.mT * SCALE, -1) @ v, q, k, k)
    assert [s.arg for s in cap.base.inputs] == [0, 1, 2]


def test_graph_input_names_follow_parameters():
    def fn(query, key, value):
        return torch.softmax(query @ key.mT * SCALE, -1) @ value
    cap = capture(fn, *qkv())
    assert [s.name for s in cap.base.inputs] == ["query", "key", "value"]
    assert "func.func @fn(" in str(cap.graph)


def _line_of(fn, text):
    import inspect
    src, start = inspect.getsourcelines(fn)
    for i, ln in enumerate(src):
        if text in ln:
            return start + i
    raise AssertionError(text)


# -- rank-3 (heads folded into the batch) and rank-2 code ----------------------------------

def test_bmm_rank3():
    def fn(q, k, v):
        s = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.size(-1))
        return torch.bmm(torch.softmax(s, dim=2), v)
    q, k, v = (x.reshape(B * H, -1, D) for x in qkv())
    info = fused(fn, q, k, v)
    check(info)
    assert "tensor<1x4x16x32xf32>" in info["text"]


def test_rank3_einsum_causal():
    def fn(q, k, v):
        s = torch.einsum("bqd,bkd->bqk", q, k) * SCALE
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
        return torch.einsum("bqk,bkd->bqd", s.softmax(-1), v)
    check(fused(fn, *(x.reshape(B * H, -1, D) for x in qkv())), mask="causal")


def test_rank2_single_head():
    def fn(q, k, v):
        return torch.softmax(q @ k.T * SCALE, dim=1) @ v
    check(fused(fn, *(x[0, 0] for x in qkv())))


# -- model code ------------------------------------------------------------------------------

class NanoGPTAttention(torch.nn.Module):
    """nanoGPT's attention core: a tril buffer, sliced and compared, nn.Dropout."""

    def __init__(self, block=64, dropout=0.1):
        super().__init__()
        self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))
        self.attn_dropout = torch.nn.Dropout(dropout)

    def forward(self, q, k, v):
        T = q.size(-2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        return att @ v


def hf_repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep,
                                                           slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def hf_eager_attention(query, key, value, attention_mask, scaling, dropout=0.0, training=False):
    """transformers' eager_attention_forward (Llama & co.), minus the module."""
    key_states = hf_repeat_kv(key, query.shape[1] // key.shape[1])
    value_states = hf_repeat_kv(value, query.shape[1] // value.shape[1])
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]
        attn_weights = attn_weights + causal_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous()


def hf_causal_mask(b, l, s, dtype, pad=0):
    m = torch.full((l, s), torch.finfo(dtype).min, dtype=dtype).triu(1)
    m = m[None, None].expand(b, 1, l, s).clone()
    if pad:
        m[0, ..., :pad] = torch.finfo(dtype).min   # left padding of the first sequence
    return m


def test_nanogpt_module_with_buffer():
    check(fused(NanoGPTAttention().eval(), *qkv()), mask="causal")


def test_nanogpt_training_mode_names_user_line():
    with pytest.raises(CaptureError) as e:
        capture(NanoGPTAttention().train(), *qkv())
    msg = str(e.value)
    assert "dropout with p=0.1 in training mode" in msg
    assert f"{__file__}:{_line_of(NanoGPTAttention.forward, 'self.attn_dropout(att)')}" in msg


def test_hf_eager_attention_llama():
    q, k, v = qkv(torch.bfloat16, hkv=2)
    mask = hf_causal_mask(B, L, S, torch.bfloat16)
    info = fused(hf_eager_attention, q, k, v, mask, SCALE)
    check(info, mask="causal", group=2)
    # with padding the 4D mask is a bias, used as it is
    info = fused(hf_eager_attention, q, k, v, hf_causal_mask(B, L, S, torch.bfloat16, pad=3),
                 SCALE)
    check(info, mask="bias", group=2, bias=True)
    assert "bias(%arg3 : tensor<1x1x16x16xbf16>)" in info["text"]  # inputs in argument order


def test_graph_inputs_follow_argument_order():
    def fn(mask, v, k, q):
        return torch.softmax(q @ k.mT * SCALE + mask, -1) @ v
    q, k, v = qkv()
    cap = capture(fn, torch.randn(L, S), v, k, q)
    assert [(s.name, s.kind) for s in cap.base.inputs] == \
        [("mask", "mask"), ("v", "arg"), ("k", "arg"), ("q", "arg")]


def alibi_attention(q, k, v):
    h, l, s = q.shape[1], q.shape[2], k.shape[2]
    slopes = 2.0 ** (-8.0 * torch.arange(1, h + 1) / h)
    dist = torch.arange(s)[None, :] - torch.arange(l)[:, None]
    bias = slopes[:, None, None] * dist.clamp(max=0)
    bias = bias.masked_fill(dist > 0, float("-inf"))
    s_ = q @ k.mT / math.sqrt(q.size(-1)) + bias
    return torch.softmax(s_, -1).to(v.dtype) @ v


def test_alibi_built_in_fn_is_a_constant_bias():
    info = fused(alibi_attention, *qkv())
    check(info, mask="bias", bias=True)
    assert "bias(%arg3 : tensor<4x16x16xf32>)" in info["text"]


def test_where_with_full_like_scores():
    def fn(q, k, v):
        s = q @ k.mT * SCALE
        keep = torch.ones(L, S, dtype=torch.bool).tril()
        return torch.where(keep, s, torch.full_like(s, float("-inf"))).softmax(-1) @ v

    def fn2(q, k, v, keep):
        s = q @ k.mT * SCALE
        return torch.where(keep, s, s.new_tensor(float("-inf"))).softmax(-1) @ v
    check(fused(fn, *qkv()), mask="causal")
    check(fused(fn2, *qkv(), torch.ones(L, S, dtype=torch.bool).tril()), mask="causal")


def test_gqa_expand_flatten():
    def fn(q, k, v):
        n = q.shape[1] // k.shape[1]
        k = k[:, :, None].expand(-1, -1, n, -1, -1).flatten(1, 2)
        v = v[:, :, None].expand(-1, -1, n, -1, -1).flatten(1, 2)
        return torch.softmax(q @ k.mT * SCALE, -1) @ v
    check(fused(fn, *qkv(hkv=2)), group=2)
