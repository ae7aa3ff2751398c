"""Generation with transformers on the CPU: attn_implementation="attncc" beside the
implementation transformers offers for the model ("sdpa", or "eager" where the model does not
support sdpa) on the same tiny random-weight model in the same run (issue 13's benchmark).

Rows: a prompt of `--prompt` tokens (default 1024) generating `--new` tokens (64) greedily
at batch 1 and 8, and a long-context row (prompt 8192, batch 1) where attention dominates.
The models (`--models`, default llama) are the families the integration tests use
(test/python/hf_tiny.py) at a larger size: 2 layers, GQA (Hq 8, Hkv 2, head dim 64 by
default), hidden = heads x head dim, small enough that attention is a large part of each
step, as in the issue:

* llama: full causal attention on every layer;
* qwen2: layer 0 full, layer 1 a sliding window of 4096 (max_window_layers=1);
* mistral: a sliding window of 4096 on every layer;
* gemma2: logit soft-capping 50 on the scores (30 on the final logits), alternating sliding
  (4096) and full layers; transformers refuses sdpa for it (no soft-capping), so the peer is
  eager;
* gpt_oss: attention sinks (random, as trained ones are not zero), alternating sliding (128)
  and full layers, a 2-expert MoE; no sdpa in transformers either, so the peer is eager.

Tokens/s counts the new tokens of all sequences over the whole generate() call (prefill
included). Each implementation is timed after a warm-up generate() of the same shapes, so
attncc's kernel compiles (one per query-length bucket and attention structure) are not in
the timed call; they are reported apart. The tokens of the two implementations are
compared. Not a test: it asserts nothing.

    python bench/hf_generate.py
    python bench/hf_generate.py --models llama qwen2 mistral gemma2 gpt_oss --rounds 3
    python bench/hf_generate.py --rows 1024x1 --new 16
    python bench/hf_generate.py --dtype bfloat16     # weights, activations and KV cache in bf16
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_attention import cpuinfo_vector_flags  # noqa: E402

import attncc  # noqa: E402
import attncc.integrations.transformers as attncc_hf  # noqa: E402
import transformers  # noqa: E402

# Per family: (config class, model class, config fields beyond the common ones).
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(use_sliding_window=True, sliding_window=4096, max_window_layers=1)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=4096)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(sliding_window=4096, attn_logit_softcapping=50.0,
                    final_logit_softcapping=30.0)),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                dict(sliding_window=128, num_local_experts=2, num_experts_per_tok=1)),
}


def build(layers: int, heads: int, kv_heads: int, head_dim: int, max_len: int,
          dtype: torch.dtype = torch.float32, family: str = "llama"):
    """A random-weight model of `family` (FAMILIES) at this size."""
    config_name, model_name, extra = FAMILIES[family]
    if not hasattr(transformers, config_name):
        raise SystemExit(f"this transformers ({transformers.__version__}) has no {config_name}")
    torch.manual_seed(0)
    hidden = heads * head_dim
    if family == "gemma2":
        extra = dict(extra, query_pre_attn_scalar=head_dim)
    if family == "gpt_oss":     # its YaRN RoPE: 32 x 4096 positions, as the real model's
        max_len = max(max_len, 131072)
    config = getattr(transformers, config_name)(
        vocab_size=256, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=head_dim, max_position_embeddings=max_len, **extra)
    model = getattr(transformers, model_name)(config).to(dtype).eval()
    if family == "gpt_oss":     # sinks start at zero; trained ones are not
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.sinks.normal_(0.0, 1.0)
    return model


def peer(model) -> str:
    """The implementation attncc is compared with: sdpa where the model supports it."""
    return "sdpa" if getattr(model, "_supports_sdpa", False) else "eager"


def generate(model, impl: str, ids: torch.Tensor, new: int) -> tuple[torch.Tensor, float]:
    model.set_attn_implementation(impl)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, pad_token_id=0)
        return out, time.perf_counter() - start


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """The model's shape options (`build`'s arguments), shared with
    bench/hf_continuous_batching.py."""
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="the model's dtype (weights, activations, KV cache)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["1024x1", "1024x8", "8192x1"],
                    help="PROMPTxBATCH per row")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--models", nargs="+", choices=list(FAMILIES), default=["llama"],
                    help="model families (the integration tests' families)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="timed generations per implementation, alternating; the median counts")
    add_model_args(ap)
    args = ap.parse_args()
    attncc_hf.register()
    rows = [tuple(int(x) for x in r.split("x")) for r in args.rows]
    max_len = max(p for p, _ in rows) + args.new
    print(f"host: {cpuinfo_vector_flags()}; threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}; transformers {transformers.__version__}; "
          f"attncc {attncc.__version__}")
    print(f"models: {args.layers} layers, Hq{args.heads}/Hkv{args.kv_heads}, head dim "
          f"{args.head_dim}, {args.dtype}, random weights; {args.new} new tokens, greedy; "
          f"median of {args.rounds} alternating rounds\n")
    print("| model | prompt | batch | peer | peer tok/s | attncc tok/s | ratio | "
          "attncc compiles (warm-up) | attncc calls | same tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for family in args.models:
        model = build(args.layers, args.heads, args.kv_heads, args.head_dim, max_len,
                      getattr(torch, args.dtype), family)
        for prompt, batch in rows:
            print(row(model, family, prompt, batch, args.new, args.rounds), flush=True)


def row(model, family: str, prompt: int, batch: int, new: int, rounds: int) -> str:
    other = peer(model)
    g = torch.Generator().manual_seed(prompt + batch)
    ids = torch.randint(1, 256, (batch, prompt), generator=g)
    before = attncc.cache_info()["compiled"]
    generate(model, "attncc", ids, new)            # warm-up (compiles)
    compiles = attncc.cache_info()["compiled"] - before
    generate(model, other, ids, new)
    t_peer, t_ours = [], []
    for _ in range(rounds):     # alternating: drifts of a shared host hit both
        ref, t = generate(model, other, ids, new)
        t_peer.append(t)
        calls = attncc.cache_info()["hits"]
        out, t = generate(model, "attncc", ids, new)
        calls = attncc.cache_info()["hits"] - calls    # attncc kernels run (no silent fallback)
        t_ours.append(t)
    t_peer, t_ours = statistics.median(t_peer), statistics.median(t_ours)
    tokens = batch * new
    same = torch.equal(out, ref)
    return (f"| {family} | {prompt} | {batch} | {other} | {tokens / t_peer:.1f} | "
            f"{tokens / t_ours:.1f} | {t_peer / t_ours:.2f} | {compiles} | "
            f"{calls} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
