"""Quantized KV caches: fp8 K and V with per-tensor scales (docs/quantized-kv.md).

K and V may be `torch.float8_e4m3fn` or `torch.float8_e5m2` (both the same)
under a float32, float16 or bfloat16 query; the real values are
`k.float() * k_scale` and `v.float() * v_scale` (vLLM's `kv_cache_dtype="fp8"`
with `k_scale` / `v_scale`, FlashAttention-3's `k_descale` / `v_descale` as
one number per tensor). The kernel reads the bytes and widens them to f32 as
it loads them (attn-lower-to-cpu, CpuEmitter::fp8ToF32); the scales never
touch K or V:

* `k_scale` multiplies every score, so it joins the softmax scale
  (`scale * k_scale` is compiled into the kernel like `scale` is);
* `v_scale` multiplies every output row (the softmax weights sum to 1), so it
  is applied to the output after the kernel: one pass over [.., Dv], nothing
  next to the attention (and skipped when it is 1, vLLM's default).

Scales are compiled in, as `scale` is: a model's scales are fixed per layer
(calibrated, or computed once at the first step), so a generate loop still
compiles one kernel per layer configuration.

Per-KV-head scales `[kv_heads]` and per-(sequence, KV head) ones,
FlashAttention-3's `k_descale` / `v_descale` shape `[batch, kv_heads]` (vLLM
expands its per-layer scale to it), are tensors of run-time values, so they are not compiled in: the query is widened
to f32 and multiplied by its KV head's k_scale, the kernel runs with an f32
query (and so an f32 output), and the output rows are multiplied by v_scale
before the one rounding to the query's dtype (`widened`). A per-tensor
v_scale other than 1 under a 16-bit query takes the same route, so the output
is rounded once, not twice (kernel, then `* v_scale`).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from ..errors import InputError

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_WIDE = (torch.float32, torch.float16, torch.bfloat16)


def is_fp8(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in FP8_DTYPES


def _scale_value(name: str, s: Any, kv_heads: int) -> Any:
    """A positive finite number from a float, an int or a one-element tensor
    (vLLM keeps `layer._k_scale` as a tensor; reading it syncs a GPU once),
    or a float tensor of them per KV head: [kv_heads] (every sequence's) or
    [sequences, kv_heads], returned as f32 [1 or sequences, kv_heads]."""
    if isinstance(s, torch.Tensor) and s.dim() in (1, 2) and s.numel() != 1 and kv_heads >= 0:
        if s.shape[-1] != kv_heads or not s.dtype.is_floating_point:
            raise InputError(f"{name} must be one number, a [{kv_heads}] or a [sequences, "
                             f"{kv_heads}] float tensor (one per KV head, or per sequence and "
                             f"KV head); got {s.dtype} of shape {tuple(s.shape)}")
        s = s.reshape(-1, kv_heads)
        s = s.detach().to("cpu", torch.float32)   # fp8 K/V run on the CPU only
        if not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise InputError(f"{name} must be positive and finite everywhere")
        return s
    if isinstance(s, torch.Tensor):
        if s.numel() != 1:
            per = f", a [{kv_heads}] or a [sequences, {kv_heads}] tensor" if kv_heads >= 0 \
                else " here"
            raise InputError(f"{name} must be one number (a per-tensor scale){per}, got a "
                             f"tensor of shape {tuple(s.shape)}")
        s = s.item()
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise InputError(f"{name} must be a number or a one-element tensor, got "
                         f"{type(s).__name__}")
    s = float(s)
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"{name} must be positive and finite, got {s!r}")
    return s


def check_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: Any,
             v_scale: Any, kv_heads: int) -> tuple[Any, Any]:
    """Checks the dtypes of a call that may carry fp8 K/V; returns the scales
    (1.0 where not given; floats, or [sequences, kv_heads] f32 tensors). Wide
    K/V take no scales; fp8 K/V need one fp8 dtype for both and a 16- or
    32-bit float query (the output's dtype)."""
    fp8 = [t.dtype in FP8_DTYPES for t in (k, v)]
    if not any(fp8):
        if k_scale is not None or v_scale is not None:
            raise InputError("k_scale / v_scale apply to fp8 K/V (torch.float8_e4m3fn or "
                             f"torch.float8_e5m2); k and v are {k.dtype}")
        return 1.0, 1.0
    if k.dtype != v.dtype:
        raise InputError(f"k and v must have one fp8 dtype; got {k.dtype} and {v.dtype}")
    if q.dtype not in _WIDE:
        raise InputError(f"with fp8 k and v, q must be float32, float16 or bfloat16 (the "
                         f"output's dtype); got {q.dtype}")
    return (1.0 if k_scale is None else _scale_value("k_scale", k_scale, kv_heads),
            1.0 if v_scale is None else _scale_value("v_scale", v_scale, kv_heads))


def append_scales(k: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: Any,
                  v_scale: Any) -> tuple[Any, Any]:
    """paged_kv_append's scales: per tensor or per KV head ([Hkv]); a cache
    write has no sequences, so not per sequence."""
    scales = check_kv(k, k_cache, v_cache, k_scale, v_scale, k.shape[1])
    if any(isinstance(s, torch.Tensor) and s.shape[0] != 1 for s in scales):
        raise InputError("paged_kv_append takes k_scale / v_scale per tensor or per KV head "
                         f"([{k.shape[1]}]), not per sequence")
    return scales


def widened(q: torch.Tensor, k_scale: Any, v_scale: Any) -> bool:
    """Whether the call runs with an f32 query (module docstring): scales per
    (sequence, KV head), or a v_scale other than 1 under a 16-bit query."""
    return isinstance(k_scale, torch.Tensor) or isinstance(v_scale, torch.Tensor) or \
        (v_scale != 1.0 and q.dtype != torch.float32)


def _rows(s: torch.Tensor, name: str, seqs: int, heads: int, rows: Optional[torch.Tensor],
          dims: int) -> torch.Tensor:
    """s [seqs, kv_heads] as a factor broadcasting over q or the output
    ([B, H, L, D] with rows None; [tokens, H, D] with rows[token] = sequence)."""
    if s.shape[0] != seqs and s.shape[0] != 1:
        raise InputError(f"{name} has {s.shape[0]} rows; the call has {seqs} sequences")
    f = s.expand(seqs, -1).repeat_interleave(heads // s.shape[1], dim=1)
    f = f if rows is None else f[rows]
    return f.view(f.shape + (1,) * (dims - 2))


def widen_query(q: torch.Tensor, k_scale: Any, seqs: int,
                rows: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, float]:
    """The f32 query the kernel takes and the per-tensor k_scale left to
    compile in (1.0 when the per-head one went into the query)."""
    if isinstance(k_scale, torch.Tensor):
        return q.float() * _rows(k_scale, "k_scale", seqs, q.shape[1], rows, q.dim()), 1.0
    return q.float(), k_scale


def finish(got: Any, dtype: torch.dtype, v_scale: Any, seqs: int = 1,
           rows: Optional[torch.Tensor] = None) -> Any:
    """A kernel's fresh output (or (out, lse)) times v_scale in place (None
    and 1 change nothing), then in `dtype`: a widened call's f32 output is
    rounded once to the query's dtype; elsewhere the dtypes are equal."""
    out = got[0] if isinstance(got, tuple) else got
    if isinstance(v_scale, torch.Tensor):
        out.mul_(_rows(v_scale, "v_scale", seqs, out.shape[1], rows, out.dim()))
    elif v_scale is not None and v_scale != 1.0:
        out.mul_(v_scale)
    out = out.to(dtype)
    return (out, got[1]) if isinstance(got, tuple) else out


def token_rows(q_start: Any, lq: Any, tokens: int) -> torch.Tensor:
    """The sequence of each packed query token (ragged plans' q_start, lq:
    int64 host arrays, numpy or torch)."""
    q_start, lq = torch.as_tensor(q_start), torch.as_tensor(lq)
    rows = torch.searchsorted(q_start + lq, torch.arange(tokens), right=True)
    return rows.clamp_(max=max(lq.numel() - 1, 0))


def quantize(x: torch.Tensor, dtype: torch.dtype, scale: Any) -> torch.Tensor:
    """`x / scale` rounded to fp8 `dtype`, saturated at its largest finite
    value (torch's cast would give NaN for E4M3FN, inf for E5M2), as vLLM's
    cache writes do. `scale`: a number, or [1, kv_heads] for x [T, kv_heads, D]."""
    top = torch.finfo(dtype).max
    if isinstance(scale, torch.Tensor):
        y = x.float() / scale.reshape(1, -1, 1)
    else:
        y = x.float() if scale == 1.0 else x.float() / scale
    return y.clamp_(-top, top).to(dtype)


def unit(s: Any) -> bool:
    """True for a scale that changes nothing (None or the float 1.0)."""
    return s is None or (type(s) is float and s == 1.0)


def fast(q: Any, k_scale: Any, v_scale: Any) -> bool:
    """Whether a call's scales allow attncc.attention's fast path (replaying
    a recorded kernel, frontend/fast_path.py): none, or per-tensor floats
    (k_scale compiled in; v_scale on the output, or 1 under a 16-bit query,
    which takes the f32-output route instead)."""
    if not (k_scale is None or type(k_scale) is float):
        return False
    return unit(v_scale) or (type(v_scale) is float and
                             getattr(q, "dtype", None) is torch.float32)


def fast_key(sig: Optional[tuple], k_scale: Any, v_scale: Any) -> Optional[tuple]:
    """The fast path's signature with the scales' values: a recipe records a
    kernel compiled for its k_scale. Unscaled calls keep the plain key."""
    if sig is None or (unit(k_scale) and unit(v_scale)):
        return sig
    return sig + ("kv_scales", k_scale, v_scale)
