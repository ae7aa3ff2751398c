"""Decode attention (one query token against a KV cache) on the CPU: attncc
beside torch SDPA (enable_gqa=True) in the same run, as a fraction of the
machine's read bandwidth measured in that run.

Rows: B in {1, 8}, Hq32/Hkv8 (GQA 4), D128, KV in {1k, 4k, 32k}, fp32 and
bf16. Decode reads every K/V byte once, so its limit is memory bandwidth:
"bw" is (K + V bytes) / time / the measured read bandwidth (torch.sum over
512 MiB). Not a test: it asserts nothing.

    python bench/decode_attention.py
    python bench/decode_attention.py --kv 4096 --batch 1 --dtype fp32
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_attention import alternating_blocks_ms, cpuinfo_vector_flags, read_bandwidth  # noqa: E402

import attncc  # noqa: E402
from attncc.targets import cpu as cpu_target  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def row(B: int, S: int, dtype: torch.dtype, Hq: int, Hkv: int, D: int, bw: float,
        repeats: int) -> str:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, Hq, 1, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True)
    ours = attncc.attention(q, k, v)          # compiles (or loads) the kernel
    err = (ours.double() - ref).abs().max().item()
    t_torch, t_ours = alternating_blocks_ms(
        [lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
         lambda: attncc.attention(q, k, v)], repeats, rounds=2)
    nbytes = 2 * B * Hkv * S * D * k.element_size()
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return (f"| {B} | {S} | {name} | {t_torch:.3f} | {t_ours:.3f} | {t_torch / t_ours:.2f} | "
            f"{100 * nbytes / (t_torch * 1e-3) / bw:.0f}% | {100 * nbytes / (t_ours * 1e-3) / bw:.0f}% "
            f"| {err:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--kv", type=int, nargs="+", default=[1024, 4096, 32768])
    ap.add_argument("--dtype", choices=list(DTYPES), nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    host = cpu_target.host_cpu()
    print(f"host: {host.describe()}; /proc/cpuinfo: {cpuinfo_vector_flags()}; "
          f"threads {torch.get_num_threads()}; torch {torch.__version__}")
    bw = read_bandwidth()
    print(f"read bandwidth (torch.sum, 512 MiB fp32): {bw / 1e9:.1f} GB/s\n")
    print(f"decode: Lq=1, Hq{args.heads}/Hkv{args.kv_heads}, D{args.head_dim}; ms per call "
          "(median); ratio = torch / attncc (> 1: attncc faster); bw = K+V bytes / time / "
          "read bandwidth\n")
    print("| B | KV | dtype | torch ms | attncc ms | ratio | torch bw | attncc bw | max err |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dt in args.dtype:
        for B in args.batch:
            for S in args.kv:
                print(row(B, S, DTYPES[dt], args.heads, args.kv_heads, args.head_dim, bw,
                          args.repeats), flush=True)


if __name__ == "__main__":
    main()
