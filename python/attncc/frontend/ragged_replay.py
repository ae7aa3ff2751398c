"""Ragged and paged calls of a seen signature without the full path's checks.

The layers of a decode step call attncc.paged_attention with one plan
(attncc.plan_paged) and, layer after layer and step after step, one
signature: only the tensors' data and the plan differ (likewise
attncc.varlen_attention with attncc.plan_varlen, whose packed K/V grow, so
its signature holds for the layers of one step). The full path
(argument checks, the schedule's configuration, the kernel cache's key) is
~30 us of Python a call alone, and inside a serving engine's step, where the
model's matmuls evict Python's code and data between two layers, three to
five times that (vLLM, bf16 decode: 156 us a call, 57 when the same call is
repeated at once; docs/benchmarks.md). The first call of a signature leaves
a `Known`: the schedule's configuration and the kernels it launched, by
the schedule's choices (page size compiled in, heads inside, query block).
A later call with an equal key checks only what can differ under it:

* the key: the tensors' dtypes, shapes and strides (q, k / k_cache, v /
  v_cache and `out`), all on the CPU and of type torch.Tensor, the K/V form
  (NHD or HND pages, or packed [tokens, Hkv, D]), `causal`,
  `scale`, `window` and `softcap` with their types, `num_splits`,
  ATTNCC_CPU (the default CPU class the options follow) and torch's thread count.
  Every check of the full path but the plan's is a function of the key.
* only plain calls take part: no alibi_slopes, sinks, return_lse, fp8
  scales, runner or compile options; launches without split-KV pieces (their
  merge runs in torch).
* per call: the plan against the tensors (a paged plan's page size, page
  count and q's tokens: PagedPlan._check_cache; a varlen plan's q and k
  token counts: VarlenPlan._check_tokens; both raise as the full path does), its schedule
  (memoized per plan), a kernel known for each of its launches, and no input
  autograd would track. Anything else goes the full path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

_KNOWN: dict = {}
_LIMIT = 256


@dataclass(frozen=True)
class Known:
    config: dict          # ragged_schedule.schedule's configuration (ragged._run's)
    config_key: tuple     # its memo key (RaggedPlan._schedule)
    kernels: dict         # ("decode", page, heads_inner) / ("group", bm, page) -> compiled
    form: str             # K/V: "NHD" / "HND" pages, or "packed" [tokens, Hkv, D]
    Hq: int
    Hkv: int
    D: int
    Dv: int


def key(q: Any, k_cache: Any, v_cache: Any, out: Any, form: str, causal: Any, scale: Any,
        window: Any, softcap: Any, num_splits: Any) -> Optional[tuple]:
    """The signature of a plain call, or None where the full path must run."""
    T = torch.Tensor
    if type(q) is not T or type(k_cache) is not T or type(v_cache) is not T or \
            (out is not None and type(out) is not T):
        return None
    if not (q.is_cpu and k_cache.is_cpu and v_cache.is_cpu):
        return None
    if window is not None and (type(window) is not tuple or len(window) != 2 or
                               type(window[0]) is not int or type(window[1]) is not int):
        return None
    o = None if out is None else (out.dtype, out.shape, out.stride(), out.is_cpu)
    return (q.dtype, q.shape, q.stride(), k_cache.dtype, k_cache.shape, k_cache.stride(),
            v_cache.dtype, v_cache.shape, v_cache.stride(), o, form, type(causal), causal,
            type(scale), scale, window, type(softcap), softcap, type(num_splits), num_splits,
            os.environ.get("ATTNCC_CPU"), torch.get_num_threads())


def serve(plan: Any, q: Any, k: Any, v: Any, out: Any, form: str, causal: Any, scale: Any,
          window: Any, softcap: Any, num_splits: Any) -> tuple[Optional[tuple], Any]:
    """(the call's signature or None, its result where a known signature
    served it, else None: the full path runs and records)."""
    sig = key(q, k, v, out, form, causal, scale, window, softcap, num_splits)
    known = lookup(sig)
    return sig, None if known is None else run(known, plan, q, k, v, out)


def lookup(sig: Optional[tuple]) -> Optional[Known]:
    if sig is None:
        return None
    try:
        return _KNOWN.get(sig)
    except TypeError:      # an unhashable argument (the full path names it)
        return None


def record(sig: tuple, launches: list, form: str, q: torch.Tensor, k_cache: torch.Tensor,
           v_cache: torch.Tensor) -> None:
    """Keeps what the full path launched (ragged._run's `record`: the
    configuration, each launch, then ("done",) where it ran to the end)."""
    if not launches or launches[-1] != ("done",) or launches[0][0] != "config":
        return
    try:
        hash(sig)
    except TypeError:
        return
    known = _KNOWN.get(sig)
    if known is None:
        if len(_KNOWN) >= _LIMIT:
            _KNOWN.clear()     # (kernels it holds may have left the kernel cache)
        config = launches[0][1]
        known = _KNOWN[sig] = Known(config, tuple(sorted(config.items())), {}, form,
                                    q.shape[1], k_cache.shape[-2 if form == "NHD" else 1],
                                    q.shape[2], v_cache.shape[-1])
    for step in launches[1:-1]:
        if step[0] in ("decode", "group"):
            known.kernels[(step[0], *step[2:])] = step[1]


def clear() -> None:
    _KNOWN.clear()


def run(known: Known, plan: Any, q: torch.Tensor, k_cache: torch.Tensor,
        v_cache: torch.Tensor, out: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The call on these tensors, or None where the full path must run
    (k_cache / v_cache: a varlen call's packed k / v where the form is "packed")."""
    if torch.is_grad_enabled() and (q.requires_grad or k_cache.requires_grad or
                                    v_cache.requires_grad or
                                    (out is not None and out.requires_grad)):
        return None
    T = q.shape[0]
    if known.form == "packed":
        k4, v4 = k_cache.permute(1, 0, 2).unsqueeze(0), v_cache.permute(1, 0, 2).unsqueeze(0)
        plan._check_tokens(T, k_cache.shape[0])
    else:
        if known.form == "NHD":
            k4, v4 = k_cache.permute(0, 2, 1, 3), v_cache.permute(0, 2, 1, 3)
        else:
            k4, v4 = k_cache, v_cache
        plan._check_cache(k4.shape[0], k4.shape[2], T)
    sched = plan._schedule(known.config, known.config_key)
    dec = sched.decode
    if dec is not None and dec.pieces is not None:
        return None
    launches = []
    if dec is not None:
        launches.append((known.kernels.get(("decode", dec.page, dec.heads_inner)), dec.work))
    launches += [(known.kernels.get(("group", g.bm, g.page)), g.work) for g in sched.groups]
    if any(c is None for c, _ in launches):
        return None            # a launch this signature has not made yet
    o = q.new_empty((T, known.Hq, known.Dv)) if out is None else out
    Hq, Hkv, D, Dv = known.Hq, known.Hkv, known.D, known.Dv
    table = () if known.form == "packed" else (plan.table,)
    i = 0
    if dec is not None:        # the G query heads of a KV head are a block's rows
        G = Hq // Hkv
        launches[0][0]._kernel(q.reshape(T, Hkv, G, D), k4, v4, launches[0][1], *table,
                               out=o.view(T, Hkv, G, Dv))
        i = 1
    for compiled, work in launches[i:]:
        compiled._kernel(q.permute(1, 0, 2).unsqueeze(0), k4, v4, work, *table,
                         out=o.permute(1, 0, 2).unsqueeze(0))
    return o
