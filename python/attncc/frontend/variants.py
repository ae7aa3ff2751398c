"""The score variants of `attncc.attention` (sliding window, soft-capping,
ALiBi slopes, attention sinks, bottom-right causal masks), checked once per
call and turned into what the graph builder's `Graph.attention` takes.

Semantics follow flash-attn where torch has none:
- `window=(left, right)` is flash-attn's `window_size`. A query sees keys
  `j` with `i' - left <= j <= i' + right`, where `i' = i + Lk - Lq`
  (bottom-right aligned, as in flash-attn), and `-1` leaves a side unbounded.
  With `causal=True`, `right` is 0. `(-1, -1)` is no window, as `None`: a
  causal mask then stays top-left like torch's `is_causal`.
- `softcap=c` computes `c * tanh(s / c)` on the scaled scores.
- `alibi_slopes` is a `[Hq]` float tensor. It adds `-slope[h] * |i + Lk - Lq - j|`.
- `sinks` is a `[Hq]` float tensor: one logit per head that joins the softmax
  denominator (gpt-oss).
- torch's `causal_lower_right(L, S)` / `causal_upper_left(L, S)` objects
  (`torch.nn.attention.bias.CausalBias`) are accepted as `attn_mask`.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import InputError, InputTypeError


@dataclass(frozen=True)
class Variants:
    """The variant part of an attention's kernel key (hashable; tensors apart)."""

    window: Optional[tuple[int, int]] = None
    align: str = "top_left"
    softcap: Optional[float] = None
    alibi: bool = False
    sinks: bool = False

    @property
    def any(self) -> bool:
        return self != Variants()

    @property
    def position_free(self) -> bool:
        """Whether every query row sees the same scores whatever its position
        and head (so GQA heads may share a query block)."""
        return self.window is None and not self.alibi and not self.sinks


def causal_bias_align(attn_mask: Any) -> Optional[str]:
    """"top_left" / "bottom_right" for torch's CausalBias objects, else None."""
    # A CausalBias exists only once its module is imported: looked up there,
    # never imported here (importing it imports torch._dynamo, seconds that
    # a first call of a cached kernel must not pay).
    bias_module = sys.modules.get("torch.nn.attention.bias")
    if attn_mask is None or bias_module is None:
        return None
    CausalBias, CausalVariant = bias_module.CausalBias, bias_module.CausalVariant
    if not isinstance(attn_mask, CausalBias):
        return None
    return "bottom_right" if attn_mask.variant == CausalVariant.LOWER_RIGHT else "top_left"


def check_causal_bias(attn_mask: Any, L: int, S: int) -> None:
    if (attn_mask.seq_len_q, attn_mask.seq_len_kv) != (L, S):
        raise InputError(f"attn_mask is a causal bias for (L, S) = ({attn_mask.seq_len_q}, "
                         f"{attn_mask.seq_len_kv}) but q and k give ({L}, {S})")


# Window sides are i64 attributes of attn.attention; anything longer than any
# sequence is the same as -1 (unbounded).
MAX_WINDOW_SIDE = 2 ** 62


def window_sides(window: Any) -> tuple[int, int]:
    """flash-attn's window_size checked: (left, right) ints, -1 = unbounded."""
    if not isinstance(window, (tuple, list)) or len(window) != 2 or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in window):
        raise InputTypeError(f"window must be a (left, right) pair of ints (flash-attn's "
                             f"window_size; -1 = unbounded), got {window!r}")
    left, right = window
    if left < -1 or right < -1:
        raise InputError(f"window sides must be >= -1 (-1 = unbounded), got {window!r}")
    if max(left, right) > MAX_WINDOW_SIDE:
        raise InputError(f"window sides must be at most 2**62 (-1 = unbounded), got {window!r}")
    return left, right


def per_head(name: str, t: Any, q: torch.Tensor) -> Optional[torch.Tensor]:
    """A [Hq] float tensor argument (alibi_slopes, sinks; q's dim 1 is Hq)
    checked: shape, dtype, device, grad, finite values. Returned as f32."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor of shape [{q.shape[1]}], got "
                             f"{type(t).__name__}")
    if not t.is_floating_point():
        raise InputError(f"{name} must be a float tensor, got dtype {t.dtype}")
    if tuple(t.shape) != (q.shape[1],):
        raise InputError(f"{name} must have shape [{q.shape[1]}] (one value per query head), "
                         f"got {tuple(t.shape)}")
    if t.device != q.device:
        raise InputError(f"{name} is on {t.device}, q on {q.device}")
    if t.requires_grad and torch.is_grad_enabled():
        raise InputError(f"'{name}' requires grad, but attncc has no backward pass; pass "
                         f"{name}.detach()")
    t = t.to(torch.float32).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name} has non-finite values")
    return t


def variants_of(q: torch.Tensor, *, causal: bool, align: str, window: Any, softcap: Any,
                alibi_slopes: Any, sinks: Any) -> tuple[Variants, Optional[torch.Tensor],
                                                        Optional[torch.Tensor]]:
    """The checked variants, with the slopes and sinks as f32 tensors."""
    sides = None
    if window is not None:
        left, right = window_sides(window)
        # (-1, -1) is flash-attn's "no window": it leaves a causal mask as
        # `causal` says (top-left), as window=None does.
        if (left, right) != (-1, -1):
            sides = (left, 0 if causal else right)
            align = "bottom_right"      # flash-attn's windows are bottom-right aligned
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) \
                or not math.isfinite(softcap) or softcap <= 0:
            raise InputError(f"softcap must be a positive finite number, got {softcap!r}")
        softcap = float(softcap)
    slopes = per_head("alibi_slopes", alibi_slopes, q)
    sink = per_head("sinks", sinks, q)
    return (Variants(sides, align, softcap, slopes is not None, sink is not None),
            slopes, sink)
