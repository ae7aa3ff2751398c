"""The plain-PyTorch forms real model code uses (issue 11, items 2 and 4):
bottom-right causal / sliding-window structure recognised in bool and float
masks (`attncc.attention(attn_mask=...)`, masks passed to compiled functions,
SDPA's attn_mask), padding left as a bias; transformers' Gemma 2 eager
soft-cap (`torch.tanh`) and gpt-oss eager sink column (`torch.cat` of the
sinks, row max subtracted, `[..., :-1]`) captured by `attncc.compile` and run
in-kernel (checked at stage "fused"). Numerics against a float64 reference."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import attncc
from attncc import CaptureError
from attncc.frontend.masks import MaskPart, classify
from property_budget import property_seed, examples

NEG = float("-inf")


# -- masks --------------------------------------------------------------------------

def keep_matrix(L, S, align="bottom_right", window=None):
    """j <= i' (and j > i' - window), i' = i (+ S - L bottom-right), from aranges."""
    i = torch.arange(L)[:, None] + (S - L if align == "bottom_right" else 0)
    j = torch.arange(S)[None, :]
    keep = j <= i
    if window is not None:
        keep &= j > i - window
    return keep


def padded(keep, pads, side):
    """[B, 1, L, S] keep with `pads[b]` keys masked at the left or right of batch b."""
    B = len(pads)
    out = keep.expand(B, 1, *keep.shape).clone()
    S = keep.shape[-1]
    for b, p in enumerate(pads):
        if p:
            if side == "left":
                out[b, :, :, :p] = False
            else:
                out[b, :, :, S - p:] = False
    return out


def as_form(keep, form):
    """The keep matrix as a mask argument: bool, 0/-inf float, 0/finfo.min float."""
    if form == "bool":
        return keep, MaskPart("fill", masked_if=False)
    fill = NEG if form == "float_inf" else torch.finfo(torch.float32).min
    return torch.zeros(keep.shape).masked_fill(~keep, fill), MaskPart("add")


def pattern_of(cls, L, S):
    """The keep matrix a class stands for, rebuilt independently of masks.py."""
    if cls.kind == "none":
        return torch.ones(L, S, dtype=torch.bool)
    return keep_matrix(L, S, cls.align, cls.window if cls.kind == "sliding_window" else None)


mask_cases = st.fixed_dictionaries({
    "L": st.integers(1, 24), "extra": st.integers(0, 24),
    "align": st.sampled_from(["top_left", "bottom_right"]),
    "window": st.one_of(st.none(), st.integers(1, 30)),
    "pads": st.lists(st.integers(0, 5), min_size=1, max_size=3),
    "side": st.sampled_from(["left", "right"]),
    "form": st.sampled_from(["bool", "float_inf", "float_min"]),
})

MASK_SEED = property_seed(20261130)


