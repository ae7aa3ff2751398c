"""Kernel-quality report (no GPU needed): attncc's sm_90a fp16 attention
kernel (head dim 128, 128 x 64 blocks, 3 stages, causal and not) beside a
tutorial-style Triton 3.9 fused attention (bench/triton_attention.py)
compiled ahead of time for the same target.

Both PTX files go through the same ptxas (`ptxas -arch=sm_90a -v`, the one on
PATH) for registers, spills and stack; shared memory is attncc's dynamic
allocation and Triton's `metadata.shared`. Instruction counts are static
counts in the PTX text (not executed instructions, not SASS).

    python bench/gpu_kernel_report.py            # markdown table on stdout
    python bench/gpu_kernel_report.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attncc import Graph  # noqa: E402
from attncc.targets import gpu as agpu  # noqa: E402
from attncc.compiler import compile_graph  # noqa: E402
from attncc.options import CompileOptions  # noqa: E402

PATTERNS = {
    "mma.sync (m16n8k16)": r"\bmma\.sync\.aligned\.m16n8k16",
    "wgmma.mma_async": r"\bwgmma\.mma_async",
    "cp.async (16 B)": r"\bcp\.async\.c[ag]\.shared\.global",
    "cp.async.bulk (TMA)": r"\bcp\.async\.bulk",
    "cp.async commit/wait": r"\bcp\.async\.(commit_group|wait_group)",
    "ldmatrix": r"\bldmatrix\.sync",
    "bar.sync": r"\bbar\.sync|\bbarrier\.sync",
    "ex2.approx": r"\bex2\.approx",
    "shfl.sync": r"\bshfl\.sync",
}


def counts(ptx: str) -> dict[str, int]:
    return {k: len(re.findall(p, ptx)) for k, p in PATTERNS.items()}


def attncc_kernel(causal: bool, B=1, H=16, S=4096, D=128):
    g = Graph("attention")
    q = g.input("q", (B, H, S, D), "f16")
    k = g.input("k", (B, H, S, D), "f16")
    v = g.input("v", (B, H, S, D), "f16")
    g.output(g.attention(q, k, v, mask="causal" if causal else "none"))
    t0 = time.perf_counter()
    c = compile_graph(g, CompileOptions(block_m=128, block_n=64, num_stages=3), target="sm_90a")
    secs = time.perf_counter() - t0
    md = c.metadata
    return {"ptx": c.ptx, "registers": md["registers"], "spill_stores": md["spill_store_bytes"],
            "spill_loads": md["spill_load_bytes"], "stack": md["stack_frame_bytes"],
            "shared_bytes": md["shared_bytes"], "threads": md["block"][0], "compile_s": secs}


def triton_kernel(causal: bool):
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton_attention as ta

    t0 = time.perf_counter()
    k = ta.compile_aot(arch=90, head_dim=128, causal=causal, block_m=128, block_n=64,
                       num_warps=8, num_stages=3)
    secs = time.perf_counter() - t0
    ptx = k.asm["ptx"]
    _, rep = agpu.assemble(ptx, "sm_90a")
    return {"ptx": ptx, "registers": rep.registers, "spill_stores": rep.spill_store_bytes,
            "spill_loads": rep.spill_load_bytes, "stack": rep.stack_frame_bytes,
            "shared_bytes": k.metadata.shared, "threads": 32 * k.metadata.num_warps,
            "compile_s": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    if agpu.find_ptxas() is None:
        print("skipped: ptxas (CUDA toolkit) not found")
        return
    rows = {}
    for causal in (True, False):
        tag = "causal" if causal else "non-causal"
        rows[f"attncc {tag}"] = attncc_kernel(causal)
        try:
            rows[f"Triton 3.9 {tag}"] = triton_kernel(causal)
        except ImportError as e:
            print(f"(Triton not installed: {e}; pip install triton==3.9.0)")
    print(f"sm_90a, fp16, head dim 128, 128 x 64 blocks, 3 stages, ptxas {agpu.ptxas_version()}\n")
    cols = list(rows)
    print("| | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for key, label in [("registers", "registers / thread"), ("spill_stores", "spill stores (B)"),
                       ("spill_loads", "spill loads (B)"), ("stack", "stack frame (B)"),
                       ("shared_bytes", "shared memory (B)"), ("threads", "threads / block")]:
        print(f"| {label} | " + " | ".join(str(rows[c][key]) for c in cols) + " |")
    cts = {c: counts(rows[c]["ptx"]) for c in cols}
    for p in PATTERNS:
        print(f"| {p} (PTX, static) | " + " | ".join(str(cts[c][p]) for c in cols) + " |")
    print("| PTX lines | " + " | ".join(str(len(rows[c]["ptx"].splitlines())) for c in cols) + " |")
    print("| compile time (s) | " + " | ".join(f"{rows[c]['compile_s']:.2f}" for c in cols) + " |")
    if args.json:
        out = {c: {k: v for k, v in r.items() if k != "ptx"} | {"counts": cts[c]} for c, r in rows.items()}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
