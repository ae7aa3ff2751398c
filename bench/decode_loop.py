"""A generate-style decode loop: attncc.attention beside torch's SDPA.

The KV length grows one token per step from --start to --end (B1, Hq32/Hkv8,
D128, fp32 by default); each step attends one query row to every key (a
decode step: no mask). Both run in this process on the same tensors (K/V of
each step made contiguous before timing, not timed); torch uses
enable_gqa=True. Prints the host ISA (/proc/cpuinfo flags), the total time of
each, attncc's first call (the compile) apart from the rest, the kernels
compiled (attncc.cache_info) and the largest difference from torch. The
kernel cache starts empty (a fresh ATTNCC_CACHE_DIR) unless --warm. Not a
test: it asserts nothing.

    python bench/decode_loop.py
    python bench/decode_loop.py --start 512 --end 1024 --heads 32 --kv-heads 8 --head-dim 128
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def host_isa() -> str:
    try:
        flags = set()
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), "?")
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    have = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
            if f in flags]
    return f"{model}; flags: {' '.join(have) or 'none of avx2/avx512f/amx'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, default=512)
    ap.add_argument("--end", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--warm", action="store_true", help="keep the user's kernel cache")
    args = ap.parse_args()
    if not args.warm:
        os.environ["ATTNCC_CACHE_DIR"] = tempfile.mkdtemp(prefix="attncc-decode-bench-")

    import torch
    import torch.nn.functional as F

    import attncc

    print(f"host ISA: {host_isa()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, attncc "
          f"{attncc.__version__}")
    torch.manual_seed(0)
    Hq, Hkv, D = args.heads, args.kv_heads, args.head_dim
    kbuf = torch.randn(1, Hkv, args.end, D)
    vbuf = torch.randn(1, Hkv, args.end, D)
    t_torch = t_attncc = t_first = 0.0
    worst = 0.0
    steps = 0
    before = attncc.cache_info()
    with torch.inference_mode():
        for S in range(args.start, args.end + 1):
            q = torch.randn(1, Hq, 1, D)
            k, v = kbuf[:, :, :S].contiguous(), vbuf[:, :, :S].contiguous()
            t0 = time.perf_counter()
            ref = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            t1 = time.perf_counter()
            out = attncc.attention(q, k, v)
            t2 = time.perf_counter()
            t_torch += t1 - t0
            if steps == 0:
                t_first = t2 - t1
            t_attncc += t2 - t1
            worst = max(worst, (out - ref).abs().max().item())
            steps += 1
    info = attncc.cache_info()
    compiled = info["compiled"] - before["compiled"]
    print(f"steps: {steps} (KV {args.start}..{args.end}, B1 Hq{Hq}/Hkv{Hkv} D{D} fp32)")
    print(f"torch SDPA   total {t_torch * 1e3:9.1f} ms   per step {t_torch / steps * 1e6:8.1f} us")
    print(f"attncc       total {t_attncc * 1e3:9.1f} ms   per step "
          f"{t_attncc / steps * 1e6:8.1f} us")
    rest = (t_attncc - t_first) / max(1, steps - 1)
    print(f"attncc       first call (compile) {t_first * 1e3:.1f} ms; other steps "
          f"{rest * 1e6:.1f} us each ({(t_attncc - t_first) * 1e3:.1f} ms total)")
    print(f"kernels compiled: {compiled} (cache_info: {info})")
    print(f"max |attncc - torch|: {worst:.2e}")


if __name__ == "__main__":
    main()
