"""attncc quickstart, the README's main job: compile attention written in plain
PyTorch, run it on the CPU, check it against torch, and show the pipeline
stages it went through.

    python examples/quickstart.py            # stage summary + graph/fused/tiled IR
    python examples/quickstart.py --all-ir   # the IR of every stage
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

import attncc


def attention(q, k, v):
    """Causal GQA attention as models write it."""
    n = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(n, dim=1)
    v = v.repeat_interleave(n, dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    causal = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all-ir", action="store_true", help="print the IR of every stage")
    args = ap.parse_args()

    torch.manual_seed(0)
    q = torch.randn(1, 8, 1000, 64)
    k = torch.randn(1, 2, 1000, 64)
    v = torch.randn(1, 2, 1000, 64)

    # Options (block_m, block_n, num_stages, unroll, num_threads) default to
    # the target's tuned values; pass any of them to override.
    compiled_fn = attncc.compile(attention, target="cpu", num_stages=2)
    t0 = time.perf_counter()
    kernel = compiled_fn.lower(q, k, v)
    t_compile = time.perf_counter() - t0

    print(f"attncc {attncc.__version__}: compiled {attention.__name__}"
          f"(q{tuple(q.shape)}, k{tuple(k.shape)}, v{tuple(v.shape)}) for the CPU "
          f"in {t_compile:.2f} s with {kernel.options.as_dict()}")
    print("\npipeline stages:")
    for stage, text in kernel.stages.items():
        secs = kernel.stage_seconds.get(stage, 0.0)
        print(f"  {stage:<10} {secs * 1e3:8.1f} ms  {len(text.splitlines()):6d} lines of IR")
    if "jit" in kernel.stage_seconds:
        print(f"  {'jit':<10} {kernel.stage_seconds['jit'] * 1e3:8.1f} ms")
    show = list(kernel.stages) if args.all_ir else ["graph", "fused", "tiled"]
    for stage in show:
        print(f"\n// ===== stage: {stage} =====")
        print(kernel.ir(stage))

    out = compiled_fn(q, k, v)
    ref = attention(q.double(), k.double(), v.double())
    torch_out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    err = (out.double() - ref).abs().max().item()
    torch_err = (torch_out.double() - ref).abs().max().item()
    print(f"\nmax |attncc - float64 reference| = {err:.2e}  "
          f"(torch SDPA's own: {torch_err:.2e})")
    ok = err <= 2 * torch_err + 1e-5
    print("check against torch:", "OK" if ok else "FAILED")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
