"""MLA (multi-head latent attention, DeepSeek-V2/V3) decode on the CPU, in the
absorbed form serving engines run: one query token per sequence, Hq query
heads over ONE latent KV head of 576 = 512 + 64 (rope) elements, V = the
cache's first 512 columns (a view, V = K[..., :512]), softmax scale 192^-0.5.

With 16-128 query heads per KV row, this decode does 2 x Hq x 1088 FLOPs per
key: it is bound by arithmetic, not by memory, so "GEMM" is the share of the
fp32 GEMM rate measured in the same run (torch.mm 2048^3, before and after
the table, the higher of the two) and "bw" the K/V
bytes read per second against torch.sum's read bandwidth. Peers, in the same
alternating rounds: the same attention as three torch ops (q k^T, softmax,
p v on the latent cache; what an engine without an MLA kernel runs) and, with
--sdpa, torch SDPA (enable_gqa=True; torch's CPU SDPA takes its math path
here, K and V differ in head dim: 110-175x slower than attncc on the AVX2 host,
seconds a call at B8 Hq128, so it is not in the default table). Rows: B in {1, 8}, Hq in {16, 128}, KV 4k per sequence,
fp32 and bf16. Not a test: it asserts nothing.

    python bench/mla_decode.py
    python bench/mla_decode.py --heads 128 --batch 1 --kv 8192 --sdpa
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_attention import (alternating_blocks_ms, cpuinfo_vector_flags, gemm_flops,  # noqa: E402
                           read_bandwidth)

import attncc  # noqa: E402
from attncc.targets import cpu as cpu_target  # noqa: E402

DK, DV = 576, 512
SCALE = 192 ** -0.5


def torch_ops(q, latent):
    """The absorbed MLA decode as torch ops: [B, Hq, 576] x [B, 576, L]."""
    s = torch.matmul(q[:, :, 0], latent[:, 0].transpose(1, 2)) * SCALE
    return torch.matmul(torch.softmax(s, -1), latent[:, 0, :, :DV]).unsqueeze(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--heads", type=int, nargs="*", default=[16, 128])
    ap.add_argument("--kv", type=int, nargs="*", default=[4096])
    ap.add_argument("--dtype", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sdpa", action="store_true", help="also torch SDPA (slow: math path)")
    args = ap.parse_args()

    print(f"host: {cpu_target.host_cpu().describe()}")
    print(f"/proc/cpuinfo vector flags: {cpuinfo_vector_flags()}")
    print(f"threads={torch.get_num_threads()} torch={torch.__version__}")
    gemm = gemm_flops()
    bw = read_bandwidth()
    rows = []
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    head = ("| dtype | B | Hq | KV | attncc ms | GEMM | bw | torch ops ms | x ops "
            "| SDPA ms | x SDPA | max err vs f64 |")
    g = torch.Generator().manual_seed(0)
    for name in args.dtype:
        dt = dtypes[name]
        for B in args.batch:
            for Hq in args.heads:
                for L in args.kv:
                    q = torch.randn(B, Hq, 1, DK, generator=g).to(dt)
                    latent = torch.randn(B, 1, L, DK, generator=g).to(dt)
                    v = latent[..., :DV]
                    ours = lambda: attncc.attention(q, latent, v, scale=SCALE)  # noqa: E731
                    ref = torch_ops(q.double(), latent.double())
                    err = (ours().double() - ref).abs().max().item()
                    fns = [ours, lambda: torch_ops(q, latent)]
                    if args.sdpa:
                        fns.append(lambda: F.scaled_dot_product_attention(
                            q, latent, v, scale=SCALE, enable_gqa=True))
                    ms = alternating_blocks_ms(fns, args.repeats)
                    flops = 2 * B * Hq * L * (DK + DV)
                    nbytes = latent.numel() * latent.element_size()
                    sdpa = (f"{ms[2]:.2f} | {ms[2] / ms[0]:.1f}" if args.sdpa
                            else "- | -")
                    rows.append((name, B, Hq, L, ms, flops, nbytes, sdpa, err))
                    print(f"  {name} B{B} Hq{Hq} KV{L}: attncc {ms[0]:.2f} ms, torch ops "
                          f"{ms[1]:.2f} ms", flush=True)
    gemm = max(gemm, gemm_flops())
    print(f"\nmachine limits (this run): fp32 GEMM {gemm / 1e9:.1f} GFLOP/s (torch.mm 2048^3, "
          f"best before/after the table), read bandwidth {bw / 1e9:.1f} GB/s (torch.sum, "
          f"512 MiB)\n")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, B, Hq, L, ms, flops, nbytes, sdpa, err in rows:
        print(f"| {name} | {B} | {Hq} | {L} | {ms[0]:.2f} | "
              f"{flops / ms[0] / 1e6 / (gemm / 1e9):.0%} | "
              f"{nbytes / ms[0] / 1e6 / (bw / 1e9):.0%} | {ms[1]:.2f} | "
              f"{ms[1] / ms[0]:.2f} | {sdpa} | {err:.1e} |")


if __name__ == "__main__":
    main()
