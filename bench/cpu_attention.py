"""attncc vs torch.nn.functional.scaled_dot_product_attention on the CPU.

Prints, from one run:
  * the host: CPU name, the ISA class attncc generates code for, its features
    (as LLVM sees them) and /proc/cpuinfo's vector flags;
  * the machine's limits measured in the same run: fp32 GEMM rate (torch.mm,
    2048^3, best of several), the fp32 FMA peak (bench/fma_peak.py: what the
    vector units do at most; a BLAS may reach only part of it) and memory read
    bandwidth (torch.sum over 512 MiB);
  * per row (prefill, B=1 H=8, S in {1024, 4096}, D in {64, 128}, causal and
    not, fp32): torch and attncc ms (median over alternating blocks of calls),
    the ratio (torch / attncc: > 1 means attncc is faster), attncc's efficiency
    (useful FLOP/s / the GEMM rate, and / the FMA peak) and the error against
    float64;
  * bf16 prefill (S1024, each head dim) beside torch's bf16 SDPA, with both
    sides' errors against float64 (`--no-fp32` runs only this table);
  * compile latency: cold compile per stage, and a new process calling
    attncc.attention on a kernel it compiled before (disk cache hit), measured
    as the time of the first call after `import attncc`.

Same process, same thread count (torch.set_num_threads and the kernel's
num_threads). Not a test: it asserts nothing.

    python bench/cpu_attention.py
    python bench/cpu_attention.py --seq 1024 --head-dim 64 --block-m 128
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import torch
import torch.nn.functional as F

from attncc import Graph
from attncc.cli.progress import Progress
from attncc.compiler import compile_graph
from attncc.options import CompileOptions
from attncc.targets import cpu as cpu_target
from fma_peak import best_seconds, fma_peak_flops


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


def gemm_flops(n: int = 2048, tries: int = 8) -> float:
    """fp32 GEMM FLOP/s of torch.mm (best of `tries` after two warm-ups): the
    machine's compute limit. Measured before and after the table; the higher
    of the two is used (a busy neighbour only ever lowers it)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    torch.mm(a, b)
    return 2 * n ** 3 / best_seconds(lambda: torch.mm(a, b), tries)


