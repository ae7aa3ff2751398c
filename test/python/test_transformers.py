"""attn_implementation="attncc" in transformers (attncc.integrations.transformers):
greedy generate() of tiny random models (Llama GQA, Qwen2 and Mistral sliding
windows, Gemma2 soft-cap + sliding, gpt-oss sinks + sliding, DeepSeek-V3 MLA
with K and V head dims that differ) gives eager's
tokens and logits within 1e-4 (fp32), with the default dynamic cache and left
padding; attncc's operator provably ran, with the structure (causal / window /
no mask) passed as such rather than as a dense bias; kernels stay constant
across decode steps; missing features raise naming themselves."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'attncc[transformers]')")

import attncc  # noqa: E402
from attncc.errors import InputError  # noqa: E402
from attncc.integrations import op  # noqa: E402
from attncc.integrations import transformers as hf  # noqa: E402

import hf_tiny  # noqa: E402

TOL = 1e-4
NEW = 4


@pytest.fixture(scope="module", autouse=True)
def registered():
    assert hf.register() == "attncc"


@pytest.fixture
def recorded(monkeypatch):
    """The structure of each call to attncc's operator: (mask shape or None,
    causal, window)."""
    calls = []
    real = hf.attention_call

    def spy(q, k, v, mask, causal, scale, wl, wr, softcap, sinks):
        calls.append((None if mask is None else tuple(mask.shape), causal, (wl, wr),
                      softcap, sinks is not None, q.shape[2], k.shape[2]))
        return real(q, k, v, mask, causal, scale, wl, wr, softcap, sinks)

    monkeypatch.setattr(hf, "attention_call", spy)
    return calls


# (model, batch, prompt length, left padding of row 1)
CASES = [("llama", 1, 6, 0), ("llama", 2, 6, 2), ("qwen2", 1, 6, 0), ("mistral", 2, 6, 2),
         ("gemma2", 1, 6, 0), ("gpt_oss", 1, 6, 0), ("deepseek_v3", 2, 6, 2)]


@pytest.mark.parametrize("name,batch,length,pad", CASES,
                         ids=[f"{c[0]}-b{c[1]}-pad{c[3]}" for c in CASES])
def test_generate_matches_eager(name, batch, length, pad, recorded):
    if name not in hf_tiny.available():
        pytest.skip(f"transformers {transformers.__version__} has no {name}")
    model = hf_tiny.tiny(name)
    ids, mask = hf_tiny.prompt(batch, length, pad)
    ref = hf_tiny.generate(model, "eager", ids, mask, NEW)
    calls0 = op.calls()
    got = hf_tiny.generate(model, "attncc", ids, mask, NEW)
    where = json.dumps(dict(model=name, batch=batch, length=length, pad=pad))
    layers = model.config.num_hidden_layers
    # Every attention of every forward (prefill + NEW - 1 decode steps) ran attncc.
    assert op.calls() - calls0 == layers * NEW, where
    assert len(recorded) == layers * NEW, where
    assert torch.equal(got.sequences, ref.sequences), where
    assert hf_tiny.max_logit_diff(got, ref) <= TOL, where

    types = getattr(model.config, "layer_types", None) or ["full_attention"] * layers
    if name == "mistral":
        types = ["sliding_attention"] * layers
    prefill, decode = recorded[:layers], recorded[layers:]
    for layer, (call, kind) in enumerate(zip(prefill, types)):
        mask_shape, causal, window, softcap, sinks, L, S = call
        assert (L, S) == (length, length), where
        if pad:   # structure and padding in one bool mask, per batch row
            assert mask_shape == (batch, 1, length, length) and causal == "none", where
        elif kind == "sliding_attention":   # the window, not a bias
            assert (mask_shape, causal, window) == (None, "none", (hf_tiny.WINDOW - 1, 0)), where
        else:                               # causal, not a bias
            assert (mask_shape, causal, window) == (None, "top_left", (-1, -1)), where
        assert softcap == (5.0 if name == "gemma2" else None), where
        assert sinks == (name == "gpt_oss"), where
    for i, call in enumerate(decode):   # one query row sees every cached key: no mask
        mask_shape, causal, window, _, _, L, S = call   # but the padding
        assert L == 1 and causal == "none" and window == (-1, -1), where
        if types[i % layers] == "full_attention":
            assert mask_shape == ((batch, 1, 1, S) if pad else None), where
        else:   # a sliding cache holds window - 1 past keys: the padding leaves it
            assert S <= hf_tiny.WINDOW and mask_shape in (None, (batch, 1, 1, S)), where


def test_kernels_constant_across_decode_steps():
    model = hf_tiny.tiny("llama")
    ids, mask = hf_tiny.prompt(1, 6)
    hf_tiny.generate(model, "attncc", ids, mask, 3)   # prefill + decode kernels
    compiled, calls = attncc.cache_info()["compiled"], op.calls()
    out = hf_tiny.generate(model, "attncc", ids, mask, 8)  # longer caches, same kernels
    assert attncc.cache_info()["compiled"] == compiled
    assert op.calls() - calls == 2 * 8
    ref = hf_tiny.generate(model, "eager", ids, mask, 8)
    assert torch.equal(out.sequences, ref.sequences)
    assert hf_tiny.max_logit_diff(out, ref) <= TOL


def test_static_cache_matches_eager():
    """generate() makes a static cache's masks before the forward (the mask
    function then gets its own AttnccMask back); the keys are the whole cache,
    the unwritten slots masked as padding."""
    model = hf_tiny.tiny("llama")
    ids, mask = hf_tiny.prompt(2, 6, 2)
    outs = {}
    for impl in ("eager", "attncc"):
        model.set_attn_implementation(impl)
        calls = op.calls()
        with torch.no_grad():
            outs[impl] = model.generate(ids, attention_mask=mask, max_new_tokens=NEW,
                                        min_new_tokens=NEW, do_sample=False, output_logits=True,
                                        return_dict_in_generate=True, pad_token_id=0,
                                        cache_implementation="static")
    assert op.calls() - calls == 2 * NEW
    assert torch.equal(outs["attncc"].sequences, outs["eager"].sequences)
    assert hf_tiny.max_logit_diff(outs["attncc"], outs["eager"]) <= TOL


# -- the mask function, against transformers' own sdpa masks (no kernels) --------------------

def _keep_of_args(mask, causal, window, B, L, S):
    """The bool [B, 1, L, S] keep-mask that attncc's operator arguments mean."""
    keep = torch.ones(B, 1, L, S, dtype=torch.bool)
    if mask is not None:
        keep = keep & mask
    tri = torch.ones(L, S, dtype=torch.bool)
    if causal == "top_left":
        keep = keep & tri.tril(0)
    elif causal == "bottom_right":
        keep = keep & tri.tril(S - L)
    if window != (-1, -1):
        left, right = window
        keep = keep & tri.tril(S - L + right) & ~tri.tril(S - L - left - 1)
    return keep


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(1, 7), past=st.integers(0, 9),
       window=st.sampled_from([None, 1, 3, 5]), pad=st.integers(0, 4),
       kv_cut=st.integers(0, 4))
