"""`torch.ops.attncc.attention`: `attncc.attention` as a torch custom operator.

Both integrations call attncc through this operator rather than through
`attncc.attention` directly: torch.compile (dynamo, AOT autograd, inductor)
sees one opaque op with a fake (shape-only) implementation and hands it the
real tensors at run time, instead of tracing into the kernel launcher. Its
arguments are plain values (a causal alignment string, window sides) because
custom operators take no Python objects such as torch's `CausalBias`.

`calls()` counts the operator's runs in this process: tests use it to prove
attncc ran (no integration falls back to another attention silently).

`attention_call` is what the integrations call: in plain eager code (no
tracing, no dispatch mode, plain tensors, nothing to differentiate) it runs
the operator's function directly, since the custom-operator dispatch alone
costs ~40 us per call, as much as a short decode step's kernel; everywhere
else it goes through the operator.
"""
from __future__ import annotations

import threading
from typing import Optional

import torch
from torch.nn.attention.bias import causal_lower_right
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..api import attention
from ..errors import InputError

_CALLS = {"calls": 0}
_LOCK = threading.Lock()
CAUSAL_ALIGNS = ("none", "top_left", "bottom_right")


def calls() -> int:
    """How many times the operator ran attncc (never reset)."""
    with _LOCK:
        return _CALLS["calls"]


def _target(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else "cuda"


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: Optional[torch.Tensor], causal: str, scale: Optional[float],
               window_left: int, window_right: int, softcap: Optional[float],
               sinks: Optional[torch.Tensor]) -> torch.Tensor:
    """[B, Hq, L, Dv] = attncc.attention(q, k, v, ...). `causal`: "none",
    "top_left" (torch's is_causal) or "bottom_right" (torch's
    causal_lower_right); window sides -1 = unbounded (flash-attn's
    window_size, bottom-right aligned)."""
    kwargs: dict = {}
    L, S = q.shape[2], k.shape[2]
    if causal == "bottom_right" and attn_mask is not None:
        raise InputError("causal='bottom_right' takes no attn_mask")
    if causal == "top_left" or (causal == "bottom_right" and L == S):
        kwargs["causal"] = True
    elif causal == "bottom_right" and not (L == 1 and S >= 1):
        # (One query row aligned with the last key sees every key: no mask,
        # and no CausalBias object to build per decode step.)
        attn_mask = causal_lower_right(L, S)
    elif causal not in CAUSAL_ALIGNS:
        raise InputError(f"causal must be one of {CAUSAL_ALIGNS}, got {causal!r}")
    window = None if (window_left, window_right) == (-1, -1) else (window_left, window_right)
    out = attention(q, k, v, attn_mask=attn_mask, scale=scale, window=window, softcap=softcap,
                    sinks=sinks, target=_target(q.device), **kwargs)
    with _LOCK:
        _CALLS["calls"] += 1
    return out


attention_op = torch.library.custom_op("attncc::attention", mutates_args=())(_attention)


def _eager(tensors) -> bool:
    """Whether the operator's function may run without the dispatcher: not
    under torch.compile or a dispatch mode (FakeTensorMode, FlopCounterMode,
    ...), plain tensors only, and no input that autograd would track (the
    operator's autograd formula raises on backward; the direct call would
    refuse such inputs up front instead)."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    return True


def attention_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   attn_mask: Optional[torch.Tensor], causal: str, scale: Optional[float],
                   window_left: int, window_right: int, softcap: Optional[float],
                   sinks: Optional[torch.Tensor]) -> torch.Tensor:
    """`attention_op(...)`, without the dispatcher in plain eager code."""
    args = (q, k, v, attn_mask, causal, scale, window_left, window_right, softcap, sinks)
    if _eager((q, k, v, attn_mask, sinks)):
        return _attention(*args)
    return attention_op(*args)


@attention_op.register_fake
def _attention_fake(q, k, v, attn_mask, causal, scale, window_left, window_right, softcap,
                    sinks):
    return q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))


NO_BACKWARD = ("attncc has no backward pass: torch.ops.attncc.attention (attncc's attention in "
               "transformers / torch.compile) can run forward only; train with another "
               "attention implementation")


@torch.library.custom_op("attncc::refuse_backward", mutates_args=())
def _refuse_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attention's backward: raises when it runs. An operator, not a raise
    in the autograd formula, so that torch.compile's AOT autograd can trace the
    backward graph (with the fake below) while compiling a forward that runs
    with grad enabled."""
    raise InputError(NO_BACKWARD)


@_refuse_backward.register_fake
def _refuse_backward_fake(grad, q, k, v):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _no_backward(ctx, grad):
    q, k, v = ctx.saved_tensors
    return (*_refuse_backward(grad, q, k, v), None, None, None, None, None, None, None)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])


# Forward passes with grad enabled (a model called outside torch.no_grad(),
# eager or under torch.compile) run; a backward through attncc raises
# instead of dropping the gradient.
attention_op.register_autograd(_no_backward, setup_context=_setup_context)
