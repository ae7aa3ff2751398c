"""Ragged (varlen) batches and paged KV caches (issue 12), CPU and GPU targets.

    out = attncc.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k,
                                  max_seqlen_q, max_seqlen_k, causal=True)
    out = attncc.paged_attention(q, k_cache, v_cache, block_table, seq_lens)
    attncc.paged_kv_append(k_cache, v_cache, k, v, slot_mapping)

The signatures and semantics are flash-attn's `flash_attn_varlen_func` and
vLLM / FlashInfer's paged caches (docs/ragged-paged.md). Every call checks
its index tensors once, vectorised (InputError naming the argument), then
builds the `work` table of attn.ragged_attention: one row per query block of
every sequence, so the kernel's grid is balanced by tokens, not sequences,
and the kernel is independent of the batch's composition (one kernel per
dtype, heads, head dims, variants and paged or not; any page size). The
checks live in frontend/ragged_checks.py, the work tables in
frontend/ragged_schedule.py; calls with a plan whose signature was seen
before replay its kernels (frontend/ragged_replay.py).
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Optional

import numpy as np
import torch

from . import ragged_gpu
from .compiler import compile_graph
from .errors import InputError
from .frontend import kv_quant, ragged_replay, ragged_checks as checks, ragged_schedule, split_kv
from .frontend.capture import check_no_grad
from .frontend.ragged_schedule import PagedPlan, VarlenPlan
from .graph import Graph
from .options import CompileOptions
from .targets import kind as target_kind

_LOCK = threading.Lock()
_KERNELS: dict[Any, Any] = {}
_MAX_KERNELS = 64
LAYOUTS = ("NHD", "HND")


# -- the kernel ------------------------------------------------------------------------------

def _kernel(dtype: torch.dtype, heads: int, kv_heads: int, D: int, Dv: int, paged: bool,
            scale: float, sides, softcap, alibi: bool, sinks: bool, query_len: int,
            opts: CompileOptions, page: Optional[int] = None, lse: bool = False,
            target: str = "cpu", heads_inner: bool = False, kv_dtype=None):
    """The compiled kernel and its query block size (`kv_dtype`: K/V's
    element type where it is not q's: fp8 caches). `lse`: the kernel also
    writes each query row's log-sum-exp to a trailing f32 argument shaped like
    the output without head_dim (attn-tile's lse form; any strides)."""
    threads = torch.get_num_threads() if opts.num_threads is None else opts.num_threads
    bm = opts.query_block(target, query_len)
    kv_dtype = dtype if kv_dtype is None else kv_dtype
    key = (dtype, heads, kv_heads, D, Dv, paged, scale, sides, softcap, alibi, sinks, bm,
           opts, threads, page, lse, target, heads_inner, kv_dtype)
    with _LOCK:
        hit = _KERNELS.get(key)
    if hit is not None:
        return hit, bm
    dt = checks.DTYPES[dtype]
    g = Graph("ragged_attention")
    qv = g.input("q", (None, heads, None, D), dt)
    kv = g.input("k", (None, kv_heads, page, D), checks.KV_DTYPES[kv_dtype])
    vv = g.input("v", (None, kv_heads, page, Dv), checks.KV_DTYPES[kv_dtype])
    work = g.input("work", (None, 7), "i32")
    table = g.input("block_table", (None, None), "i32") if paged else None
    sl = g.input("alibi_slopes", (heads,), "f32") if alibi else None
    sk = g.input("sinks", (heads,), "f32") if sinks else None
    g.output(g.ragged_attention(qv, kv, vv, work, block_table=table, scale=scale,
                                window_sides=sides, softcap=softcap, alibi_slopes=sl,
                                sinks=sk))
    compiled = compile_graph(g, opts, target, query_len=bm, lse=lse, heads_inner=heads_inner)
    with _LOCK:
        if len(_KERNELS) >= _MAX_KERNELS:
            _KERNELS.pop(next(iter(_KERNELS)))
        _KERNELS[key] = compiled
    return compiled, bm


def clear_cache() -> None:
    with _LOCK:
        _KERNELS.clear()
    ragged_replay.clear()


def kernels_cached() -> int:
    with _LOCK:
        return len(_KERNELS)


def _run(q, k4, v4, plan: ragged_schedule.RaggedPlan, table, scale, sides, softcap, slopes,
         sink, options: dict[str, Any], return_lse: bool = False,
         num_splits: Optional[int] = None, target: str = "cpu", runner=None, *,
         out: Optional[torch.Tensor] = None, record: Optional[list] = None):
    """q [T, Hq, D]; k4/v4 as the kernel sees them ([Bk, Hkv, L, D] views).
    Returns the output [T, Hq, Dv] (`out`, written in place, where given),
    and with `return_lse` (out, lse) where lse is [Hq, T] f32 (flash-attn
    varlen's softmax_lse, vLLM's merge layout). The launches come from the
    plan (ragged_schedule.schedule, memoized per configuration): the packed
    decode launch, then one per query block size. `record`: a list the
    launches are appended to (frontend/ragged_replay.py), then ("done",)."""
    opts = CompileOptions.cached(options)
    gpu = target_kind(target) == "gpu"
    T, Hq, D = q.shape
    Hkv, Dv = k4.shape[1], v4.shape[3]
    out = q.new_empty((T, Hq, Dv)) if out is None else out
    lse = torch.empty((Hq, T), dtype=torch.float32, device=q.device) if return_lse else None
    if return_lse and Dv == 0 and T and Hq:
        raise InputError("return_lse=True needs values with head_dim > 0")
    if T == 0 or Hq == 0 or Dv == 0:
        return (out, lse) if return_lse else out
    G = Hq // Hkv
    paged = table is not None
    extra = [t for t in (table, slopes, sink) if t is not None]
    if gpu:   # the SMs; a decode block holds the G query heads of a KV head
        threads = ragged_gpu.workers(q)
        packed_ok = G <= opts.query_block(target, None)
    else:
        threads = torch.get_num_threads() if opts.num_threads is None else opts.num_threads
        packed_ok = True
    config = dict(page_size=k4.shape[2], paged=paged, G=G, Hkv=Hkv, sides=sides,
                  alibi=slopes is not None, sinks=sink is not None, opts=opts,
                  threads=threads, packed_ok=packed_ok, num_splits=num_splits, target=target,
                  interleaved=k4.stride(1) < k4.stride(2),
                  key_bytes=D * k4.element_size() + Dv * v4.element_size())
    if record is not None:
        record.append(("config", config))
    sched = plan._schedule(config)
    launch = functools.partial(_launch, target=target, runner=runner)
    dec = sched.decode
    if dec is not None and dec.pieces is None:
        compiled, _ = _kernel(q.dtype, Hkv, Hkv, D, Dv, paged, scale, None, softcap,
                              False, False, G, opts, dec.page, return_lse, target,
                              dec.heads_inner, k4.dtype)
        # lse [Hq, T] seen as the kernel's [T, Hkv, G] (a strided view).
        launch(compiled, [q.reshape(T, Hkv, G, D), k4, v4, dec.work, *extra[:int(paged)]],
               out.view(T, Hkv, G, Dv), (lse.t().view(T, Hkv, G),) if return_lse else ())
        if record is not None:
            record.append(("decode", compiled, dec.page, dec.heads_inner))
    elif dec is not None:
        # Split-KV (or sinks): each piece is a work item of its own (a copy
        # of its token's query rows), leaving a partial output and its LSE;
        # the pieces of a token are merged with their LSEs, then the sink
        # joins the denominator: lse' = logaddexp(lse, sink), out' = out e^(lse - lse').
        qd, tok = dec.tokens, dec.pieces
        n = tok.numel()
        if record is not None:
            record.append(("pieces",))
        compiled, _ = _kernel(q.dtype, Hkv, Hkv, D, Dv, paged, scale, None, softcap,
                              False, False, G, opts, dec.page, True, target, dec.heads_inner,
                              k4.dtype)
        o_part = q.new_empty((n, Hkv, G, Dv))
        l_part = torch.empty((n, Hkv, G), dtype=torch.float32, device=q.device)
        launch(compiled, [q[dec.piece_rows].reshape(n, Hkv, G, D), k4, v4, dec.work,
                          *extra[:int(paged)]], o_part, (l_part,))
        if n == qd.numel():   # one piece per token (sinks, no split): nothing to merge
            o_dec, l_dec = o_part, l_part
        elif dec.per_token:
            o_dec, l_dec = split_kv.merge_uniform(o_part, l_part, qd.numel(), dec.per_token)
        else:
            o_dec, l_dec = split_kv.merge_pieces(o_part, l_part, tok, qd.numel())
        if sink is not None:
            with_sink = torch.logaddexp(l_dec, sink.to(q.device).view(1, Hkv, G))
            o_dec = o_dec * torch.exp(l_dec - with_sink).unsqueeze(-1)
            l_dec = with_sink
        if dec.all_rows:
            out.view(T, Hkv, G, Dv).copy_(o_dec)
            if return_lse:
                lse.t().view(T, Hkv, G).copy_(l_dec)
        else:
            out.view(T, Hkv, G, Dv)[qd] = o_dec.to(out.dtype)
            if return_lse:
                lse.t().view(T, Hkv, G)[qd] = l_dec
    if sched.groups:
        q4, o4 = q.permute(1, 0, 2).unsqueeze(0), out.permute(1, 0, 2).unsqueeze(0)
    for grp in sched.groups:
        compiled, _ = _kernel(q.dtype, Hq, Hkv, D, Dv, paged, scale, sides, softcap,
                              slopes is not None, sink is not None, grp.bm, opts, grp.page,
                              return_lse, target, kv_dtype=k4.dtype)
        launch(compiled, [q4, k4, v4, grp.work, *extra], o4,
               (lse.unsqueeze(0),) if return_lse else ())
        if record is not None:
            record.append(("group", compiled, grp.bm, grp.page))
    if record is not None:
        record.append(("done",))
    # Every query token is in one work item of one launch (the cumulative
    # lengths cover [0, T)), so every output row (and LSE) is stored.
    return (out, lse) if return_lse else out


def _launch(compiled, inputs: list, out: torch.Tensor, extra: tuple, target: str, runner=None):
    """One kernel launch: the CPU kernel's calling convention, or on a GPU
    target the index tensors moved to the output's device and every argument
    passed where it is (attncc.ragged_gpu; `runner`: the tests' emulator)."""
    if target_kind(target) == "cpu":
        compiled._kernel(*inputs, out=out, extra=extra)
    else:
        ragged_gpu.launch(compiled, inputs, out, extra, runner)


# -- public API ------------------------------------------------------------------------------

def _plain(options: dict, alibi_slopes, sinks, return_lse, k_scale, v_scale, runner, target,
           *index) -> bool:
    """A call the replay may serve (frontend/ragged_replay.py): no options,
    tensor variants, LSE, fp8 scales or emulator, the CPU target, and a plan
    in place of every index argument."""
    return (not options and alibi_slopes is None and sinks is None and return_lse is False
            and k_scale is None and v_scale is None and runner is None and target == "cpu"
            and all(x is None for x in index))


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: Optional[torch.Tensor] = None,
                     cu_seqlens_k: Optional[torch.Tensor] = None,
                     max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None, *,
                     plan: Optional[VarlenPlan] = None, causal: bool = False,
                     scale: Optional[float] = None, window: Optional[tuple[int, int]] = None,
                     softcap: Optional[float] = None, alibi_slopes: Optional[torch.Tensor] = None,
                     sinks: Optional[torch.Tensor] = None, return_lse: bool = False,
                     num_splits: Optional[int] = None, k_scale: Any = None,
                     v_scale: Any = None, target: str = "cpu", runner=None,
                     **options: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """flash-attn's `flash_attn_varlen_func` on packed tensors: q [total_q, Hq, D],
    k [total_k, Hkv, D], v [total_k, Hkv, Dv]; sequence s has queries
    cu_seqlens_q[s]:cu_seqlens_q[s+1] and keys cu_seqlens_k[s]:cu_seqlens_k[s+1]
    (int32). Masks and ALiBi are bottom-right aligned per sequence (the last
    query sees the last key); `window=(left, right)` is flash-attn's
    window_size. Returns [total_q, Hq, Dv]; rows that see no key are zeros.
    With return_lse=True, (out, lse): lse [Hq, total_q] float32, the natural
    log of each row's softmax denominator (the sink's term included; -inf
    where a row sees no key), flash-attn varlen's softmax_lse layout.
    `num_splits` (flash decoding, for sequences with one query token and no
    ALiBi or sinks): None chooses from the tokens, KV heads, lengths and
    threads (split only where the decode grid leaves threads idle), 1 never
    splits, P in [2, 256] cuts each such sequence's keys into at most P
    pieces of a multiple of 256 keys (and of a power-of-two page size), run
    as separate work items and merged with their log-sum-exps (CPU target).
    `plan`: a VarlenPlan from plan_varlen, in place of the cumulative
    lengths and maxima (checked once for all the layers of a step).
    `target`: "cpu", or a GPU target ("sm_80", "sm_90a", "cuda") with q, k,
    v on a CUDA device (attncc.ragged_gpu); `runner` is for tests (runs the
    compiled GPU kernel's arguments in the GPU emulator). k and v may be fp8
    (float8_e4m3fn / float8_e5m2, CPU target) with per-tensor `k_scale` and
    `v_scale` (attncc.attention's; docs/quantized-kv.md)."""
    sig = None
    if plan is not None and _plain(options, alibi_slopes, sinks, return_lse, k_scale, v_scale,
                                   runner, target, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                   max_seqlen_k) and isinstance(plan, VarlenPlan):
        sig, got = ragged_replay.serve(plan, q, k, v, None, "packed", causal, scale, window,
                                       softcap, num_splits)
        if got is not None:
            return got
    checks.check_target(target)
    split_kv.check_args(return_lse, num_splits)
    q = checks.check_float("q", q, 3)
    k, v = (checks.check_float(n, t, 3, fp8=True) for n, t in (("k", k), ("v", v)))
    k_scale, v_scale = checks.kv_dtypes(q, k, v, k_scale, v_scale, target, k.shape[1])
    check_no_grad((("q", q), ("k", k), ("v", v)))
    # A runner (the tests' GPU emulator) runs the GPU kernel on host tensors.
    checks.check_device("cpu" if runner else target, q=q, k=k, v=v)
    if k.shape[:2] != v.shape[:2]:
        raise InputError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same tokens "
                         "and heads")
    checks.check_heads(q.shape[1], k.shape[1], q.shape[2], k.shape[2], "k")
    args = (cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if plan is None:
        plan = _varlen_plan(*args, q.shape[0], k.shape[0])
    elif not isinstance(plan, VarlenPlan):
        raise InputError(f"plan must be an attncc.VarlenPlan (from attncc.plan_varlen), got "
                         f"{type(plan).__name__}")
    elif any(x is not None for x in args):
        raise InputError("with plan=, pass no cu_seqlens_q, cu_seqlens_k, max_seqlen_q or "
                         "max_seqlen_k (the plan holds them)")
    plan._check_tokens(q.shape[0], k.shape[0])
    scale, sides, softcap, slopes, sink = checks.call_variants(q, causal, scale, window, softcap,
                                                    alibi_slopes, sinks, return_lse)
    k4, v4 = k.permute(1, 0, 2).unsqueeze(0), v.permute(1, 0, 2).unsqueeze(0)
    launches = [] if sig is not None else None
    got = _scaled_run(q, k4, v4, plan, None, scale, k_scale, v_scale, sides, softcap, slopes,
                      sink, options, return_lse, num_splits, target, runner, record=launches)
    if sig is not None:
        ragged_replay.record(sig, launches, "packed", q, k, v)
    return got


def plan_varlen(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, max_seqlen_q: int,
                max_seqlen_k: int) -> VarlenPlan:
    """Checks a ragged batch's cumulative lengths and maxima once (as
    varlen_attention does) and returns the VarlenPlan every layer's
    `varlen_attention(q, k, v, plan=plan, ...)` of this step can share; the
    packed token counts are the last entries (checked against q and k per call)."""
    return _varlen_plan(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, None, None)


def _varlen_plan(cu_q, cu_k, max_q, max_k, q_tokens: Optional[int],
                 k_tokens: Optional[int]) -> VarlenPlan:
    if cu_q is None or cu_k is None or max_q is None or max_k is None:
        raise InputError("varlen_attention needs cu_seqlens_q, cu_seqlens_k, max_seqlen_q "
                         "and max_seqlen_k, or plan=")
    cq = checks.check_cu("cu_seqlens_q", cu_q, q_tokens, None)
    ck = checks.check_cu("cu_seqlens_k", cu_k, k_tokens,
                   cq.size - 1)
    lq, lk = cq[1:] - cq[:-1], ck[1:] - ck[:-1]
    checks.check_max("max_seqlen_q", max_q, lq)
    checks.check_max("max_seqlen_k", max_k, lk)
    return VarlenPlan(cq[:-1], lq, np.zeros_like(lq), ck[:-1], lk, int(cq[-1]), int(ck[-1]))


def plan_paged(block_table: torch.Tensor, seq_lens: torch.Tensor, *, page_size: int,
               cu_seqlens_q: Optional[torch.Tensor] = None,
               max_seqlen_q: Optional[int] = None) -> PagedPlan:
    """Checks a paged batch's index tensors once (as paged_attention does) and
    returns the PagedPlan every layer's `paged_attention(q, k_cache, v_cache,
    plan=plan, ...)` of this step can share. Whether each used block_table
    entry is below the cache's page count is checked per call (one
    comparison), since the plan does not see the cache."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise InputError(f"page_size must be a positive int, got {page_size!r}")
    plan = _plan(block_table, seq_lens, page_size, cu_seqlens_q, max_seqlen_q, None)
    plan.table = plan.table.clone()     # a host copy of its own (the snapshot)
    return plan


def _plan(block_table, seq_lens, P: int, cu_seqlens_q, max_seqlen_q,
          q_tokens: Optional[int]) -> PagedPlan:
    """The index checks of a paged call (vectorised, in numpy on the index
    tensors' host copies: a decode step runs them once a step with a plan,
    per layer without, and numpy's per-operation cost is a fraction of torch's)."""
    table = checks.check_index("block_table", block_table, 2)
    ln = checks.index_array("seq_lens", seq_lens, 1)
    S = table.shape[0]
    if ln.size != S:
        raise InputError(f"seq_lens has {ln.size} entries, block_table {S} rows")
    if cu_seqlens_q is None:
        if q_tokens is not None and q_tokens != S:
            raise InputError(f"q has {q_tokens} tokens; without cu_seqlens_q it needs one "
                             f"per sequence ({S})")
        cq = np.arange(S + 1)
        if max_seqlen_q not in (None, 1) and S:
            checks.check_max("max_seqlen_q", max_seqlen_q, np.ones(1, dtype=np.int64))
    else:
        cq = checks.check_cu("cu_seqlens_q", cu_seqlens_q, q_tokens, S)
    lq = cq[1:] - cq[:-1]
    if cu_seqlens_q is not None and max_seqlen_q is not None:
        checks.check_max("max_seqlen_q", max_seqlen_q, lq)
    tb = table.numpy()
    if (ln < lq).any():     # (lq >= 0: cu_seqlens_q is non-decreasing)
        if (ln < 0).any():
            raise InputError("seq_lens must be non-negative")
        raise InputError("seq_lens must count each sequence's new tokens too (seq_lens >= "
                         "query tokens per sequence)")
    if P == 0:
        raise InputError("the cache's page_size is 0")
    pages_needed = (ln + P - 1) // P
    most = int(pages_needed.max()) if S else 0
    if most > tb.shape[1]:
        s = int(np.flatnonzero(pages_needed > tb.shape[1])[0])
        raise InputError(f"seq_lens[{s}] = {int(ln[s])} needs {int(pages_needed[s])} pages of "
                         f"{P}, block_table has {tb.shape[1]} per sequence")
    bad_page = None
    if most > 0:
        used = np.arange(tb.shape[1]) < pages_needed[:, None]
        if np.where(used, tb, 0).min() < 0:
            s, i = (int(x) for x in np.argwhere(used & (tb < 0))[0])
            raise InputError(f"block_table[{s}, {i}] = {int(tb[s, i])} is not a page of the "
                             f"cache (page >= 0)")
        s, i = divmod(int(np.where(used, tb, -1).argmax()), tb.shape[1])
        bad_page = (s, i, int(tb[s, i]))
    if table.shape[1] == 0:      # no pages at all: a one-column table the kernel never reads
        table = torch.zeros((S, 1), dtype=torch.int32)
    return PagedPlan(table.contiguous(), ln, cq, P, bad_page)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_table: Optional[torch.Tensor] = None,
                    seq_lens: Optional[torch.Tensor] = None, *,
                    cu_seqlens_q: Optional[torch.Tensor] = None,
                    max_seqlen_q: Optional[int] = None, causal: bool = False,
                    scale: Optional[float] = None, window: Optional[tuple[int, int]] = None,
                    softcap: Optional[float] = None, alibi_slopes: Optional[torch.Tensor] = None,
                    sinks: Optional[torch.Tensor] = None, return_lse: bool = False,
                    num_splits: Optional[int] = None, layout: str = "NHD",
                    plan: Optional[PagedPlan] = None, k_scale: Any = None,
                    v_scale: Any = None, target: str = "cpu", out: Optional[torch.Tensor] = None,
                    runner=None, **options: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention against a paged KV cache. k_cache/v_cache: [num_pages, page_size,
    Hkv, D] (layout "NHD", vLLM/FlashInfer) or [num_pages, Hkv, page_size, D]
    ("HND"); block_table [batch, max_pages] int32 (page of each sequence's
    keys page_size * i ...); seq_lens [batch] int32: the keys of each sequence
    (including the new tokens'). q: [batch, Hq, D] (decode: one token per
    sequence) or, with cu_seqlens_q (int32 [batch + 1]) and max_seqlen_q,
    packed [total_q, Hq, D] (chunked prefill); queries are the last keys of
    their sequence (bottom-right alignment). Returns q's shape with Dv; with
    return_lse=True, (out, lse) with lse [Hq, q tokens] float32 (as
    varlen_attention's). `num_splits`: split-KV for decode tokens, as
    varlen_attention's. `plan`: a PagedPlan from plan_paged, in place of
    block_table, seq_lens, cu_seqlens_q and max_seqlen_q (checked once for
    all the layers of a step; the later calls of a signature replay the
    first one's launches, frontend/ragged_replay.py). `out`: a contiguous
    tensor of the output's shape and q's dtype written in place and returned.
    `target`, `runner`, fp8 caches with `k_scale` and `v_scale`: as
    varlen_attention's."""
    sig = None
    if plan is not None and _plain(options, alibi_slopes, sinks, return_lse, k_scale, v_scale,
                                   runner, target, block_table, seq_lens, cu_seqlens_q,
                                   max_seqlen_q) and isinstance(plan, PagedPlan):
        sig, got = ragged_replay.serve(plan, q, k_cache, v_cache, out, layout, causal, scale,
                                       window, softcap, num_splits)
        if got is not None:
            return got
    checks.check_target(target)
    split_kv.check_args(return_lse, num_splits)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    q = checks.check_float("q", q, 3)
    k_cache, v_cache = (checks.check_float(n, t, 4, fp8=True)
                        for n, t in (("k_cache", k_cache), ("v_cache", v_cache)))
    k_scale, v_scale = checks.kv_dtypes(q, k_cache, v_cache, k_scale, v_scale, target,
                                        k_cache.shape[2 if layout == "NHD" else 1])
    check_no_grad((("q", q), ("k_cache", k_cache), ("v_cache", v_cache)))
    checks.check_device("cpu" if runner else target, q=q, k_cache=k_cache, v_cache=v_cache)
    if k_cache.shape[:3] != v_cache.shape[:3]:
        raise InputError(f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} "
                         "must have the same pages, page size and heads")
    if layout == "NHD":
        k4, v4 = k_cache.permute(0, 2, 1, 3), v_cache.permute(0, 2, 1, 3)
    else:
        k4, v4 = k_cache, v_cache
    num_pages, Hkv, P = k4.shape[:3]
    checks.check_heads(q.shape[1], Hkv, q.shape[2], k4.shape[3], f"k_cache (layout {layout!r})")
    if plan is None:
        if block_table is None or seq_lens is None:
            raise InputError("paged_attention needs block_table and seq_lens, or plan=")
        plan = _plan(block_table, seq_lens, P, cu_seqlens_q, max_seqlen_q, q.shape[0])
    elif not isinstance(plan, PagedPlan):
        raise InputError(f"plan must be an attncc.PagedPlan (from attncc.plan_paged), got "
                         f"{type(plan).__name__}")
    elif any(x is not None for x in (block_table, seq_lens, cu_seqlens_q, max_seqlen_q)):
        raise InputError("with plan=, pass no block_table, seq_lens, cu_seqlens_q or "
                         "max_seqlen_q (the plan holds them)")
    plan._check_cache(num_pages, P, q.shape[0])
    checks.check_out(out, q, v_cache.shape[3])
    scale, sides, softcap, slopes, sink = checks.call_variants(q, causal, scale, window,
                                                               softcap, alibi_slopes, sinks,
                                                               return_lse)
    launches = [] if sig is not None else None
    got = _scaled_run(q, k4, v4, plan, plan.table, scale, k_scale, v_scale, sides, softcap,
                      slopes, sink, options, return_lse, num_splits, target, runner, out=out,
                      record=launches)
    if sig is not None:
        ragged_replay.record(sig, launches, layout, q, k_cache, v_cache)
    return got


def paged_kv_append(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor,
                    v: torch.Tensor, slot_mapping: torch.Tensor, *,
                    layout: str = "NHD", k_scale: Any = None, v_scale: Any = None) -> None:
    """Writes token t's k[t], v[t] ([T, Hkv, D]) to cache slot slot_mapping[t]
    (int32; slot = page * page_size + offset; -1 skips the token, vLLM's
    padding), in place. fp8 caches: k / k_scale, v / v_scale (per tensor or
    [Hkv]) rounded to the cache's dtype, saturated (vLLM's cache write)."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    k_cache, v_cache = (checks.check_float(n, t, 4, fp8=True) for n, t in (("k_cache", k_cache),
                                                                     ("v_cache", v_cache)))
    k, v = (checks.check_float(n, t, 3) for n, t in (("k", k), ("v", v)))
    if kv_quant.is_fp8(k_cache):
        k_scale, v_scale = kv_quant.append_scales(k, k_cache, v_cache, k_scale, v_scale)
        checks.same_dtype(k, v)
        k, v = kv_quant.quantize(k, k_cache.dtype, k_scale), kv_quant.quantize(v, v_cache.dtype, v_scale)
    else:
        kv_quant.check_kv(k, k_cache, v_cache, k_scale, v_scale, -1)
        checks.same_dtype(k_cache, v_cache, k, v)
    checks.check_device("cpu" if k_cache.device.type == "cpu" else "cuda", k_cache=k_cache,
                  v_cache=v_cache, k=k, v=v)
    # numpy on the host copy: this runs per layer per step, and numpy's
    # per-operation cost is a fraction of torch's.
    slots = checks.check_index("slot_mapping", slot_mapping, 1).numpy().astype(np.int64)
    if slots.size != k.shape[0] or v.shape[0] != k.shape[0]:
        raise InputError(f"slot_mapping ({slots.size}), k ({k.shape[0]}) and v "
                         f"({v.shape[0]}) must have one entry per token")
    if layout == "NHD":
        N, P, H = k_cache.shape[:3]
    else:
        N, H, P = k_cache.shape[:3]
    for name, cache, t in (("k", k_cache, k), ("v", v_cache, v)):
        if t.shape[1] != H or t.shape[2] != cache.shape[3]:
            raise InputError(f"{name} {tuple(t.shape)} does not fit the cache "
                             f"{tuple(cache.shape)} (layout {layout!r})")
    if slots.size and (slots.min() < -1 or slots.max() >= N * P):
        raise InputError(f"slot_mapping entries must be -1 or in [0, {N * P}) (pages x "
                         "page_size)")
    keep = slots >= 0
    if not keep.all():
        slots = slots[keep]
        kept = torch.from_numpy(np.flatnonzero(keep)).to(k.device)
        k, v = k[kept], v[kept]
    page, off = (torch.from_numpy(x).to(k_cache.device) for x in np.divmod(slots, P))
    if layout == "NHD":
        k_cache[page, off] = k
        v_cache[page, off] = v
    else:
        k_cache[page, :, off] = k
        v_cache[page, :, off] = v


def _scaled_run(q, k4, v4, plan: ragged_schedule.RaggedPlan, table, scale: float, k_scale,
                v_scale, *rest, out: Optional[torch.Tensor] = None,
                record: Optional[list] = None):
    """_run with the fp8 scales: k_scale in the compiled scale and v_scale on
    the output, or through an f32 query (kv_quant.widened). `out`: where the
    output goes (checks.check_out), `record`: as _run's."""
    dtype, rows = q.dtype, None
    if kv_quant.widened(q, k_scale, v_scale):
        rows = kv_quant.token_rows(plan.q_start, plan.lq, q.shape[0])
        q, k_scale = kv_quant.widen_query(q, k_scale, plan.batch, rows)
    got = _run(q, k4, v4, plan, table, scale * k_scale, *rest,
               out=out if rows is None else None, record=record)
    got = kv_quant.finish(got, dtype, v_scale, plan.batch, rows)
    res = got[0] if isinstance(got, tuple) else got
    if out is not None and res is not out:      # the widened query's f32 output
        out.copy_(res)
        got = (out, got[1]) if isinstance(got, tuple) else out
    return got
