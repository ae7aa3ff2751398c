"""Decode attention (one query token against a KV cache) on the CPU: attncc
beside torch SDPA (enable_gqa=True) in the same run, as a fraction of the
machine's read bandwidth measured in that run.

Rows: B in {1, 8}, Hq32/Hkv8 (GQA 4), D128, KV in {1k, 4k, 32k}, fp32 and
bf16 (and, with --dtype, fp8e4m3 / fp8e5m2: quantized K/V under a bf16 query,
beside torch widening K/V to bf16 for SDPA). Decode reads every K/V byte once, so its limit is memory bandwidth:
"bw" is (K + V bytes) / time / the measured read bandwidth (torch.sum over
512 MiB). "P" is the split count attncc chose (split-KV, flash decoding;
attncc.frontend.split_kv.plan); "P=1 ms" the same kernel family without
splitting (num_splits=1), for the effect of splitting. Not a test: it asserts
nothing.

K/V come from DRAM as in a model's decode step, where the other layers' caches
evict a layer's before it is read again: each call reads the next of `copies`
caches ("layers"), enough of them that one round of calls reads at least
--cold-mib MiB (default 1024, several times any L3). `--cold-mib 0` reuses one
cache (a cache smaller than L3 is then read from L3 on repeated calls, and bw
can exceed 100%). The read bandwidth is torch.sum's, best of 5; attncc's and
torch's times are medians, so "bw" errs low.

On hosts whose bandwidth drifts within a run (the virtual machines this was
written on gave 30-58 GB/s within minutes), a bandwidth measured once before
the table is a poor yardstick for a row timed minutes later. So each row also
times torch.sum over the same K/V caches, cycled the same way, in the same
alternating rounds as the kernels ("sum GB/s", median like the kernels' times);
"of sum" is attncc's time against it: the share of what a plain streaming read
of the same bytes, at the same moments, reaches.

    python bench/decode_attention.py
    python bench/decode_attention.py --kv 4096 --batch 1 --dtype fp32
    python bench/decode_attention.py --kv 4096 --batch 8 --dtype bf16 fp8e4m3 fp8e5m2
    python bench/decode_attention.py --kv 4096 --batch 8 --dtype fp8e4m3 --kv-scales head

`--kv-scales` gives the fp8 rows scales: "tensor" one k_scale / v_scale per
tensor (compiled in; v_scale != 1 under the bf16 query takes the f32-output
route), "head" one per sequence and KV head ([B, Hkv] tensors, through an f32
query; docs/quantized-kv.md); the default "unit" none (vLLM's default 1.0).
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
from attncc.frontend import split_kv  # noqa: E402
from attncc.options import CompileOptions  # noqa: E402
from attncc.targets import cpu as cpu_target  # noqa: E402

# name -> (q's dtype, K/V's dtype). fp8 rows: quantized caches (scales 1, as
# vLLM's default) under a bf16 query; torch's peer widens K/V to bf16 and runs
# SDPA (torch has no fp8 attention on the CPU).
DTYPES = {"fp32": (torch.float32, torch.float32), "bf16": (torch.bfloat16, torch.bfloat16),
          "fp8e4m3": (torch.bfloat16, torch.float8_e4m3fn),
          "fp8e5m2": (torch.bfloat16, torch.float8_e5m2)}


def reference0(q, k, v, k_scale=1.0, v_scale=1.0) -> torch.Tensor:
    """float64 attention of batch 0, one KV head at a time (a GQA-expanded
    float64 SDPA of the 32k rows would need gigabytes); K/V times their
    scales (numbers or [B, Hkv] tensors)."""
    Hq, Hkv, D = q.shape[1], k.shape[1], q.shape[3]
    g = Hq // Hkv
    ks, vs = (s[0] if isinstance(s, torch.Tensor) else [s] * Hkv for s in (k_scale, v_scale))
    out = []
    for h in range(Hkv):
        kh, vh = k[0, h].double() * float(ks[h]), v[0, h].double() * float(vs[h])
        s = q[0, h * g:(h + 1) * g].double() @ kh.T / D ** 0.5
        out.append(torch.softmax(s, -1) @ vh)
    return torch.cat(out)


class Layers:
    """`copies` K/V caches of one shape; `next()` returns the next one in turn
    (a model's decode step reads each layer's cache once)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, copies: int):
        self.kv = [(k, v)] + [(k.clone(), v.clone()) for _ in range(copies - 1)]
        self.i = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.i = (self.i + 1) % len(self.kv)
        return self.kv[self.i]


def stream_read(k: torch.Tensor, v: torch.Tensor) -> None:
    """torch.sum over K and V as 32-bit words (a bf16 sum is not bandwidth-bound,
    and the words' values do not matter): a plain streaming read of their bytes."""
    for t in (k, v):
        flat = t.reshape(-1)
        (flat.view(torch.float32) if flat.numel() * flat.element_size() % 4 == 0
         else flat.float()).sum()


