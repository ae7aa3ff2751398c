"""Per-call overhead of attncc.attention on the CPU, beside torch SDPA's.

A decode step of a small model (B1, Hq8/Hkv2, D64) at a few KV lengths: at 16 keys the
kernel is nearly free, so the time is the Python around it; at 1k-4k it is a real step.
Rows: `attncc.attention` (its fast path after the first call), the operator the
integrations call (`integrations.op.attention_call`: no dispatcher in eager inference)
and `torch.ops.attncc.attention` through the dispatcher, beside
`F.scaled_dot_product_attention(enable_gqa=True)`. Best of `--rounds` loops of `--calls`
calls, same process. Not a test: it asserts nothing.

    python bench/call_overhead.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from cpu_attention import cpuinfo_vector_flags  # noqa: E402

import attncc  # noqa: E402
from attncc.integrations import op  # noqa: E402


def best_us(fn, calls: int, rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kv", type=int, nargs="+", default=[16, 1024, 4096])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"host: {cpuinfo_vector_flags()}; threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}")
    print("decode step B1 Hq8/Hkv2 D64 fp32; us per call (best of rounds)\n")
    print("| KV | torch SDPA | attncc.attention | attention_call | torch.ops.attncc.attention |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for S in args.kv:
            q = torch.randn(1, 8, 1, 64, generator=g)
            k, v = torch.randn(1, 2, S, 64, generator=g), torch.randn(1, 2, S, 64, generator=g)
            row = [best_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                           args.calls, args.rounds),
                   best_us(lambda: attncc.attention(q, k, v), args.calls, args.rounds),
                   best_us(lambda: op.attention_call(q, k, v, None, "bottom_right", None, -1, -1,
                                                     None, None), args.calls, args.rounds),
                   best_us(lambda: op.attention_op(q, k, v, None, "bottom_right", None, -1, -1,
                                                   None, None), args.calls, args.rounds)]
            print(f"| {S} | " + " | ".join(f"{x:.1f}" for x in row) + " |")


if __name__ == "__main__":
    main()
