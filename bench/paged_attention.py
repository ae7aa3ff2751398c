"""Paged and ragged attention on the CPU (issue 12), each beside its peer in
the same run. Not a test: it asserts nothing.

1. Paged decode beside contiguous decode: B8 (--batch), Hq32/Hkv8, D128, KV 4k per
   sequence; attncc.paged_attention over a cache with pages in shuffled order
   at page sizes 1, 16, 128, beside attncc.attention on the same K/V laid out
   contiguously (and torch SDPA). ratio = contiguous / paged (1.0: no cost).
2. Split-KV for paged decode: one sequence, KV heads 1 and 8, KV 32k, page
   size 16; num_splits=1 beside the default choice (split only where the
   decode grid, sequences x KV heads, leaves threads idle).
3. A ragged batch (one prefill chunk + 31 decode tokens over caches of
   random lengths in [1k, 8k]): attncc.varlen_attention on the packed tokens
   beside torch SDPA on the batch padded to [32, H, max Lq, max Lk]. The
   padded baseline is run without its padding mask (torch's flash kernel;
   a mask would force the math path, whose [32, 32, Lq, Lk] scores do not fit
   in memory), i.e. it is a lower bound on padded SDPA's time.
4. A decode step of many layers with a short cache (B8, KV --plan-kv per
   sequence, page 16, HND as vLLM's backend uses): `--layers` paged calls
   with the index checks and work tables per call, beside one
   attncc.plan_paged and the same calls with plan= (what vLLM's backend does
   per step), and contiguous attncc.attention. Per-call Python cost shows
   here, where the kernels are short.

    python bench/paged_attention.py
    python bench/paged_attention.py --prefill 2048 --max-kv 8192    # the issue's size
    python bench/paged_attention.py --skip split ragged plan --batch 1 --kv 1024   # one sequence
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

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def paged_from(k: torch.Tensor, v: torch.Tensor, P: int, g: torch.Generator,
               layout: str = "NHD"):
    """[B, Hkv, S, D] K/V as a cache in shuffled page order: NHD [pages, P, Hkv, D]
    or HND [pages, Hkv, P, D]."""
    B, H, S, D = k.shape
    n = (S + P - 1) // P
    order = torch.randperm(B * n, generator=g)
    table = order.view(B, n).to(torch.int32)
    pad = n * P - S
    perm = (0, 2, 3, 1, 4) if layout == "NHD" else (0, 2, 1, 3, 4)

    def pages(t):
        t = F.pad(t, (0, 0, 0, pad)).view(B, H, n, P, D).permute(*perm)
        out = t.new_zeros(B * n, *t.shape[2:])
        out[order] = t.reshape(B * n, *t.shape[2:])
        return out

    return pages(k), pages(v), table


def paged_rows(args, dtype, bw: float) -> None:
    B, Hq, Hkv, D, S = args.batch, args.heads, args.kv_heads, args.head_dim, args.kv
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, Hq, 1, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True)
    lens = torch.full((B,), S, dtype=torch.int32)
    nbytes = 2 * B * Hkv * S * D * k.element_size()
    print(f"\npaged decode, {args.dtype}: B{B}, Hq{Hq}/Hkv{Hkv}, D{D}, KV {S} per sequence; "
          "ms per call (median); paged: each call checks its index tensors and builds its "
          "work tables; plan: with plan= (one attncc.plan_paged per step, as an engine "
          "calls it); ratio = contiguous attncc / paged attncc with a plan (without); bw = "
          "K+V bytes / time with a plan / read bandwidth\n")
    print("| layout | page size | contiguous ms | paged ms | plan ms | ratio | torch SDPA ms "
          "| paged bw | max err |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layout in args.layouts:
        for P in args.page_sizes:
            kc, vc, table = paged_from(k, v, P, g, layout)
            qp = q[:, :, 0]
            out = attncc.paged_attention(qp, kc, vc, table, lens, layout=layout)
            err = (out.double() - ref[:, :, 0]).abs().max().item()
            plan = attncc.plan_paged(table, lens, page_size=P)
            assert torch.equal(attncc.paged_attention(qp, kc, vc, plan=plan, layout=layout), out)
            attncc.attention(q, k, v)
            t_contig, t_paged, t_plan, t_torch = alternating_blocks_ms(
                [lambda: attncc.attention(q, k, v),
                 lambda: attncc.paged_attention(qp, kc, vc, table, lens, layout=layout),
                 lambda: attncc.paged_attention(qp, kc, vc, plan=plan, layout=layout),
                 lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)],
                args.repeats, rounds=2)
            print(f"| {layout} | {P} | {t_contig:.2f} | {t_paged:.2f} | {t_plan:.2f} | "
                  f"{t_contig / t_plan:.2f} ({t_contig / t_paged:.2f}) | {t_torch:.2f} | "
                  f"{100 * nbytes / (t_plan * 1e-3) / bw:.0f}% | {err:.1e} |", flush=True)


def split_rows(args, dtype, bw: float) -> None:
    g = torch.Generator().manual_seed(2)
    S, D, P = args.split_kv, args.head_dim, 16
    print(f"\nsplit-KV paged decode, {args.dtype}: B1, G4, D{D}, KV {S}, page size {P} "
          "(NHD); ms per call; ratio = unsplit / default\n")
    print("| Hq/Hkv | splits chosen | num_splits=1 ms | default ms | ratio | default bw | max err |")
    print("|---|---|---|---|---|---|---|")
    for Hkv in (1, 8):
        q = torch.randn(1, 4 * Hkv, 1, D, generator=g).to(dtype)
        k = torch.randn(1, Hkv, S, D, generator=g).to(dtype)
        v = torch.randn(1, Hkv, S, D, generator=g).to(dtype)
        kc, vc, table = paged_from(k, v, P, g)
        lens = torch.full((1,), S, dtype=torch.int32)
        qp = q[:, :, 0]
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True)
        plan = attncc.plan_paged(table, lens, page_size=P)
        err = (attncc.paged_attention(qp, kc, vc, plan=plan).double() - ref[:, :, 0]).abs().max()
        # The split the call chose: its plan's (only) schedule (ragged_schedule.Decode).
        dec = next(iter(plan._schedules.values())).decode
        chosen = 1 if dec.pieces is None else dec.pieces.numel()
        if dec.heads_inner:
            chosen = f"{chosen} (heads inside)"
        t1, t_auto = alternating_blocks_ms(
            [lambda: attncc.paged_attention(qp, kc, vc, table, lens, num_splits=1),
             lambda: attncc.paged_attention(qp, kc, vc, table, lens)], args.repeats, rounds=2)
        nbytes = 2 * k.numel() * k.element_size()
        print(f"| {4 * Hkv}/{Hkv} | {chosen} | {t1:.2f} | {t_auto:.2f} | {t1 / t_auto:.2f} | "
              f"{100 * nbytes / (t_auto * 1e-3) / bw:.0f}% | {err.item():.1e} |", flush=True)


def ragged_row(args, dtype) -> None:
    Hq, Hkv, D = args.heads, args.kv_heads, args.head_dim
    g = torch.Generator().manual_seed(1)
    lk = torch.randint(args.min_kv, args.max_kv + 1, (32,), generator=g)
    lk[0] = max(int(lk[0]), args.prefill)
    lq = torch.ones(32, dtype=torch.int64)
    lq[0] = args.prefill
    cu_q = torch.cat([torch.zeros(1, dtype=torch.int64), lq.cumsum(0)]).to(torch.int32)
    cu_k = torch.cat([torch.zeros(1, dtype=torch.int64), lk.cumsum(0)]).to(torch.int32)
    q = torch.randn(int(lq.sum()), Hq, D, generator=g).to(dtype)
    k = torch.randn(int(lk.sum()), Hkv, D, generator=g).to(dtype)
    v = torch.randn(int(lk.sum()), Hkv, D, generator=g).to(dtype)
    Lq, Lk = int(lq.max()), int(lk.max())
    qp = q.new_zeros(32, Hq, Lq, D)
    kp = k.new_zeros(32, Hkv, Lk, D)
    vp = v.new_zeros(32, Hkv, Lk, D)
    for s in range(32):
        qp[s, :, :lq[s]] = q[cu_q[s]:cu_q[s + 1]].transpose(0, 1)
        kp[s, :, :lk[s]] = k[cu_k[s]:cu_k[s + 1]].transpose(0, 1)
        vp[s, :, :lk[s]] = v[cu_k[s]:cu_k[s + 1]].transpose(0, 1)

    def ours():
        return attncc.varlen_attention(q, k, v, cu_q, cu_k, Lq, Lk, causal=True)

    # K/V heads repeated beforehand (not timed): enable_gqa can route CPU SDPA
    # to the math path, whose scores would not fit in memory.
    kpe, vpe = kp.repeat_interleave(Hq // Hkv, 1), vp.repeat_interleave(Hq // Hkv, 1)
    del kp, vp

    def padded():
        return F.scaled_dot_product_attention(qp, kpe, vpe)

    # correctness of the ragged result on the decode rows (the prefill's is in the tests)
    out = ours()
    dec = torch.cat([F.scaled_dot_product_attention(
        q[cu_q[s]:cu_q[s + 1]].transpose(0, 1)[None].double(),
        k[cu_k[s]:cu_k[s + 1]].transpose(0, 1)[None].double(),
        v[cu_k[s]:cu_k[s + 1]].transpose(0, 1)[None].double(), enable_gqa=True)[0].transpose(0, 1)
        for s in range(1, 32)])
    err = (out[args.prefill:].double() - dec).abs().max().item()
    t_pad, t_ours = alternating_blocks_ms([padded, ours], args.ragged_repeats, rounds=1)
    print(f"\nragged batch, {args.dtype}: one {args.prefill}-token prefill chunk (causal, "
          f"bottom-right) + 31 decode tokens, caches {args.min_kv}..{args.max_kv} "
          f"(max {Lk}), Hq{Hq}/Hkv{Hkv}, D{D}\n")
    print("| padded torch SDPA ms (no mask: lower bound) | attncc varlen ms | ratio | "
          "decode rows max err |")
    print("|---|---|---|---|")
    print(f"| {t_pad:.1f} | {t_ours:.1f} | {t_pad / t_ours:.2f} | {err:.1e} |", flush=True)


def plan_rows(args, dtype) -> None:
    B, Hq, Hkv, D, S, P, n = 8, args.heads, args.kv_heads, args.head_dim, args.plan_kv, 16, \
        args.layers
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, Hq, 1, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, S, D, generator=g).to(dtype)
    kc, vc, table = paged_from(k, v, P, g, "HND")
    lens = torch.full((B,), S, dtype=torch.int32)
    qp = q[:, :, 0]
    attncc.paged_attention(qp, kc, vc, table, lens, layout="HND")
    attncc.attention(q, k, v)

    def unplanned():
        for _ in range(n):
            attncc.paged_attention(qp, kc, vc, table, lens, layout="HND")

    def planned():
        plan = attncc.plan_paged(table, lens, page_size=P)
        for _ in range(n):
            attncc.paged_attention(qp, kc, vc, plan=plan, layout="HND")

    def contiguous():
        for _ in range(n):
            attncc.attention(q, k, v)

    plan = attncc.plan_paged(table, lens, page_size=P)
    same = torch.equal(attncc.paged_attention(qp, kc, vc, plan=plan, layout="HND"),
                       attncc.paged_attention(qp, kc, vc, table, lens, layout="HND"))
    t_un, t_plan, t_contig = alternating_blocks_ms([unplanned, planned, contiguous],
                                                   args.repeats, rounds=2)
    print(f"\ndecode step of {n} layers, {args.dtype}: B{B}, Hq{Hq}/Hkv{Hkv}, D{D}, KV {S} per "
          f"sequence, page {P} (HND); ms per step (median); plan = one plan_paged + {n} "
          "calls with plan=\n")
    print("| no plan ms | plan ms | ratio | contiguous attncc ms | per-call saving ms | "
          "same bits |")
    print("|---|---|---|---|---|---|")
    print(f"| {t_un:.2f} | {t_plan:.2f} | {t_un / t_plan:.2f} | {t_contig:.2f} | "
          f"{(t_un - t_plan) / n:.3f} | {same} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    ap.add_argument("--batch", type=int, default=8, help="sequences of the paged rows")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--kv", type=int, default=4096)
    ap.add_argument("--page-sizes", type=int, nargs="+", default=[1, 16, 128])
    ap.add_argument("--layouts", nargs="+", choices=["NHD", "HND"], default=["NHD", "HND"])
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--min-kv", type=int, default=1024)
    ap.add_argument("--max-kv", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ragged-repeats", type=int, default=2)
    ap.add_argument("--split-kv", type=int, default=32768, help="KV length of the split rows")
    ap.add_argument("--plan-kv", type=int, default=256, help="KV length of the plan row")
    ap.add_argument("--layers", type=int, default=32, help="layers of the plan row's step")
    ap.add_argument("--skip", choices=["paged", "split", "ragged", "plan"], nargs="*",
                    default=[])
    args = ap.parse_args()
    host = cpu_target.host_cpu()
    print(f"host: {host.describe()}; /proc/cpuinfo: {cpuinfo_vector_flags()}; "
          f"threads {torch.get_num_threads()}; torch {torch.__version__}")
    bw = read_bandwidth()
    print(f"read bandwidth (torch.sum, 512 MiB fp32): {bw / 1e9:.1f} GB/s")
    dtype = DTYPES[args.dtype]
    if "paged" not in args.skip:
        paged_rows(args, dtype, bw)
    if "split" not in args.skip:
        split_rows(args, dtype, bw)
    if "ragged" not in args.skip:
        ragged_row(args, dtype)
    if "plan" not in args.skip:
        plan_rows(args, dtype)


if __name__ == "__main__":
    main()
