"""Probe of the CPU kernel (attn-lower-to-cpu + JIT) against torch SDPA.

B=1, H=8, S=1024, D=64, fp32, causal and not, on `--threads` threads (2 by
default), through the real pipeline (attn-tile -> attn-pipeline -> stage
'llvm' -> ExecutionEngine). Prints the median time of each and the ratio
(torch / attncc: > 1 means attncc is faster), plus the max error against a
float64 reference. The two are timed in alternating blocks (see
alternating_blocks_ms), median of all calls.

    ATTNCC_BUILD_DIR=build-cpu PYTHONPATH=python python bench/cpu_kernel_probe.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from attncc import Graph
from attncc.compiler import compile_graph
from attncc.options import CompileOptions


def alternating_blocks_ms(fns, repeats: int, rounds: int = 3) -> list[float]:
    """Median wall time of each function. Each function runs in blocks of
    `repeats` calls after a warm-up call and a short pause, and the blocks
    alternate (A B A B ...) so that both see the same machine load. The pause
    matters: torch's OpenMP workers keep spinning for a while after each torch
    op and would steal a core from a kernel started right after one."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--block-m", type=int, default=64)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--num-stages", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, H, S, D = 1, args.heads, args.seq, args.head_dim
    options = CompileOptions(block_m=args.block_m, block_n=args.block_n,
                             num_stages=args.num_stages, num_threads=args.threads)
    print(f"B={B} H={H} S={S} D={D} fp32 threads={args.threads} "
          f"torch={torch.__version__} options={options.as_dict()}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (a busy machine skews both columns)")
    print("| causal | torch SDPA ms | attncc ms | torch/attncc | max abs err vs f64 |")
    print("|---|---|---|---|---|")
    for causal in (False, True):
        g = Graph("attention")
        q, k, v = (g.input(n, (B, H, S, D), "f32") for n in "qkv")
        g.output(g.attention(q, k, v, mask="causal" if causal else "none"))
        kernel = compile_graph(g, options)
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, H, S, D) for _ in range(3))
        out = torch.empty(B, H, S, D)
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                             is_causal=causal)
        kernel._kernel.run(q, k, v, out)
        err = (out.double() - ref).abs().max().item()
        t_torch, t_ours = alternating_blocks_ms(
            [lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
             lambda: kernel._kernel.run(q, k, v, out)], args.repeats)
        print(f"| {causal} | {t_torch:.2f} | {t_ours:.2f} | {t_torch / t_ours:.2f} | {err:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
