"""Differential fuzzing of attncc's public entry points against float64 references.

A hypothesis strategy draws a configuration (entry point, batch, heads and GQA
ratio, query/key lengths including 0, 1 and non-multiples of the blocks, head
dims, dtype, mask kind, scale, block options) and random inputs; attncc's
result must satisfy FlashAttention's criterion against a float64 reference:
max error <= 2 x torch's own error in that dtype + a small floor, with fully
masked rows zero. Entry points: `attncc.attention` (SDPA-style, bool/float
masks, causal, GQA) and `attncc.compile` on plain PyTorch code. The inference
APIs (varlen, paged, score variants) join the strategy as they land.

    python test/fuzz/attention_fuzz.py --examples 5000 [--seed N]   # on demand
    pytest test/python/test_fuzz.py                                  # CI: 200 examples

A failure is shrunk by hypothesis to a minimal configuration, which is written
to test/regressions/<hash>.json; test/python/test_fuzz.py replays every file
there on every run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import attncc

REGRESSIONS = Path(__file__).resolve().parents[1] / "regressions"
FLOOR = {"f32": 1e-5, "f16": 1e-4, "bf16": 1e-3}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Config:
    entry: str            # "attention" | "compile"
    batch: int
    kv_heads: int
    group: int            # query heads per KV head (GQA; 1 = MHA)
    lq: int
    lk: int
    head_dim: int
    dtype: str
    mask: str             # none | causal | bool | float | window
    window: int
    scale: Optional[float]
    block_m: Optional[int]
    block_n: Optional[int]
    num_stages: int
    seed: int

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# Small, repeated sets of sizes: kernels are specialized on shapes today, so
# a fuzz run reuses compiled kernels where configurations coincide.
configs = st.builds(
    Config,
    entry=st.sampled_from(["attention", "attention", "compile"]),
    batch=st.sampled_from([1, 2]),
    kv_heads=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2, 4]),
    lq=st.sampled_from([0, 1, 5, 16, 33, 64]),
    lk=st.sampled_from([0, 1, 7, 16, 40, 64]),
    head_dim=st.sampled_from([16, 32, 64, 12, 40]),   # 12, 40: not powers of two
    dtype=st.sampled_from(["f32", "f16", "bf16"]),
    mask=st.sampled_from(["none", "causal", "bool", "float", "window"]),
    window=st.sampled_from([1, 3, 8]),
    scale=st.one_of(st.none(), st.sampled_from([0.05, 0.3, 1.0])),
    block_m=st.sampled_from([None, 16, 32]),
    block_n=st.sampled_from([None, 16, 32]),
    num_stages=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2 ** 16),
)


def make_inputs(c: Config):
    g = torch.Generator().manual_seed(c.seed)
    dt = DTYPES[c.dtype]
    hq = c.kv_heads * c.group
    q = torch.randn(c.batch, hq, c.lq, c.head_dim, generator=g).to(dt)
    k = torch.randn(c.batch, c.kv_heads, c.lk, c.head_dim, generator=g).to(dt)
    v = torch.randn(c.batch, c.kv_heads, c.lk, c.head_dim, generator=g).to(dt)
    mask = None
    i = torch.arange(c.lq)[:, None]
    j = torch.arange(c.lk)[None, :]
    if c.mask == "bool":
        mask = torch.rand(c.batch, 1, c.lq, c.lk, generator=g) < 0.7
    elif c.mask == "float":
        mask = torch.randn(c.batch, hq, c.lq, c.lk, generator=g).to(dt)
    elif c.mask == "window":     # top-left sliding window as a bool mask
        mask = (j <= i) & (j > i - c.window)
    return q, k, v, mask


def reference64(c: Config, q, k, v, mask) -> torch.Tensor:
    """float64 softmax(q k^T * scale + mask) v; GQA by head repetition; fully
    masked rows are zeros (attncc's documented semantics, docs/numerics.md)."""
    q, k, v = q.double(), k.double(), v.double()
    k, v = k.repeat_interleave(c.group, 1), v.repeat_interleave(c.group, 1)
    scale = c.scale if c.scale is not None else 1 / math.sqrt(c.head_dim)
    s = q @ k.mT * scale
    keep = torch.ones(s.shape, dtype=torch.bool)
    if c.mask == "causal":
        keep &= torch.ones(c.lq, c.lk, dtype=torch.bool).tril()
    elif mask is not None and mask.dtype == torch.bool:
        keep &= mask
    elif mask is not None:
        s = s + mask.double()
    s = s.masked_fill(~keep, float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)          # fully masked rows: 0
    return p @ v


def torch_same_dtype(c: Config, q, k, v, mask) -> torch.Tensor:
    """torch's SDPA in the inputs' dtype (for its error, the criterion's yardstick)."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=c.mask == "causal",
                                         scale=c.scale, enable_gqa=True)
    return out.nan_to_num(0.0)


def run_attncc(c: Config, q, k, v, mask) -> torch.Tensor:
    opts = dict(block_m=c.block_m, block_n=c.block_n, num_stages=c.num_stages, num_threads=1)
    if c.entry == "attention":
        return attncc.attention(q, k, v, causal=c.mask == "causal", attn_mask=mask,
                                scale=c.scale, **opts)
    return _compiled(c.mask, c.scale, c.group, tuple(sorted(opts.items())))(q, k, v, mask)


_COMPILED: dict = {}


def _compiled(mask_kind: str, scale: Optional[float], group: int, opts: tuple):
    """attncc.compile on plain PyTorch code written the way models write it."""
    key = (mask_kind, scale, group, opts)
    if key not in _COMPILED:
        def fn(q, k, v, mask):
            if group > 1:
                k = k.repeat_interleave(group, dim=1)
                v = v.repeat_interleave(group, dim=1)
            sc = scale if scale is not None else q.shape[-1] ** -0.5
            s = q @ k.transpose(-2, -1) * sc
            if mask_kind == "causal":
                L, S = s.shape[-2:]
                s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
            elif mask is not None and mask.dtype == torch.bool:
                s = s.masked_fill(~mask, float("-inf"))
            elif mask is not None:
                s = s + mask
            return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v

        _COMPILED[key] = attncc.compile(fn, **dict(opts))
    return _COMPILED[key]


class Mismatch(AssertionError):
    pass


def check(c: Config) -> None:
    """Raises Mismatch (with the configuration) when attncc fails the criterion."""
    q, k, v, mask = make_inputs(c)
    ref = reference64(c, q, k, v, mask)
    with torch.no_grad():
        out = run_attncc(c, q, k, v, mask)
    if out.shape != ref.shape or out.dtype != q.dtype:
        raise Mismatch(f"shape/dtype {tuple(out.shape)} {out.dtype}, expected "
                       f"{tuple(ref.shape)} {q.dtype}: {c.describe()}")
    if ref.numel() == 0:
        return
    if not torch.isfinite(out).all():
        raise Mismatch(f"non-finite output: {c.describe()}")
    err = (out.double() - ref).abs().max().item()
    torch_err = (torch_same_dtype(c, q, k, v, mask).double() - ref).abs().max().item()
    bound = 2 * torch_err + FLOOR[c.dtype]
    if not err <= bound:
        raise Mismatch(f"error {err:.3g} > 2 x torch's {torch_err:.3g} + {FLOOR[c.dtype]:g}: "
                       f"{c.describe()}")


def save_regression(c: Config, why: str) -> Path:
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(c.describe().encode()).hexdigest()[:16]
    path = REGRESSIONS / f"fuzz-{name}.json"
    path.write_text(json.dumps({"config": asdict(c), "found": why}, indent=2, sort_keys=True)
                    + "\n")
    return path


def replay(path: Path) -> None:
    check(Config(**json.loads(path.read_text())["config"]))


def fuzz(examples: int, seed_value: int, *, save: bool = True, deadline_s: float = 600.0):
    """Runs `examples` hypothesis examples with `seed_value` (printed); on a
    failure the shrunk configuration is saved under test/regressions/ and the
    failure re-raised."""
    print(f"attncc fuzz: {examples} examples, seed {seed_value}", flush=True)
    failing: list[Config] = []

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.generate, Phase.shrink], print_blob=True)
    @given(configs)
    def run(c: Config) -> None:
        try:
            check(c)
        except Exception:   # a mismatch, or an error attncc should not raise
            failing.append(c)
            raise

    try:
        run()
    except Exception as e:
        if save and failing:
            # hypothesis re-runs the shrunk example last: it is the minimal one
            path = save_regression(failing[-1], f"{type(e).__name__}: {e}"[:2000])
            print(f"minimal reproducer saved to {path}", file=sys.stderr)
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    args = ap.parse_args()
    s = args.seed if args.seed is not None else int(time.time()) % 2 ** 31
    os.environ.setdefault("ATTNCC_CACHE", "1")
    t0 = time.perf_counter()
    fuzz(args.examples, s)
    print(f"attncc fuzz: {args.examples} examples passed in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
