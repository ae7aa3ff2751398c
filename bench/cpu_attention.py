"""attncc vs torch.nn.functional.scaled_dot_product_attention on the CPU.

Same process, same thread count, median of repeated runs, fp32. Prints a
markdown table (ratio = torch time / attncc time: > 1 means attncc is faster)
and the compile time of every pipeline stage.

    python bench/cpu_attention.py                 # the issue's grid
    python bench/cpu_attention.py --quick         # S=1024 rows only
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attncc import Graph
from attncc.compiler import compile_graph
from attncc.options import CompileOptions


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def build(B, H, S, D, causal, options):
    g = Graph("attention")
    q = g.input("q", (B, H, S, D), "f32")
    k = g.input("k", (B, H, S, D), "f32")
    v = g.input("v", (B, H, S, D), "f32")
    g.output(g.attention(q, k, v, mask="causal" if causal else "none"))
    return compile_graph(g, options)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--block-m", type=int, default=64)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--num-stages", type=int, default=2)
    ap.add_argument("--unroll", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = CompileOptions(block_m=args.block_m, block_n=args.block_n,
                             num_stages=args.num_stages, unroll=args.unroll,
                             num_threads=args.threads)
    seqs = (1024,) if args.quick else (1024, 4096)
    print(f"threads={args.threads} repeats={args.repeats} options={options.as_dict()}")
    print("| B | H | S | D | causal | torch ms | attncc ms | ratio | max abs err |")
    print("|---|---|---|---|---|---|---|---|---|")
    compile_rows = []
    for S in seqs:
        for D in (64, 128):
            for causal in (False, True):
                B, H = 1, 8
                torch.manual_seed(0)
                q, k, v = (torch.randn(B, H, S, D) for _ in range(3))
                kernel = build(B, H, S, D, causal, options)
                compile_rows.append((S, D, causal, kernel.stage_seconds))
                ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                err = (kernel(q, k, v) - ref).abs().max().item()
                t_torch = median_ms(lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=causal), args.repeats)
                t_ours = median_ms(lambda: kernel(q, k, v), args.repeats)
                print(f"| {B} | {H} | {S} | {D} | {causal} | {t_torch:.2f} | {t_ours:.2f} "
                      f"| {t_torch / t_ours:.2f} | {err:.1e} |", flush=True)
    print()
    print("compile time per stage (ms):")
    stages = list(compile_rows[0][3])
    print("| S | D | causal | " + " | ".join(stages) + " |")
    print("|---|---|---|" + "---|" * len(stages))
    for S, D, causal, secs in compile_rows:
        print(f"| {S} | {D} | {causal} | " +
              " | ".join(f"{secs.get(s, 0) * 1e3:.1f}" for s in stages) + " |")


if __name__ == "__main__":
    main()