def read_bandwidth(mib: int = 512, tries: int = 5) -> float:
    """Bytes/s of torch.sum over a `mib` MiB fp32 tensor (best of `tries`)."""
    x = torch.ones(mib * 2 ** 20 // 4)
    x.sum()
    return x.numel() * 4 / best_seconds(x.sum, tries)


def cpuinfo_vector_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " ".join(sorted(w for w in line.split(":", 1)[1].split()
                                           if w.startswith(("avx", "amx", "fma", "f16c"))))
    except OSError:
        pass
    return "?"


def measure(kernel, q, k, v, causal: bool, repeats: int) -> tuple[float, float, float]:
    """(torch ms, attncc ms, attncc's max error vs float64) for one row."""
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
    err = (kernel(q, k, v).double() - ref).abs().max().item()
    t_torch, t_ours = alternating_blocks_ms(
        [lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
         lambda: kernel(q, k, v)], repeats)
    return t_torch, t_ours, err


def attention_flops(B, H, S, D, causal) -> float:
    """Useful FLOPs: Q.K^T and P.V, 2 * S * S * D each; causal keeps S(S+1)/2 pairs."""
    pairs = S * (S + 1) / 2 if causal else S * S
    return 4 * B * H * pairs * D


def compile_attention(B, H, S, D, causal, options, dtype="f32"):
    g = Graph("attention")
    q, k, v = (g.input(n, (B, H, S, D), dtype) for n in "qkv")
    g.output(g.attention(q, k, v, mask="causal" if causal else "none"))
    return compile_graph(g, options)


_NEW_PROCESS = textwrap.dedent("""
    import time, torch
    t0 = time.perf_counter()
    import attncc
    t1 = time.perf_counter()
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 8, 1024, 64) for _ in range(3))
    t2 = time.perf_counter()
    attncc.attention(q, k, v, causal=True, num_threads={threads})
    t3 = time.perf_counter()
    info = attncc.compiler.KernelCache.default("cpu").hits
    print(f"{{(t1 - t0) * 1e3:.0f}} {{(t3 - t2) * 1e3:.1f}} {{info['disk']}}")
""")


def new_process_call_ms(threads: int) -> tuple[float, float, float, int]:
    """(import ms, cold first call ms, cached first call ms, disk hits) of a
    new process calling attncc.attention, twice: with an empty cache, then
    with what the first process left."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, ATTNCC_CACHE_DIR=d, ATTNCC_CACHE="1")
        code = _NEW_PROCESS.format(threads=threads)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            runs.append(out)
    (_, cold, _), (imp, warm, hits) = runs
    return float(imp), float(cold), float(warm), int(hits)


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
    ap.add_argument("--cpu", default="host", choices=cpu_target.CPU_CHOICES)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-fp32", action="store_true", help="only the bf16 table")
    ap.add_argument("--bf16-seq", type=int, nargs="*", default=[1024])
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()
    os.environ["ATTNCC_CACHE"] = "0"   # cold compiles in this process
    torch.set_num_threads(args.threads)
    options = CompileOptions(block_m=args.block_m, block_n=args.block_n,
                             num_stages=args.num_stages, unroll=args.unroll,
                             num_threads=args.threads, cpu=args.cpu)
    host = cpu_target.host_cpu()
    isa = cpu_target.resolve(args.cpu)
    print(f"host: {host.describe()}")
    print(f"/proc/cpuinfo vector flags: {cpuinfo_vector_flags()}")
    print(f"code generated for: {isa.name} ({isa.vector_width} f32 lanes, "
          f"{isa.micro_rows}x{isa.micro_vectors}-vector matmul block)")
    gemm = gemm_flops()
    bw = read_bandwidth()
    rows = []
    print(f"threads={args.threads} torch={torch.__version__} options={options.as_dict()} "
          f"load average before: {os.getloadavg()[0]:.2f}")

    compile_rows = []
    resolved_printed = False
    configs = [(S, D, causal) for S in args.seq for D in args.head_dim
               for causal in (False, True)] if not args.no_fp32 else []
    with Progress(total=len(configs), desc="benchmark") as bar:
        for S, D, causal in configs:
            B, H = 1, args.heads
            torch.manual_seed(0)
            q, k, v = (torch.randn(B, H, S, D) for _ in range(3))
            kernel = compile_attention(B, H, S, D, causal, options)
            compile_rows.append((S, D, causal, kernel.stage_seconds))
            if not resolved_printed:
                print(f"resolved options: {kernel.options.as_dict()}")
                resolved_printed = True
            t_torch, t_ours, err = measure(kernel, q, k, v, causal, args.repeats)
            rows.append((B, H, S, D, causal, t_torch, t_ours, err))
            bar.update(note=f"S={S} D={D} causal={causal}")
    gemm = max(gemm, gemm_flops())
    peak = fma_peak_flops(args.threads)
    print(f"machine limits (this run): fp32 GEMM {gemm / 1e9:.1f} GFLOP/s (torch.mm 2048^3, "
          f"best before/after the table), fp32 FMA peak {peak / 1e9:.1f} GFLOP/s "
          f"(bench/fma_peak.py), read bandwidth {bw / 1e9:.1f} GB/s (torch.sum, 512 MiB)")
    print()
    print("| B | H | S | D | causal | torch ms | attncc ms | ratio | torch eff | attncc eff "
          "| attncc of FMA peak | max abs err vs f64 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for B, H, S, D, causal, t_torch, t_ours, err in rows:
        fl = attention_flops(B, H, S, D, causal)
        print(f"| {B} | {H} | {S} | {D} | {causal} | {t_torch:.2f} | {t_ours:.2f} "
              f"| {t_torch / t_ours:.2f} | {fl / t_torch / 1e-3 / gemm:.0%} "
              f"| {fl / t_ours / 1e-3 / gemm:.0%} | {fl / t_ours / 1e-3 / peak:.0%} "
              f"| {err:.1e} |", flush=True)

    if not args.no_bf16:
        print()
        print(f"bf16 prefill (B=1 H={args.heads}; bf16 matmuls: {isa.as_dict()['bf16_matmul']}; "
              "err: attncc's max abs error vs f64, torch err: torch bf16's):")
        print("| S | D | causal | torch bf16 ms | attncc bf16 ms | ratio | err | torch err |")
        print("|---|---|---|---|---|---|---|---|")
        for S in args.bf16_seq:
            for D in args.head_dim:
                for causal in (False, True):
                    torch.manual_seed(0)
                    q, k, v = (torch.randn(1, args.heads, S, D, dtype=torch.bfloat16)
                               for _ in range(3))
                    kernel = compile_attention(1, args.heads, S, D, causal, options, "bf16")
                    t_torch, t_ours, err = measure(kernel, q, k, v, causal, args.repeats)
                    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                         is_causal=causal)
                    mine = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    t_err = (mine.double() - ref).abs().max().item()
                    print(f"| {S} | {D} | {causal} | {t_torch:.2f} | {t_ours:.2f} "
                          f"| {t_torch / t_ours:.2f} | {err:.1e} | {t_err:.1e} |", flush=True)

    if not compile_rows:
        return
    print()
    print("cold compile time per stage (ms; the disk cache is not used here):")
    stages = list(compile_rows[0][3])
    print("| S | D | causal | " + " | ".join(stages) + " | total |")
    print("|---|---|---|" + "---|" * (len(stages) + 1))
    for S, D, causal, secs in compile_rows:
        print(f"| {S} | {D} | {causal} | " +
              " | ".join(f"{secs.get(s, 0) * 1e3:.1f}" for s in stages) +
              f" | {sum(secs.values()) * 1e3:.0f} |")
    if not args.no_latency:
        imp, cold, warm, hits = new_process_call_ms(args.threads)
        print()
        print("new process, attncc.attention(q, k, v, causal=True) on [1, 8, 1024, 64] fp32:")
        print(f"  import attncc: {imp:.0f} ms; first call with an empty cache (compile + run): "
              f"{cold:.0f} ms; first call with the kernel on disk: {warm:.1f} ms "
              f"(disk hits: {hits})")


if __name__ == "__main__":
    main()