def torch_peer(q, k, v, k_scale=1.0, v_scale=1.0):
    if k.dtype != q.dtype:    # fp8: widen (times the scales), then SDPA
        ks, vs = (s[:, :, None, None] if isinstance(s, torch.Tensor) else s
                  for s in (k_scale, v_scale))
        k, v = (k.to(q.dtype) * ks).to(q.dtype), (v.to(q.dtype) * vs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def kv_scales(kind: str, kv_dtype: torch.dtype, B: int, Hkv: int) -> dict:
    if kind == "unit" or kv_dtype not in (torch.float8_e4m3fn, torch.float8_e5m2):
        return {}
    if kind == "tensor":
        return {"k_scale": 0.05, "v_scale": 0.5}
    g = torch.Generator().manual_seed(1)
    return {"k_scale": 0.05 + 0.01 * torch.rand(B, Hkv, generator=g),
            "v_scale": 0.5 + 0.1 * torch.rand(B, Hkv, generator=g)}


def row(B: int, S: int, name: str, Hq: int, Hkv: int, D: int, bw: float,
        repeats: int, num_splits, cold_mib: int, scales: str = "unit") -> str:
    g = torch.Generator().manual_seed(0)
    dtype, kv_dtype = DTYPES[name]
    q = torch.randn(B, Hq, 1, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(kv_dtype)
    v = torch.randn(B, Hkv, S, D, generator=g).to(kv_dtype)
    sc = kv_scales(scales, kv_dtype, B, Hkv)
    ours = attncc.attention(q, k, v, num_splits=num_splits, **sc)   # compiles (or loads) it
    attncc.attention(q, k, v, num_splits=1, **sc)
    err = (ours[0].double() - reference0(q, k, v, **sc)).abs().max().item()
    nbytes = 2 * B * Hkv * S * D * k.element_size()
    layers = Layers(k, v, max(1, -(-(cold_mib << 20) // nbytes)))
    t_torch, t_ours, t_one, t_sum = alternating_blocks_ms(
        [lambda: torch_peer(q, *layers.next(), **sc),
         lambda: attncc.attention(q, *layers.next(), num_splits=num_splits, **sc),
         lambda: attncc.attention(q, *layers.next(), num_splits=1, **sc),
         lambda: stream_read(*layers.next())], repeats, rounds=2)
    # The split count attention() chose (GQA packing: Hkv heads of Hq / Hkv rows).
    opts = CompileOptions().resolved("cpu", Hq // Hkv)
    P = num_splits or split_kv.plan("cpu", "cpu", opts.num_threads, opts.block_m, opts.block_n,
                                    B, Hkv, Hq // Hkv, S, D, None).splits
    name += f" ({scales} scales)" if sc else ""
    return (f"| {B} | {S} | {name} | {P} | {t_torch:.3f} | {t_ours:.3f} | {t_one:.3f} | "
            f"{t_torch / t_ours:.2f} | {100 * nbytes / (t_torch * 1e-3) / bw:.0f}% | "
            f"{100 * nbytes / (t_ours * 1e-3) / bw:.0f}% | {nbytes / (t_sum * 1e-3) / 1e9:.1f} | "
            f"{100 * t_sum / t_ours:.0f}% | {err:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--kv", type=int, nargs="+", default=[1024, 4096, 32768])
    ap.add_argument("--dtype", choices=list(DTYPES), nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--num-splits", type=int, default=None,
                    help="force attncc's split count (default: its heuristic)")
    ap.add_argument("--cold-mib", type=int, default=1024,
                    help="cycle through copies of K/V totalling at least this many MiB so "
                         "that every call reads them from DRAM (0: one copy, reused)")
    ap.add_argument("--kv-scales", choices=["unit", "tensor", "head"], default="unit",
                    help="the fp8 rows' k_scale / v_scale: none, one per tensor, or one per "
                         "sequence and KV head")
    args = ap.parse_args()
    host = cpu_target.host_cpu()
    print(f"host: {host.describe()}; /proc/cpuinfo: {cpuinfo_vector_flags()}; "
          f"threads {torch.get_num_threads()}; torch {torch.__version__}")
    bw = read_bandwidth()
    print(f"read bandwidth (torch.sum, 512 MiB fp32): {bw / 1e9:.1f} GB/s; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"decode: Lq=1, Hq{args.heads}/Hkv{args.kv_heads}, D{args.head_dim}; K/V cycled "
          f"through >= {args.cold_mib} MiB of copies; ms per call "
          "(median); ratio = torch / attncc (> 1: attncc faster); bw = K+V bytes / time / "
          "read bandwidth; sum GB/s = torch.sum over the same K/V in the same rounds, "
          "of sum = its time / attncc's\n")
    print("| B | KV | dtype | P | torch ms | attncc ms | attncc P=1 ms | ratio | torch bw | "
          "attncc bw | sum GB/s | of sum | max err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dt in args.dtype:
        for B in args.batch:
            for S in args.kv:
                print(row(B, S, dt, args.heads, args.kv_heads, args.head_dim, bw,
                          args.repeats, args.num_splits, args.cold_mib, args.kv_scales),
                      flush=True)
    bw2 = read_bandwidth()
    print(f"\nread bandwidth after the table: {bw2 / 1e9:.1f} GB/s; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