def test_property_mask_recognition(capsys):
    """For Lq <= Lk: a recognised class keeps exactly the mask's positions in
    every batch (soundness); a causal / window mask without padding and
    without fully masked rows is always recognised (completeness); padding
    that differs per batch is a bias (uniform padding may still match a
    structure; soundness covers it)."""
    with capsys.disabled():
        print(f"\ntest_model_forms mask property: seed {MASK_SEED}")

    @seed(MASK_SEED)
    @settings(max_examples=examples(200), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(mask_cases)
    def run(c):
        L, S = c["L"], c["L"] + c["extra"]
        base = keep_matrix(L, S, c["align"], c["window"])
        keep = padded(base, c["pads"], c["side"])
        mask, part = as_form(keep, c["form"])
        cls = classify([part], [mask], L, S)
        where = json.dumps(c)
        full_rows = bool((~keep).all(-1).any())
        same_batches = bool((keep == keep[:1]).all())
        if cls.kind != "bias":
            assert not full_rows, where
            assert torch.equal(keep, pattern_of(cls, L, S).expand_as(keep)), f"{cls}: {where}"
            if L == S:
                assert cls.align == "top_left", where     # one spelling per structure
        elif torch.equal(keep, base.expand_as(keep)) and not full_rows:   # no padding
            raise AssertionError(f"causal/window mask not recognised ({cls}): {where}")
        if not same_batches:
            assert cls.kind == "bias", where

    run()


def test_mask_recognition_examples():
    L, S = 4, 10
    br = keep_matrix(L, S)
    part = MaskPart("fill", masked_if=False)
    assert str(classify([part], [br], L, S)) == "causal[bottom_right]"
    assert str(classify([part], [keep_matrix(L, S, "top_left")], L, S)) == "causal"
    assert str(classify([part], [keep_matrix(L, S, window=3)], L, S)) == \
        "sliding_window(window=3)[bottom_right]"
    # decoding: one query row, bottom-right causal keeps everything
    assert str(classify([part], [keep_matrix(1, S)], 1, S)) == "none"
    # Lq > Lk bottom-right: the first rows see no key -> exact fill semantics, a bias
    assert str(classify([part], [keep_matrix(S, L)], S, L)) == "bias"
    # left padding in one batch (HF left padding with a cache) -> bias
    assert str(classify([part], [padded(br, [0, 2], "left")], L, S)) == "bias"
    # padding of zero keys in every batch is the plain structure
    assert str(classify([part], [padded(br, [0, 0], "left")], L, S)) == "causal[bottom_right]"


# -- kernels: attncc.attention and compiled functions -------------------------------------

def reference(q, k, v, keep=None, bias=None, softcap=None, sinks=None, scale=None):
    """softmax(softcap(q k^T * scale) + bias, masked [; sink]) @ v in float64;
    rows with no key give zeros."""
    q, k, v = q.double(), k.double(), v.double()
    if k.shape[1] != q.shape[1]:
        n = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
    s = q @ k.mT * (scale if scale is not None else q.shape[-1] ** -0.5)
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        s = s + bias.double()
    if keep is not None:
        s = s.masked_fill(~keep, NEG)
    if sinks is not None:
        col = sinks.double()[None, :, None, None].expand(*s.shape[:3], 1)
        p = torch.softmax(torch.cat([s, col], -1), -1)[..., :-1]
    else:
        p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v


def qkv(B=2, H=2, Hkv=None, L=4, S=19, D=32, dtype=torch.float32, seed_=0):
    g = torch.Generator().manual_seed(seed_)
    Hkv = Hkv or H
    return (torch.randn(B, H, L, D, generator=g).to(dtype),
            torch.randn(B, Hkv, S, D, generator=g).to(dtype),
            torch.randn(B, Hkv, S, D, generator=g).to(dtype))


def close(out, ref, dtype=torch.float32):
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    err = (out.double() - ref).abs().max().item()
    assert err <= tol, f"max error {err:.3g} > {tol:g}"


api_cases = st.fixed_dictionaries({
    "L": st.sampled_from([1, 3, 8, 16]), "extra": st.sampled_from([5, 23]),
    "pads": st.sampled_from([(0, 0), (0, 3), (2, 0)]),
    "side": st.sampled_from(["left", "right"]),
    "form": st.sampled_from(["bool", "float_inf", "float_min"]),
    "seed": st.integers(0, 2 ** 16),
})


def test_property_attention_masks(capsys):
    """attncc.attention with bottom-right causal bool / float masks, Lq < Lk,
    with and without padding, against the float64 reference (three kernels,
    reused across lengths: causal bottom-right, bias, none for Lq = 1)."""
    with capsys.disabled():
        print(f"\ntest_model_forms attention property: seed {MASK_SEED}")

    @seed(MASK_SEED)
    @settings(max_examples=examples(16), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(api_cases)
    def run(c):
        L, S = c["L"], c["L"] + c["extra"]
        keep = padded(keep_matrix(L, S), list(c["pads"]), c["side"])
        mask, _ = as_form(keep, c["form"])
        q, k, v = qkv(L=L, S=S, seed_=c["seed"])
        out = attncc.attention(q, k, v, attn_mask=mask)
        ref = reference(q, k, v, keep=keep)
        try:
            close(out, ref)
        except AssertionError as e:
            raise AssertionError(f"{json.dumps(c)}: {e}") from None

    run()


def sdpa_masked(q, k, v, m):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m)


def fill_masked(q, k, v, m):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return torch.softmax(s.masked_fill(~m, float("-inf")), dim=-1) @ v


@pytest.mark.parametrize("fn", [sdpa_masked, fill_masked])
def test_compiled_bottom_right_mask_argument(fn):
    """A bottom-right causal bool mask passed to a compiled function runs as
    `mask causal align bottom_right`; the same function with a padded mask
    takes the bias kernel; both match the reference."""
    q, k, v = qkv(L=5, S=21)
    keep = keep_matrix(5, 21)[None, None].expand(2, 1, 5, 21)
    f = attncc.compile(fn)
    fused = f.lower(q, k, v, keep).ir("fused")
    assert "mask causal align bottom_right" in fused, fused
    close(f(q, k, v, keep), reference(q, k, v, keep=keep))
    pad = padded(keep_matrix(5, 21), [0, 3], "left")
    assert "mask bias" in f.lower(q, k, v, pad).ir("fused")
    close(f(q, k, v, pad), reference(q, k, v, keep=pad))


# -- transformers' eager attention code (as in transformers 4.5x/5.x) -----------------------

def repeat_kv(x, n):
    b, h, s, d = x.shape
    if n == 1:
        return x
    return x[:, :, None, :, :].expand(b, h, n, s, d).reshape(b, h * n, s, d)


class Gemma2Like(torch.nn.Module):
    """transformers.models.gemma2 eager_attention_forward (soft-cap, additive mask)."""

    def __init__(self, softcap, groups):
        super().__init__()
        self.softcap, self.num_key_value_groups = softcap, groups

    def forward(self, query, key, value, attention_mask):
        key_states = repeat_kv(key, self.num_key_value_groups)
        value_states = repeat_kv(value, self.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * query.shape[-1] ** -0.5
        attn_weights = attn_weights / self.softcap
        attn_weights = torch.tanh(attn_weights)
        attn_weights = attn_weights * self.softcap
        attn_weights = attn_weights + attention_mask
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
        attn_weights = F.dropout(attn_weights, p=0.0, training=self.training)
        attn_output = torch.matmul(attn_weights, value_states)
        return attn_output.transpose(1, 2).contiguous()


class GptOssLike(torch.nn.Module):
    """transformers.models.gpt_oss eager_attention_forward (sink column)."""

    def __init__(self, heads, groups, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.sinks = torch.nn.Parameter((torch.randn(heads, generator=g) * 2).to(dtype))
        self.num_key_value_groups = groups

    def forward(self, query, key, value, attention_mask):
        key_states = repeat_kv(key, self.num_key_value_groups)
        value_states = repeat_kv(value, self.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * query.shape[-1] ** -0.5
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        sinks = self.sinks.reshape(1, -1, 1, 1).expand(query.shape[0], -1, query.shape[-2], -1)
        combined_logits = torch.cat([attn_weights, sinks], dim=-1)
        combined_logits = combined_logits - combined_logits.max(dim=-1, keepdim=True).values
        probs = F.softmax(combined_logits, dim=-1, dtype=combined_logits.dtype)
        scores = probs[..., :-1]
        attn_weights = F.dropout(scores, p=0.0, training=self.training).to(value_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        return attn_output.transpose(1, 2).contiguous()


def hf_mask(keep, dtype=torch.float32):
    """transformers' eager 4-D float mask: 0 where kept, finfo(dtype).min elsewhere."""
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


def test_gemma2_softcap_is_fused():
    q, k, v = qkv(H=4, Hkv=2, L=6, S=17)
    keep = keep_matrix(6, 17)[None, None].expand(2, 1, 6, 17)
    m = Gemma2Like(softcap=5.0, groups=2).eval()
    f = attncc.compile(m)
    fused = f.lower(q, k, v, hf_mask(keep)).ir("fused")
    assert "softcap 5.000000e+00" in fused and "mask causal align bottom_right" in fused, fused
    assert "attn.tanh" not in fused and "kv_group 2" in fused
    ref = reference(q, k, v, keep=keep, softcap=5.0).transpose(1, 2)
    close(f(q, k, v, hf_mask(keep)), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpt_oss_sink_column_is_fused(dtype):
    q, k, v = qkv(H=4, Hkv=2, L=5, S=13, dtype=dtype)
    keep = keep_matrix(5, 13)[None, None].expand(2, 1, 5, 13)
    m = GptOssLike(heads=4, groups=2, dtype=dtype).eval()
    f = attncc.compile(m)
    mask = hf_mask(keep, dtype)
    fused = f.lower(q, k, v, mask).ir("fused")
    assert "sinks(" in fused and "mask causal align bottom_right" in fused, fused
    assert "kv_group 2" in fused and "attn.softmax" not in fused, fused
    out = f(q, k, v, mask)
    assert out.dtype == dtype
    ref = reference(q, k, v, keep=keep, sinks=m.sinks.detach()).transpose(1, 2)
    close(out, ref, dtype)


def test_gpt_oss_padding_and_no_mask():
    """Left padding in one batch: a bias with the sinks; no mask at all: sinks only
    (with dynamic=True across lengths)."""
    q, k, v = qkv(H=2, L=3, S=11)
    m = GptOssLike(heads=2, groups=1).eval()
    pad = padded(keep_matrix(3, 11), [4, 0], "left")
    f = attncc.compile(m)
    assert "mask bias" in f.lower(q, k, v, hf_mask(pad)).ir("fused")
    close(f(q, k, v, hf_mask(pad)), reference(q, k, v, keep=pad, sinks=m.sinks.detach())
          .transpose(1, 2))
    # no mask, dynamic=True: one kernel for every length, the sinks keep their [H] shape
    fd = attncc.compile(m, dynamic=True)
    for L, S in [(3, 11), (1, 17)]:
        q, k, v = qkv(H=2, L=L, S=S)
        close(fd(q, k, v, None), reference(q, k, v, sinks=m.sinks.detach()).transpose(1, 2))


def test_row_max_subtraction_alone_is_dropped():
    def fn(q, k, v):
        s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        s = s - s.amax(dim=-1, keepdim=True)
        return torch.softmax(s, dim=-1) @ v
    q, k, v = qkv(L=4, S=9)
    f = attncc.compile(fn)
    assert "mask none" in f.lower(q, k, v).ir("fused")
    close(f(q, k, v), reference(q, k, v))


# -- forms that are not recognised give a CaptureError, never a wrong result --------------

def _sink_variant(kind):
    def fn(q, k, v, sinks):
        s = q @ k.transpose(-2, -1) * 0.125
        col = sinks.reshape(1, -1, 1, 1).expand(q.shape[0], -1, q.shape[-2], -1)
        if kind == "sink_first":
            c = torch.cat([col, s], dim=-1)
            return torch.softmax(c - c.max(dim=-1, keepdim=True).values, -1)[..., 1:] @ v
        c = torch.cat([s, col], dim=-1)
        if kind == "no_keepdim":
            c = c - c.max(dim=-1).values[..., None]
        elif kind == "max_of_other":
            c = c - s.max(dim=-1, keepdim=True).values
        p = torch.softmax(c, -1)
        if kind == "keep_sink":
            return p @ torch.cat([v, v[:, :, :1]], dim=2)
        if kind == "wrong_slice":
            return p[..., 1:] @ v
        if kind == "use_probs":
            return p[..., :-1] @ v + p[..., :-1].sum()
        return p[..., :-1] @ v
    return fn


@pytest.mark.parametrize("kind", ["sink_first", "no_keepdim", "max_of_other", "keep_sink",
                                  "wrong_slice", "use_probs"])
def test_unrecognised_sink_forms_are_capture_errors(kind):
    q, k, v = qkv(B=1, L=4, S=8)
    sinks = torch.randn(2)
    with pytest.raises(CaptureError):
        attncc.compile(_sink_variant(kind)).lower(q, k, v, sinks)


def test_sink_form_from_an_argument():
    q, k, v = qkv(B=1, L=4, S=8)
    sinks = torch.randn(2)
    f = attncc.compile(_sink_variant("ok"))
    assert "sinks(" in f.lower(q, k, v, sinks).ir("fused")
    close(f(q, k, v, sinks), reference(q, k, v, sinks=sinks, scale=0.125))


def test_tanh_between_masks_is_an_error():
    def fn(q, k, v, m):
        s = (q @ k.transpose(-2, -1)).masked_fill(~m, -1e9)
        s = torch.tanh(s / 30) * 30
        return torch.softmax(s + torch.zeros_like(s).masked_fill(~m, NEG), -1) @ v
    q, k, v = qkv(B=1, L=4, S=8)
    with pytest.raises(CaptureError, match="tanh"):
        attncc.compile(fn).lower(q, k, v, keep_matrix(4, 8))


def test_gpu_targets_lower_recognised_bottom_right_masks():
    """attn-lower-to-gpu lowers bottom-right masks (docs/gpu.md): a GPU target gets
    the same structure as the CPU, and the kernel lowers for sm_80 and sm_90a."""
    def fn(q, k, v):
        L, S = q.shape[-2], k.shape[-2]
        m = torch.ones(L, S, dtype=torch.bool).tril(S - L)
        s = q @ k.transpose(-2, -1) * 0.125
        return torch.softmax(s.masked_fill(~m, float("-inf")), -1) @ v
    meta = [t.to("meta").half() for t in qkv(B=1, L=4, S=12, D=64)]  # GPU head dims: 64, 128
    cpu = attncc.compile(fn, stop_after="fused").lower(*meta).ir("fused")
    assert "mask causal align bottom_right" in cpu, cpu
    for chip in ("sm_80", "sm_90a"):
        gpu = attncc.compile(fn, target=chip, stop_after="gpu").lower(*meta)
        assert "mask causal align bottom_right" in gpu.ir("fused"), gpu.ir("fused")
        assert "gpu.launch_func" in gpu.ir("gpu")
    # a target without bottom-right masks would keep the bias (classify's switch)
    part = MaskPart("fill", masked_if=False)
    assert str(classify([part], [keep_matrix(4, 12)], 4, 12, bottom_right=False)) == "bias"
