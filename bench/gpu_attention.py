"""attncc vs torch SDPA vs Triton (bench/triton_attention.py) on an NVIDIA GPU:
TFLOP/s of the attention forward pass, fp16/bf16, causal and not.

Times with CUDA events on the current stream (median of --iters runs after
warmup); FLOPs = 4 * B * H * S^2 * D (halved for causal). Without a GPU (or
without cuda-bindings) it prints why and exits 0.

    python bench/gpu_attention.py
    python bench/gpu_attention.py --dtype bf16 --seq 1024 4096 --dim 128
    python bench/gpu_attention.py --mma mma_sync      # Hopper: the Ampere kernel
    python bench/gpu_attention.py --tma off           # Hopper: wgmma with cp.async loads
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cuda_time_ms(fn, iters: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seq", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--dim", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--mma", default="auto", choices=["auto", "wgmma", "mma_sync"])
    ap.add_argument("--tma", default="on", choices=["on", "off"])
    args = ap.parse_args()

    from attncc.runtime.cuda import cuda_available

    ok, why = cuda_available()
    if not ok:
        print(f"skipped: {why}")
        return
    import torch
    import torch.nn.functional as F

    from attncc import Graph
    from attncc.compiler import compile_graph
    from attncc.options import CompileOptions

    try:
        import triton_attention as ta
    except ImportError:
        ta = None
    tdt = torch.float16 if args.dtype == "f16" else torch.bfloat16
    print(f"{torch.cuda.get_device_name()}  {args.dtype}  B={args.batch} H={args.heads}  "
          f"mma={args.mma} tma={args.tma}\n")
    print("| S | D | causal | attncc TFLOP/s | SDPA TFLOP/s | Triton TFLOP/s | attncc / SDPA |")
    print("|---|---|---|---|---|---|---|")
    for S in args.seq:
        for D in args.dim:
            for causal in (False, True):
                B, H = args.batch, args.heads
                q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=tdt) for _ in range(3))
                g = Graph("attention")
                gq, gk, gv = (g.input(n, (B, H, S, D), args.dtype) for n in "qkv")
                g.output(g.attention(gq, gk, gv, mask="causal" if causal else "none"))
                kind = dict(mma=args.mma, tma=args.tma == "on")
                opts = (CompileOptions(block_m=128, block_n=64, num_stages=3, **kind) if D == 128
                        else CompileOptions(**kind))
                kern = compile_graph(g, opts, target="cuda")
                flops = 4 * B * H * S * S * D / (2 if causal else 1)
                tf = lambda ms: flops / ms / 1e9  # noqa: E731
                t_ours = cuda_time_ms(lambda: kern(q, k, v), args.iters)
                t_sdpa = cuda_time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                      args.iters)
                t_tri = None
                if ta is not None:
                    try:
                        t_tri = cuda_time_ms(lambda: ta.launch(q, k, v, causal), args.iters)
                    except Exception as e:  # pragma: no cover - reported, not fatal
                        print(f"(Triton failed: {e})")
                print(f"| {S} | {D} | {causal} | {tf(t_ours):.1f} | {tf(t_sdpa):.1f} | "
                      f"{'-' if t_tri is None else f'{tf(t_tri):.1f}'} | {t_sdpa / t_ours:.2f} |")


if __name__ == "__main__":
    main()