def test_mask_function_matches_sdpa_mask(B, L, past, window, pad, kv_cut):
    """Any cache state (past tokens, a sliding cache that dropped `kv_cut`
    keys), window and left padding: the operator arguments mean exactly
    transformers' sdpa mask."""
    from transformers.masking_utils import (causal_mask_function, sdpa_mask,
                                            sliding_window_causal_mask_function)
    where = json.dumps(dict(B=B, L=L, past=past, window=window, pad=pad, kv_cut=kv_cut))
    kv_offset = min(kv_cut, past)
    S = past + L - kv_offset
    fn = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
    attention = torch.ones(B, past + L, dtype=torch.bool)
    attention[B - 1, :min(pad, past + L - 1)] = False
    kw = dict(batch_size=B, q_length=L, kv_length=S, q_offset=past, kv_offset=kv_offset,
              mask_function=fn, attention_mask=attention, local_size=window)
    ref = sdpa_mask(**kw, allow_is_causal_skip=False)
    m = hf.attncc_mask(**kw)
    mask, causal, win = hf._args_of_mask(m, L, S, torch.device("cpu"))
    got = _keep_of_args(mask, causal, win, B, L, S)
    assert torch.equal(got, ref.expand(B, 1, L, S)), where
    if pad == 0 or past + L == 1:
        assert mask is None or m.structure == "dense", where   # structure, not a bias


