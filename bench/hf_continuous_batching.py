"""transformers' continuous batching (`generate_batch`) on the CPU: attncc's
ragged kernels (`enable_continuous_batching`, name "attncc_flash") beside
"sdpa" on the same tiny random-weight Llama (bench/hf_generate.py's model) in
the same run. Requests of different prompt lengths share steps (prefill
chunks and decode tokens together). Tokens/s counts the new tokens of all
requests over the whole call, after a warm-up call of the same requests (so
attncc's kernel compiles are not timed). Not a test: it asserts nothing.

    python bench/hf_continuous_batching.py
    python bench/hf_continuous_batching.py --requests 16 --min-prompt 256 --max-prompt 2048
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_attention import cpuinfo_vector_flags  # noqa: E402
from hf_generate import add_model_args, build  # noqa: E402

import attncc.integrations.transformers as attncc_hf  # noqa: E402
from transformers import GenerationConfig  # noqa: E402
from transformers.generation import ContinuousBatchingConfig  # noqa: E402


def run(model, prompts, new: int, page: int) -> tuple[list, float]:
    gen = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None,
                           pad_token_id=0)
    total = sum(len(p) + new for p in prompts)
    cb = ContinuousBatchingConfig(page_size=page, num_blocks=2 * (total // page + len(prompts)))
    model.generate_batch(inputs=prompts, generation_config=gen, continuous_batching_config=cb)
    t = time.perf_counter()
    out = model.generate_batch(inputs=prompts, generation_config=gen,
                               continuous_batching_config=cb)
    dt = time.perf_counter() - t
    order = sorted(out, key=lambda r: int(r.rsplit("_", 1)[1]))
    return [out[r].generated_tokens for r in order], dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--min-prompt", type=int, default=256)
    ap.add_argument("--max-prompt", type=int, default=1024)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--page-size", type=int, default=64)
    add_model_args(ap)
    args = ap.parse_args()
    print(f"host ISA: {cpuinfo_vector_flags()}; threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}")
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.min_prompt, args.max_prompt + 1, (args.requests,), generator=g)
    prompts = [torch.randint(1, 256, (int(n),), generator=g).tolist() for n in lengths]
    model = build(args.layers, args.heads, args.kv_heads, args.head_dim,
                  args.max_prompt + args.new + 8, getattr(torch, args.dtype))
    print(f"{args.requests} requests, prompts {args.min_prompt}..{args.max_prompt} tokens "
          f"(sum {int(lengths.sum())}), {args.new} new tokens each, page size {args.page_size}; "
          f"Llama {args.layers} layers, Hq{args.heads}/Hkv{args.kv_heads}, D{args.head_dim}, {args.dtype}\n")
    model.config._attn_implementation = "sdpa"
    ref, t_sdpa = run(model, prompts, args.new, args.page_size)
    attncc_hf.enable_continuous_batching(model)
    before = attncc_hf.cb_calls()
    got, t_ours = run(model, prompts, args.new, args.page_size)
    n = args.requests * args.new
    print("| implementation | s | new tokens/s |\n|---|---|---|")
    print(f"| sdpa | {t_sdpa:.2f} | {n / t_sdpa:.1f} |")
    print(f"| attncc_flash | {t_ours:.2f} | {n / t_ours:.1f} |")
    print(f"\nratio (sdpa s / attncc s): {t_sdpa / t_ours:.2f}; same tokens: {got == ref}; "
          f"attncc ragged calls: {attncc_hf.cb_calls() - before}")


if __name__ == "__main__":
    main()
