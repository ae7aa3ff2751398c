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


def _scale_value(name: str, s: Any) -> float:
    """A positive finite number from a float, an int or a one-element tensor
    (vLLM keeps `layer._k_scale` as a tensor; reading it syncs a GPU once)."""
    if isinstance(s, torch.Tensor):
        if s.numel() != 1:
            raise InputError(f"{name} must be one number (a per-tensor scale), got a tensor of "
                             f"shape {tuple(s.shape)}")
        s = s.item()
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise InputError(f"{name} must be a number or a one-element tensor, got "
                         f"{type(s).__name__}")
    s = float(s)
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"{name} must be positive and finite, got {s!r}")
    return s


def check_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: Any,
             v_scale: Any) -> tuple[float, float]:
    """Checks the dtypes of a call that may carry fp8 K/V; returns the scales
    (1.0 where not given). Wide K/V take no scales; fp8 K/V need one fp8
    dtype for both and a 16- or 32-bit float query (the output's dtype)."""
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
    return (1.0 if k_scale is None else _scale_value("k_scale", k_scale),
            1.0 if v_scale is None else _scale_value("v_scale", v_scale))


def scale_output(out: torch.Tensor, v_scale: float) -> torch.Tensor:
    """`out * v_scale` in place (a no-op for 1)."""
    if v_scale != 1.0:
        out.mul_(v_scale)
    return out


def quantize(x: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """`x / scale` rounded to fp8 `dtype`, saturated at its largest finite
    value (torch's cast would give NaN for E4M3FN, inf for E5M2), as vLLM's
    cache writes do."""
    top = torch.finfo(dtype).max
    y = x.float() if scale == 1.0 else x.float() / scale
    return y.clamp_(-top, top).to(dtype)


def unit(s: Any) -> bool:
    """True for a scale that changes nothing (None or the float 1.0)."""
    return s is None or (type(s) is float and s == 1.0)
