"""attncc vs torch.nn.functional.scaled_dot_product_attention on the CPU.

Same process, same thread count (torch.set_num_threads and the kernel's
num_threads), fp32, median over alternating blocks of calls (see
alternating_blocks_ms). Both sides are called the way users call them: they
allocate their output. Prints a markdown table (ratio = torch ms / attncc ms:
> 1 means attncc is faster) and the compile time of every pipeline stage.

    python bench/cpu_attention.py                       # B=1 H=8, S in {1024, 4096}, D in {64, 128}, causal and not
    python bench/cpu_attention.py --seq 1024 --head-dim 64 --block-m 128
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from attncc import Graph
from attncc.cli.progress import Progress
from attncc.compiler import compile_graph
from attncc.options import CompileOptions


def alternating_blocks_ms(fns, repeats: int, rounds: int = 3) -> list[float]:
    """Median wall time (ms) of each function. Each runs in blocks of `repeats`
    calls after a warm-up call and a short pause, and the blocks alternate
    (A B A B ...) so that both see the same machine load. The pause matters:
    torch's OpenMP workers keep spinning for a while after each torch op and
    would steal a core from whatever runs right after one."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            fn()
            time.sleep(0.2)
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def compile_attention(B, H, S, D, causal, options):
    g = Graph("attention")
    q, k, v = (g.input(n, (B, H, S, D), "f32") for n in "qkv")
    g.output(g.attention(q, k, v, mask="causal" if causal else "none"))
    return compile_graph(g, options)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seq", type=int, nargs="*", default=[1024, 4096])
    ap.add_argument("--head-dim", type=int, nargs="*", default=[64, 128])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--block-m", type=int, default=None, help="default: the target default")
    ap.add_argument("--block-n", type=int, default=None, help="default: the target default")
    ap.add_argument("--num-stages", type=int, default=2)
    ap.add_argument("--unroll", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = CompileOptions(block_m=args.block_m, block_n=args.block_n,
                             num_stages=args.num_stages, unroll=args.unroll,
                             num_threads=args.threads)
    print(f"threads={args.threads} torch={torch.__version__} options={options.as_dict()} "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print("| B | H | S | D | causal | torch ms | attncc ms | ratio | max abs err vs f64 |")
    print("|---|---|---|---|---|---|---|---|---|")
    compile_rows = []
    resolved_printed = False
    configs = [(S, D, causal) for S in args.seq for D in args.head_dim
               for causal in (False, True)]
    with Progress(total=len(configs), desc="benchmark") as bar:
        for S, D, causal in configs:
            B, H = 1, args.heads
            torch.manual_seed(0)
            q, k, v = (torch.randn(B, H, S, D) for _ in range(3))
            kernel = compile_attention(B, H, S, D, causal, options)
            compile_rows.append((S, D, causal, kernel.stage_seconds))
            if not resolved_printed:
                print(f"<!-- resolved options: {kernel.options.as_dict()} -->")
                resolved_printed = True
            ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                 is_causal=causal)
            err = (kernel(q, k, v).double() - ref).abs().max().item()
            t_torch, t_ours = alternating_blocks_ms(
                [lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                 lambda: kernel(q, k, v)], args.repeats)
            print(f"| {B} | {H} | {S} | {D} | {causal} | {t_torch:.2f} | {t_ours:.2f} "
                  f"| {t_torch / t_ours:.2f} | {err:.1e} |", flush=True)
            bar.update(note=f"S={S} D={D} causal={causal}")
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
