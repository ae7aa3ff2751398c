"""The argument checks of attncc's ragged and paged calls (attncc.ragged):
vectorised, once per call, on the host (index tensors as numpy: a decode
step runs them per step, and numpy's per-operation cost on a few entries is
a fraction of torch's). Each raises InputError naming the argument."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from ..errors import InputError
from ..targets import TARGETS
from ..targets import kind as target_kind
from . import kv_quant, variants

DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
KV_DTYPES = {**DTYPES, torch.float8_e4m3fn: "f8E4M3FN", torch.float8_e5m2: "f8E5M2"}


def check_float(name: str, t: Any, rank: int, fp8: bool = False) -> torch.Tensor:
    """`fp8`: K/V (caches), which may also be fp8 (frontend/kv_quant.py)."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != rank:
        raise InputError(f"{name} must have rank {rank}, got shape {tuple(t.shape)}")
    if t.dtype not in (KV_DTYPES if fp8 else DTYPES):
        raise InputError(f"{name} has dtype {t.dtype}; expected float32, float16 or bfloat16"
                         + (" (or float8_e4m3fn / float8_e5m2)" if fp8 else ""))
    if t.stride(-1) != 1:
        raise InputError(f"{name} must have a unit-stride last dimension, got strides "
                         f"{t.stride()}")
    return t


def check_index(name: str, t: Any, rank: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name} must be an int32 torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.int32:
        raise InputError(f"{name} must be int32, got {t.dtype}")
    if t.dim() != rank:
        raise InputError(f"{name} must have rank {rank}, got shape {tuple(t.shape)}")
    # Checked (and the work table built) on the host: one small copy per call.
    return t.cpu()


def index_array(name: str, t: Any, rank: int) -> np.ndarray:
    """An index tensor's host values as int64 numpy (a copy: plans keep them)."""
    return check_index(name, t, rank).numpy().astype(np.int64)


def check_cu(name: str, cu: Any, total: Optional[int], num_seqs: Optional[int]) -> np.ndarray:
    """Cumulative lengths ending at the packed token count `total` (None: a
    plan's, whose count is its own last entry)."""
    c = index_array(name, cu, 1)
    if c.size < 1:
        raise InputError(f"{name} must have batch + 1 >= 1 entries, got none")
    if num_seqs is not None and c.size != num_seqs + 1:
        raise InputError(f"{name} has {c.size} entries, expected batch + 1 = {num_seqs + 1}")
    if int(c[0]) != 0:
        raise InputError(f"{name}[0] must be 0, got {int(c[0])}")
    if c.size > 1 and (c[1:] < c[:-1]).any():
        raise InputError(f"{name} must be non-decreasing (cumulative sequence lengths)")
    if total is not None and int(c[-1]) != total:
        raise InputError(f"{name}[-1] = {int(c[-1])} must equal the packed token count {total}")
    return c


def check_max(name: str, given: Any, lengths: np.ndarray) -> None:
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise InputError(f"{name} must be a non-negative int, got {given!r}")
    actual = int(lengths.max()) if lengths.size else 0
    if given < actual:
        raise InputError(f"{name} = {given} is less than the longest sequence ({actual})")


def call_variants(q: torch.Tensor, causal: bool, scale: Any, window: Any, softcap: Any,
              alibi_slopes: Any, sinks: Any, return_lse: bool):
    """(scale, window_sides or None, softcap, slopes, sinks), checked."""
    if not isinstance(return_lse, bool):
        raise InputError(f"return_lse must be True or False, got {return_lse!r}")
    D = q.shape[2]
    if scale is None:
        scale = D ** -0.5 if D else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
            not math.isfinite(scale):
        raise InputError(f"scale must be a finite number, got {scale!r}")
    left, right = -1, -1
    if window is not None:
        left, right = variants.window_sides(window)
    if causal:
        right = 0 if right < 0 else min(right, 0)
    sides = (left, right) if (left >= 0 or right >= 0) else None
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or \
                not (softcap > 0 and math.isfinite(softcap)):
            raise InputError(f"softcap must be a positive finite number, got {softcap!r}")
        softcap = float(softcap)
    # Shape, dtype, device, grad and finiteness, as attention() checks them.
    slopes = variants.per_head("alibi_slopes", alibi_slopes, q)
    sink = variants.per_head("sinks", sinks, q)
    return float(scale), sides, softcap, slopes, sink


def check_target(target: Any) -> None:
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}; expected one of {TARGETS}")


def check_device(target: str, **tensors: torch.Tensor) -> None:
    """CPU target: CPU tensors; GPU targets: CUDA tensors, all on one device."""
    want = "cpu" if target_kind(target) == "cpu" else "cuda"
    devices = set()
    for name, t in tensors.items():
        if t.device.type != want:
            raise InputError(f"{name} is on {t.device}; target {target!r} takes "
                             f"{'CPU' if want == 'cpu' else 'CUDA'} tensors")
        devices.add(t.device)
    if len(devices) > 1:
        raise InputError(f"the tensors are on several devices: {sorted(map(str, devices))}")


def kv_dtypes(q, k, v, k_scale, v_scale, target: str, kv_heads: int) -> tuple[Any, Any]:
    """q, k and v of one dtype, or fp8 k and v (CPU only): their scales."""
    scales = kv_quant.check_kv(q, k, v, k_scale, v_scale, kv_heads)
    if kv_quant.is_fp8(k) and target_kind(target) != "cpu":
        raise InputError(f"fp8 K/V run on the CPU only (target {target!r}): the GPU kernels "
                         "take one element type for q, k and v (docs/quantized-kv.md)")
    if not kv_quant.is_fp8(k):
        same_dtype(q, k, v)
    return scales


def check_out(out: Any, q: torch.Tensor, Dv: int) -> None:
    """`out=` of a call: None, or a contiguous tensor of the output's shape
    [tokens, Hq, Dv] and dtype (q's) on q's device."""
    if out is None:
        return
    want = (q.shape[0], q.shape[1], Dv)
    if not isinstance(out, torch.Tensor) or out.dtype != q.dtype or \
            tuple(out.shape) != want or out.device != q.device or not out.is_contiguous():
        got = (f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else
               f"{out.dtype} {tuple(out.shape)} on {out.device}"
               f"{'' if out.is_contiguous() else ', not contiguous'}")
        raise InputError(f"out must be a contiguous {q.dtype} tensor of shape {want} on "
                         f"{q.device}; got {got}")
    if out.requires_grad and torch.is_grad_enabled():
        raise InputError("out must not require grad (attncc's kernels have no backward)")


def same_dtype(*ts: torch.Tensor) -> None:
    if len({t.dtype for t in ts}) != 1:
        raise InputError(f"dtypes differ: {[str(t.dtype) for t in ts]}")


def check_heads(Hq: int, Hkv: int, Dq: int, Dk: int, what: str) -> None:
    if Hkv == 0 or Hq % Hkv:
        raise InputError(f"query heads ({Hq}) must be a multiple of {what}'s heads ({Hkv})")
    if Dq != Dk:
        raise InputError(f"q head_dim {Dq} != {what} head_dim {Dk}")
