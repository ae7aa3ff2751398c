"""The argument checks of `attncc.attention`'s q, k and v (types, ranks,
dtypes, fp8 K/V and their scales, devices, shapes, GQA head counts): every
refusal an `InputError` naming the argument, before anything compiles."""
from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError, InputTypeError
from . import kv_quant
from .capture import SUPPORTED_FLOATS, check_no_grad, target_device_type


def check_qkv(q: Any, k: Any, v: Any, target: str, k_scale: Any = None,
              v_scale: Any = None) -> tuple[Any, Any]:
    """Checks q, k and v; returns the fp8 K/V scales (frontend/kv_quant.py)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise InputError(f"{name} must have shape [batch, heads, seq, head_dim]; "
                             f"got shape {tuple(t.shape)}")
        if t.dtype not in SUPPORTED_FLOATS and (name == "q" or not kv_quant.is_fp8(t)):
            raise InputError(f"{name} has dtype {t.dtype}; attncc supports torch.float32, "
                             "torch.float16 and torch.bfloat16")
        if t.layout != torch.strided:
            raise InputError(f"{name} has layout {t.layout}; only dense tensors are supported")
    check_no_grad((("q", q), ("k", k), ("v", v)))
    scales = kv_quant.check_kv(q, k, v, k_scale, v_scale, k.shape[1])
    if kv_quant.is_fp8(k) and target != "cpu":
        raise InputError(f"fp8 K/V run on the CPU only (target {target!r}): the GPU kernels "
                         "take one element type for q, k and v (docs/quantized-kv.md)")
    if not kv_quant.is_fp8(k) and not q.dtype == k.dtype == v.dtype:
        raise InputError(f"q, k and v must have one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise InputError(f"q, k and v must be on one device; got {q.device}, {k.device}, "
                         f"{v.device}")
    if q.device.type == "meta":
        raise InputError("meta tensors carry no data: they can be lowered "
                         "(attncc.compile(fn).lower(...)) but not run")
    if q.device.type != target_device_type(target):
        raise InputError(f"tensors are on {q.device} but the target is '{target}'")
    (B, Hq, _, Dq), (Bk, Hk, S, Dk), (Bv, Hv, Sv, _) = q.shape, k.shape, v.shape
    if not B == Bk == Bv:
        raise InputError(f"batch sizes differ: q {B}, k {Bk}, v {Bv}")
    if Dq != Dk:
        raise InputError(f"head_dim of q ({Dq}) and k ({Dk}) differ")
    if S != Sv:
        raise InputError(f"k and v have different sequence lengths ({S} and {Sv})")
    if Hk != Hv:
        raise InputError(f"k and v have different numbers of heads ({Hk} and {Hv})")
    if Hk == 0 or Hq % Hk:
        raise InputError(f"q has {Hq} heads, which is not a multiple of the {Hk} heads of "
                         "k and v (GQA/MQA need Hq = n * Hkv)")
    return scales
