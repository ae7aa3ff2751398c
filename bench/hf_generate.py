"""Generation with transformers on the CPU: attn_implementation="attncc" beside "sdpa"
on the same tiny random-weight model in the same run (issue 13's benchmark).

Rows: a prompt of `--prompt` tokens (default 1024) generating `--new` tokens (64) greedily
at batch 1 and 8, and a long-context row (prompt 8192, batch 1) where attention dominates.
The model is a small Llama with GQA (Hq 8, Hkv 2, head dim 64 by default): small enough that
attention is a large part of each step, as in the issue. Tokens/s counts the new tokens of
all sequences over the whole generate() call (prefill included). Each implementation is
timed after a warm-up generate() of the same shapes, so attncc's kernel compiles (one per
query-length bucket) are not in the timed call; they are reported apart. The tokens of the
two implementations are compared. Not a test: it asserts nothing.

    python bench/hf_generate.py
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
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402


def build(layers: int, heads: int, kv_heads: int, head_dim: int, max_len: int,
          dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    hidden = heads * head_dim
    config = LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=max_len)
    return LlamaForCausalLM(config).to(dtype).eval()


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
    ap.add_argument("--rounds", type=int, default=5,
                    help="timed generations per implementation, alternating; the median counts")
    add_model_args(ap)
    args = ap.parse_args()
    attncc_hf.register()
    rows = [tuple(int(x) for x in r.split("x")) for r in args.rows]
    max_len = max(p for p, _ in rows) + args.new
    model = build(args.layers, args.heads, args.kv_heads, args.head_dim, max_len,
                  getattr(torch, args.dtype))
    print(f"host: {cpuinfo_vector_flags()}; threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}; attncc {attncc.__version__}")
    print(f"model: Llama, {args.layers} layers, Hq{args.heads}/Hkv{args.kv_heads}, head dim "
          f"{args.head_dim}, {args.dtype}, random weights; {args.new} new tokens, greedy\n")
    print("| prompt | batch | sdpa tok/s | attncc tok/s | ratio | attncc compiles (warm-up) "
          "| same tokens |")
    print("|---|---|---|---|---|---|---|")
    for prompt, batch in rows:
        g = torch.Generator().manual_seed(prompt + batch)
        ids = torch.randint(1, 256, (batch, prompt), generator=g)
        before = attncc.cache_info()["compiled"]
        generate(model, "attncc", ids, args.new)            # warm-up (compiles)
        compiles = attncc.cache_info()["compiled"] - before
        generate(model, "sdpa", ids, args.new)
        t_sdpa, t_ours = [], []
        for _ in range(args.rounds):     # alternating: drifts of a shared host hit both
            ref, t = generate(model, "sdpa", ids, args.new)
            t_sdpa.append(t)
            out, t = generate(model, "attncc", ids, args.new)
            t_ours.append(t)
        t_sdpa, t_ours = statistics.median(t_sdpa), statistics.median(t_ours)
        tokens = batch * args.new
        same = torch.equal(out, ref)
        print(f"| {prompt} | {batch} | {tokens / t_sdpa:.1f} | {tokens / t_ours:.1f} | "
              f"{t_sdpa / t_ours:.2f} | {compiles} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