def test_mask_structures():
    from transformers.masking_utils import (causal_mask_function,
                                            sliding_window_causal_mask_function)
    prefill = hf.attncc_mask(1, 6, 6, 0, 0, causal_mask_function)
    assert (prefill.structure, prefill.delta, prefill.padding) == ("causal", 0, None)
    decode = hf.attncc_mask(1, 1, 9, 8, 0, causal_mask_function)
    assert decode.structure == "none"
    chunk = hf.attncc_mask(1, 3, 9, 6, 0, causal_mask_function)   # chunked prefill
    assert hf._args_of_mask(chunk, 3, 9, "cpu") == (None, "bottom_right", (-1, -1))
    slide = hf.attncc_mask(1, 6, 6, 0, 0, sliding_window_causal_mask_function(4), local_size=4)
    assert (slide.structure, slide.window) == ("sliding", 4)
    # A sliding cache in decode keeps window - 1 keys + the new one: all visible.
    slide_decode = hf.attncc_mask(1, 1, 4, 9, 6, sliding_window_causal_mask_function(4),
                                  local_size=4)
    assert slide_decode.structure == "none"
    # Something else (packed sequences: a block diagonal) stays a dense mask.
    packed = torch.tensor([[0, 0, 0, 1, 1, 1]])
    fn = lambda b, h, q, kv: (packed[b, q] == packed[b, kv]) & (kv <= q)  # noqa: E731
    dense = hf.attncc_mask(1, 6, 6, 0, 0, fn)
    assert dense.structure == "dense" and dense.dense.shape == (1, 1, 6, 6)


@pytest.mark.parametrize("band_rows", [1, 3, 256])
def test_structure_compares_by_row_blocks(monkeypatch, band_rows):
    """_structure's band comparison a block of rows at a time: every block is
    compared (a mismatch in the last row only is found), for causal and sliding
    bands with query offsets, and batches that differ are dense."""
    monkeypatch.setattr(hf, "_BAND_ROWS", band_rows)
    L, S = 300, 310

    def tril_band(delta, window=None):   # built apart from attncc's own _band
        keep = torch.ones(L, S, dtype=torch.bool).tril(delta)
        return keep if window is None else keep & ~torch.ones(L, S, dtype=torch.bool).tril(
            delta - window)

    for delta in (0, 10, -3):
        causal = tril_band(delta)
        slide = tril_band(delta, 40)
        assert hf._structure(causal[None, None], L, S, delta, None) == ("causal", None)
        assert hf._structure(causal[None, None], L, S, delta, 40) == ("causal", None)
        assert hf._structure(slide[None, None], L, S, delta, 40) == ("sliding", 40)
        assert hf._structure(slide[None, None], L, S, delta, None) == ("dense", None)
        for band, window in ((causal, None), (slide, 40)):
            late = band.clone()
            late[L - 1, 0] = ~late[L - 1, 0]
            assert hf._structure(late[None, None], L, S, delta, window) == ("dense", None)
            two = torch.stack([band, late])[:, None]
            assert hf._structure(two, L, S, delta, window) == ("dense", None)
    assert hf._structure(torch.ones(2, 1, L, S, dtype=torch.bool), L, S, 0, 40) == ("none", None)
    # A window reaching past every row's keys is the causal band; attncc_mask
    # then calls it causal.
    wide = tril_band(10)
    assert hf._structure(wide[None, None], L, S, 10, 400) == ("sliding", 400)
    assert hf._simplify("sliding", L, S, 10, 400) == ("causal", None)


