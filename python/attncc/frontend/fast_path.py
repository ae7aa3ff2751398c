"""Replaying `attncc.attention`'s decisions for calls of a seen signature.

A model calls attention with one signature per layer configuration, step
after step; only the KV length changes in a decode loop. The full path
(argument checks, mask and variant classification, GQA packing, the kernel
cache's key) costs tens of microseconds of Python per call, as much as the
kernel of a short decode step. Its first run for a signature leaves a
`Recipe`; later calls of that signature check only what can differ under an
equal key and run the recorded kernel:

* the key: the tensors' types, dtypes, devices, layouts and ranks, q's
  shape, k's and v's shapes but the KV length, `causal`, `scale`, `window`
  and `softcap` with their types, ATTNCC_CPU (the default CPU class, which
  the options follow) and torch's thread count. Only plain calls
  take part (no attn_mask, alibi_slopes, sinks, return_lse, num_splits or
  compile options; CPU target; fp8 scales only as floats, their values in
  the key: kv_quant.fast_key): everything the full path decides from them
  is a function of the key.
* per call: k and v have one KV length, above 0; no input autograd would
  track (the full path refuses those, naming them); the split plan and team
  (they follow the KV length); the kernel's own argument check (static
  sizes, strides: a transposed view is still made contiguous); K/V views
  for a kernel of dense K/V go the full path, which records the strided-kv
  kernel's recipe in its place.
Anything else goes the full path, which raises the same errors as before.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from . import split_kv

_RECIPES: dict = {}
_LIMIT = 256


@dataclass(frozen=True)
class Recipe:
    compiled: Any                          # what runs: the CompiledAttention's kernel
    packed: Optional[tuple[int, ...]]      # q's GQA-packed shape, or None
    out_shape: Optional[tuple[int, ...]]   # [B, Hq, L, Dv] when packed
    split_kernel: bool                     # the split-KV form (its workspaces follow)
    lse_form: bool                         # the form has lse workspaces
    threads: int                           # resolved num_threads
    block_m: int
    block_n: int
    strided_kv: bool = False               # the kernel takes K/V views (strided-kv)


def key(q: Any, k: Any, v: Any, causal: Any, scale: Any, window: Any,
        softcap: Any) -> Optional[tuple]:
    """The signature of a plain call, or None where the full path must run."""
    if type(causal) is not bool:
        return None
    if window is not None and (type(window) is not tuple or len(window) != 2 or
                               type(window[0]) is not int or type(window[1]) is not int):
        return None
    try:
        ks, vs = k.shape, v.shape
        if len(ks) != 4 or len(vs) != 4:
            return None
        return (type(q), type(k), type(v), q.dtype, k.dtype, v.dtype, q.device, k.device,
                v.device, q.layout, k.layout, v.layout, tuple(q.shape), ks[0], ks[1], ks[3],
                vs[0], vs[1], vs[3], causal, type(scale), scale, window, type(softcap),
                softcap, os.environ.get("ATTNCC_CPU"), torch.get_num_threads())
    except (AttributeError, TypeError):
        return None


def lookup(sig: Optional[tuple]) -> Optional[Recipe]:
    return None if sig is None else _RECIPES.get(sig)


def record(sig: tuple, recipe: Recipe) -> None:
    if len(_RECIPES) >= _LIMIT:
        _RECIPES.clear()      # (kernels it holds may have left the API's LRU)
    _RECIPES[sig] = recipe


def clear() -> None:
    _RECIPES.clear()


def run(recipe: Recipe, q: torch.Tensor, k: torch.Tensor,
        v: torch.Tensor) -> Optional[torch.Tensor]:
    """The recorded call on these tensors, or None where the full path must run."""
    S = k.shape[2]
    if S == 0 or v.shape[2] != S:
        return None
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return None
    if not recipe.strided_kv and not (k.is_contiguous() and v.is_contiguous()):
        return None    # a view for a dense kernel: the full path picks the strided one
    qq = q.reshape(recipe.packed) if recipe.packed is not None else q
    B, H, L, D = qq.shape
    plan = split_kv.plan("cpu", "cpu", recipe.threads, recipe.block_m, recipe.block_n, B, H,
                         L, S, D, None)
    if plan.split_kernel != recipe.split_kernel:
        return None
    Dv = v.shape[3]
    kernel = recipe.compiled
    native = getattr(kernel, "_native_call", None)   # a CpuKernel (not an EmptyKernel)
    if native is not None:
        # The kernel's own call without CpuKernel.__call__'s generic part
        # (argument count, output shape from the memref, layout fixes): the
        # output is [B, H, L, Dv] of the packed q, the workspaces are the
        # API's. Any mismatch runs nothing and goes the checked way below.
        extra = split_kv.workspaces(qq, Dv, plan.splits, plan.split_kernel, reuse=True) \
            if recipe.lse_form else ()
        out = torch.empty((B, H, L, Dv), dtype=kernel.args[3].dtype)
        if native([qq, k, v, out, *extra], plan.team if recipe.threads > 1 else None,
                  4 if extra else None):
            return out.reshape(recipe.out_shape) if recipe.packed is not None else out
    out, _ = split_kv.launch(kernel, [qq, k, v], Dv, plan, recipe.lse_form, recipe.threads,
                             reuse=True)
    return out.reshape(recipe.out_shape) if recipe.packed is not None else out
