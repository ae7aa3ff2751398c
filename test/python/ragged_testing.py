"""Shared by test_ragged.py and test_paged.py: ragged batches, paged caches
built from them (pages in shuffled order), and the float64 reference, which
runs test_variants' reference (written from the op's formulas, flash-attn's
conventions) on each sequence with bottom-right alignment."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from attncc.frontend import ragged_schedule
from attncc.options import CompileOptions
from test_variants import Case, masked_scores
from test_variants import reference as variants_reference

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
FLOOR = {"f32": 1e-5, "f16": 1e-3, "bf16": 1e-3}


@dataclass(frozen=True)
class Batch:
    """A ragged batch: per sequence (query tokens, key tokens)."""

    lengths: tuple                      # ((lq, lk), ...)
    kv_heads: int = 2
    group: int = 2
    head_dim: int = 32
    dtype: str = "f32"
    causal: bool = False
    window: Optional[tuple] = None
    softcap: Optional[float] = None
    alibi: bool = False
    sinks: bool = False
    page_size: int = 16
    layout: str = "NHD"
    return_lse: bool = False            # also check the LSE ([Hq, total_q])
    seed: int = 0
    options: dict = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def make(b: Batch):
    """Packed q [Tq, Hq, D], k, v [Tk, Hkv, D], cu_seqlens (int32), slopes, sinks."""
    g = torch.Generator().manual_seed(b.seed)
    dt = DTYPES[b.dtype]
    hq = b.kv_heads * b.group
    tq = sum(lq for lq, _ in b.lengths)
    tk = sum(lk for _, lk in b.lengths)
    q = torch.randn(tq, hq, b.head_dim, generator=g).to(dt)
    k = torch.randn(tk, b.kv_heads, b.head_dim, generator=g).to(dt)
    v = torch.randn(tk, b.kv_heads, b.head_dim, generator=g).to(dt)
    cu_q = torch.tensor([0] + [lq for lq, _ in b.lengths], dtype=torch.int64).cumsum(0)
    cu_k = torch.tensor([0] + [lk for _, lk in b.lengths], dtype=torch.int64).cumsum(0)
    slopes = torch.rand(hq, generator=g) * 0.5 if b.alibi else None
    sinks = torch.randn(hq, generator=g) * 2 if b.sinks else None
    return q, k, v, cu_q.to(torch.int32), cu_k.to(torch.int32), slopes, sinks


def paged_cache(b: Batch, k: torch.Tensor, v: torch.Tensor, cu_k: torch.Tensor,
                spare_pages: int = 3):
    """k/v of each sequence written into pages in a shuffled order (plus spare
    pages of garbage), the block table (unused entries -1) and seq_lens."""
    g = torch.Generator().manual_seed(b.seed + 1)
    P = b.page_size
    lens = [lk for _, lk in b.lengths]
    npages = [(n + P - 1) // P for n in lens]
    total = sum(npages) + spare_pages
    order = torch.randperm(total, generator=g)
    shape = (total, P, b.kv_heads, b.head_dim)
    kc = torch.randn(shape, generator=g).to(k.dtype) * 100     # garbage where unused
    vc = torch.randn(shape, generator=g).to(k.dtype) * 100
    table = torch.full((len(lens), max(npages + [1])), -1, dtype=torch.int32)
    nxt = 0
    for s, n in enumerate(lens):
        start = int(cu_k[s])
        for i in range(npages[s]):
            page = int(order[nxt])
            nxt += 1
            table[s, i] = page
            rows = slice(start + i * P, start + min(n, (i + 1) * P))
            cnt = rows.stop - rows.start
            kc[page, :cnt] = k[rows]
            vc[page, :cnt] = v[rows]
    if b.layout == "HND":
        kc, vc = kc.transpose(1, 2).contiguous(), vc.transpose(1, 2).contiguous()
    return kc, vc, table, torch.tensor(lens, dtype=torch.int32)


def _case(b: Batch, lq: int, lk: int) -> Case:
    return Case(batch=1, kv_heads=b.kv_heads, group=b.group, lq=lq, lk=lk,
                head_dim=b.head_dim, causal=b.causal, align="bottom_right", window=b.window,
                softcap=b.softcap, alibi=b.alibi, sinks=b.sinks)


def lse_reference(b: Batch, q, k, cu_q, cu_k, slopes, sinks) -> torch.Tensor:
    """[Hq, total_q] float64: logsumexp of each row's masked scores (the sink's
    logit joining the row), -inf where a row sees no key."""
    lse = torch.full((q.shape[1], q.shape[0]), float("-inf"), dtype=torch.float64)
    for s, (lq, lk) in enumerate(b.lengths):
        qs = q[int(cu_q[s]):int(cu_q[s + 1])].transpose(0, 1)[None]
        ks = k[int(cu_k[s]):int(cu_k[s + 1])].transpose(0, 1)[None]
        sc = masked_scores(_case(b, lq, lk), qs, ks, slopes)
        if sinks is not None:
            sc = torch.cat([sc, sinks.double()[None, :, None, None].expand(*sc.shape[:3], 1)], -1)
        lse[:, int(cu_q[s]):int(cu_q[s + 1])] = torch.logsumexp(sc, -1)[0]
    return lse


def reference(b: Batch, q, k, v, cu_q, cu_k, slopes, sinks, dtype=torch.float64):
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=dtype)
    for s, (lq, lk) in enumerate(b.lengths):
        c = _case(b, lq, lk)
        qs = q[int(cu_q[s]):int(cu_q[s + 1])].transpose(0, 1)[None]
        ks = k[int(cu_k[s]):int(cu_k[s + 1])].transpose(0, 1)[None]
        vs = v[int(cu_k[s]):int(cu_k[s + 1])].transpose(0, 1)[None]
        o = variants_reference(c, qs, ks, vs, slopes, sinks, dtype=dtype)
        out[int(cu_q[s]):int(cu_q[s + 1])] = o[0].transpose(0, 1).to(dtype)
    return out


def check(b: Batch, out, q, k, v, cu_q, cu_k, slopes, sinks, lse=None) -> None:
    """`out` against the float64 reference (flash-attn's criterion) and, when
    given, `lse` against lse_reference (f32 accuracy: scores are f32)."""
    if lse is not None:
        lref = lse_reference(b, q, k, cu_q, cu_k, slopes, sinks)
        assert lse.shape == lref.shape and lse.dtype == torch.float32, b.describe()
        assert torch.equal(torch.isneginf(lse), torch.isneginf(lref)), \
            f"-inf rows differ: {b.describe()}"
        fin = torch.isfinite(lref)
        lerr = (lse.double()[fin] - lref[fin]).abs()
        tol = 2e-4 + 1e-5 * lref[fin].abs()
        assert (lerr <= tol).all(), f"lse error {lerr.max().item():.3g}: {b.describe()}"
    ref = reference(b, q, k, v, cu_q, cu_k, slopes, sinks)
    assert out.shape == ref.shape and out.dtype == q.dtype, b.describe()
    assert torch.isfinite(out).all(), f"non-finite output: {b.describe()}"
    err = (out.double() - ref).abs().max().item() if ref.numel() else 0.0
    same = reference(b, q, k, v, cu_q, cu_k, slopes, sinks, dtype=q.dtype)
    torch_err = (same.double() - ref).abs().max().item() if ref.numel() else 0.0
    bound = 2 * torch_err + FLOOR[b.dtype]
    assert err <= bound, f"error {err:.3g} > 2 x {torch_err:.3g} + {FLOOR[b.dtype]:g}: " \
                         f"{b.describe()}"


def run_described(run, b: Batch, **kw) -> None:
    """run(b, **kw); a failure names the batch's configuration (a property
    test's example, to rerun it by hand)."""
    try:
        run(b, **kw)
    except Exception as e:
        raise AssertionError(f"failing configuration: {b.describe()}: {e}") from e


def decode_schedule(*, interleaved=True, page_size=16, paged=True, Hkv=8, G=4, lk=4096,
                    batch=8, opts=None, target="cpu", threads=2, num_splits=None,
                    key_bytes=0):
    """The packed decode launch (ragged_schedule.Decode) of `batch` decode
    tokens over `lk` keys each, computed from the index data alone."""
    n = torch.full((batch,), lk, dtype=torch.int64)
    return ragged_schedule.schedule(
        torch.arange(batch), torch.ones(batch, dtype=torch.int64), torch.arange(batch),
        torch.zeros(batch, dtype=torch.int64), n, page_size=page_size, paged=paged, G=G,
        Hkv=Hkv, sides=None, alibi=False, sinks=False, opts=opts or CompileOptions(),
        threads=threads, packed_ok=True, num_splits=num_splits, target=target,
        interleaved=interleaved, key_bytes=key_bytes).decode