def test_sliding_window_recognised_without_evaluating(monkeypatch):
    """transformers' sliding-window mask function is recognised from its parts
    (no [B, 1, L, S] evaluation: ~0.5 s a forward at 8k) and gives the same
    AttnccMask as evaluating it; look-alikes that mean something else, and
    other mask functions, are evaluated."""
    from transformers import masking_utils as mu
    calls = []
    real = mu.sdpa_mask
    monkeypatch.setattr(mu, "sdpa_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    cases = [(1, 6, 6, 0, 0, 4), (2, 1, 4, 9, 6, 4), (1, 3, 9, 6, 0, 2), (1, 7, 7, 0, 0, 1),
             (1, 5, 12, 7, 0, 16), (3, 4, 10, 8, 2, 3)]
    for B, L, S, q_off, kv_off, W in cases:
        fn = mu.sliding_window_causal_mask_function(W)
        assert hf._sliding_window_of(fn) == W
        pad = torch.ones(B, kv_off + S, dtype=torch.bool)
        pad[-1, 0] = False
        for attention in (None, pad):
            kw = dict(batch_size=B, q_length=L, kv_length=S, q_offset=q_off, kv_offset=kv_off,
                      mask_function=fn, attention_mask=attention, local_size=W)
            calls.clear()
            fast = hf.attncc_mask(**kw)
            assert calls == [], (B, L, S, q_off, kv_off, W)
            monkeypatch.setattr(hf, "_sliding_window_of", lambda f: None)
            slow = hf.attncc_mask(**kw)
            monkeypatch.undo()
            monkeypatch.setattr(mu, "sdpa_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
            assert calls == [1]
            for field in ("q_length", "kv_length", "structure", "delta", "window"):
                assert getattr(fast, field) == getattr(slow, field), (field, kw)
            assert (fast.padding is None) == (slow.padding is None)
            if fast.padding is not None:
                assert torch.equal(fast.padding, slow.padding)
    # The same parts meaning something else (the overlay's window edge moved): evaluated.
    overlay = mu.sliding_window_overlay(4)
    moved = mu.and_masks(lambda b, h, q, kv: overlay(b, h, q, kv + 1), mu.causal_mask_function)
    assert hf._sliding_window_of(moved) is None
    assert hf._sliding_window_of(mu.and_masks(mu.causal_mask_function,
                                              mu.causal_mask_function)) is None
    assert hf._sliding_window_of(mu.causal_mask_function) is None
    assert hf._sliding_window_of(lambda b, h, q, kv: kv <= q) is None
    # A transformers whose causal function meant something else (here: the
    # diagonal excluded) fails the check on the window's edges.
    monkeypatch.setattr(mu, "causal_mask_function", lambda b, h, q, kv: kv < q)
    assert hf._sliding_window_of(mu.and_masks(mu.sliding_window_overlay(4),
                                              mu.causal_mask_function)) is None
    monkeypatch.undo()
    assert hf._sliding_window_of(mu.and_masks(mu.sliding_window_overlay(4),
                                              mu.causal_mask_function)) == 4


def test_sliding_window_checked_once_per_window(monkeypatch):
    """The edge check (an evaluation of the mask function, ~60 us) runs once
    per window: a decode step calls the mask function every forward."""
    from transformers import masking_utils as mu
    checks = []
    real = hf._keeps_window
    monkeypatch.setattr(hf, "_keeps_window", lambda f, w: checks.append(w) or real(f, w))
    monkeypatch.setattr(hf, "_WINDOW_CHECKED", {})
    for W in (5, 5, 9, 5, 9):
        assert hf._sliding_window_of(mu.sliding_window_causal_mask_function(W)) == W
    assert checks == [5, 9]
    # A failed check is kept too, and does not leak to the real function's key.
    overlay = mu.sliding_window_overlay(5)
    monkeypatch.setattr(mu, "causal_mask_function", lambda b, h, q, kv: kv < q)
    for _ in range(2):
        assert hf._sliding_window_of(mu.and_masks(overlay, mu.causal_mask_function)) is None
    assert checks == [5, 9, 5]
    monkeypatch.undo()


# -- what attncc lacks ---------------------------------------------------------------------

def test_output_attentions_raises():
    model = hf_tiny.tiny("llama", "attncc")
    ids, _ = hf_tiny.prompt(1, 4)
    with torch.no_grad(), pytest.raises(InputError, match="output_attentions"):
        model(ids, output_attentions=True)


def test_dropout_in_training_raises():
    model = hf_tiny.tiny("llama", "attncc")
    model.config.attention_dropout = 0.1
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.1
    model.train()
    ids, _ = hf_tiny.prompt(1, 4)
    with pytest.raises(InputError, match="dropout"):
        model(ids)


def test_backward_raises_forward_with_grad_runs():
    model = hf_tiny.tiny("llama", "attncc")
    ids, _ = hf_tiny.prompt(1, 4)
    out = model(ids).logits          # forward with grad enabled runs attncc
    with pytest.raises(InputError, match="no backward"):
        out.sum().backward()


def test_unsupported_arguments_raise():
    q = torch.randn(1, 4, 3, 16)
    k = v = torch.randn(1, 2, 3, 16)
    module = torch.nn.Module()
    with pytest.raises(InputError, match="head_mask"):
        hf.attncc_attention(module, q, k, v, None, head_mask=torch.ones(4))
    with pytest.raises(InputError, match="position_bias"):
        hf.attncc_attention(module, q, k, v, None, position_bias=torch.zeros(1, 4, 3, 3))
    with pytest.raises(InputError, match="BlockMask|masks made by"):
        hf.attncc_attention(module, q, k, v, object())
    m = hf.attncc_mask(1, 5, 5, 0, 0)
    with pytest.raises(InputError, match=r"\(L, S\)"):
        hf.attncc_attention(module, q, k, v, m)
