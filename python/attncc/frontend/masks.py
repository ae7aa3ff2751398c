"""Masks on attention scores: recognizing structure and building biases.

A mask reaches attncc as one or more *parts* applied to the scores:

* a fill part, `scores.masked_fill(cond, fill)` or `torch.where(cond, scores, fill)`
  (the second masks where `cond` is False);
* an additive part, `scores + bias`.

When every part is boolean-like (a fill of `-inf` or at most
`finfo(float16).min`, e.g. `finfo(dtype).min` or `-1e9`; an additive tensor of
only `0` and `-inf`), the kept positions form a boolean matrix. If that matrix
is the same for every batch and head, has no fully masked row, and is

* `j <= i + off`: the structured mask `causal`,
* `i + off - W < j <= i + off`: `sliding_window` with window `W`,

with `off = 0` (top-left, torch's `is_causal`) or `off = S - L` (bottom-right:
the last query sees the last key, as KV-cache decoding and transformers'
masks with a cache build it), or keeps everything (no mask), it becomes
attributes of `attn.attention` (and the kernel skips masked blocks). When
`L == S` both alignments coincide and top-left is reported. Anything else
(key padding, alone or combined with causal; masks that differ per batch or
head; other patterns) is an additive `bias` operand: `attn.attention` takes one
mask, a structure or a bias, so a causal mask with padding stays a bias.

Exactness: a structured mask replaces masked scores by `-inf`; a finite fill
replaces them by a very negative number. Both give zero probability unless a
row is masked entirely, so structure is recognized only when no row is fully
masked. A finite fill that becomes a bias is added to the score rather than
replacing it, as finfo(float32).min / 8, which hides any score: a fully masked
row is then uniform, as eager's (fills above finfo(float16).min are refused
while capturing).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..errors import InputError, InputTypeError

# Fills at or below this count as -inf for recognizing structure.
_NEG_LARGE = float(torch.finfo(torch.float16).min)

# What a finite fill becomes in a bias. masked_fill makes a fully masked row
# all `fill`, so eager's softmax is uniform there; `score + bias` is uniform
# only where the bias hides the scores: at finfo(float32).min / 8 an ulp is
# 2**102, and eight such parts still sum to a finite value. Elsewhere both
# give exp(fill - max) = 0 for any fill at most finfo(float16).min.
_FILL_BIAS = float(torch.finfo(torch.float32).min) / 8


@dataclass(frozen=True)
class MaskClass:
    """What a mask turned out to be: 'none', 'causal', 'sliding_window'
    (with window) or 'bias'; causal and sliding_window have an alignment,
    'top_left' or 'bottom_right'."""

    kind: str
    window: Optional[int] = None
    align: str = "top_left"

    def __str__(self) -> str:
        s = self.kind if self.window is None else f"{self.kind}(window={self.window})"
        return s if self.align == "top_left" else f"{s}[{self.align}]"


NONE = MaskClass("none")
CAUSAL = MaskClass("causal")
BIAS = MaskClass("bias")


@dataclass(frozen=True)
class MaskPart:
    """One masking op on the scores. `mode` is 'fill' or 'add'. A fill masks
    where `cond == masked_if`. `divisor` is the product of the scales applied
    between the first mask on the scores and this one: the combined bias at
    the first mask's position is `sum(part_bias / divisor)`."""

    mode: str
    masked_if: bool = True
    fill: float = -math.inf
    divisor: float = 1.0

    def boolean_like_fill(self) -> bool:
        return self.mode == "fill" and self.fill <= _NEG_LARGE


def keep_of(part: MaskPart, value: torch.Tensor) -> Optional[torch.Tensor]:
    """The kept positions of one part (bool tensor), or None when the part is
    not boolean-like."""
    if part.mode == "fill":
        if not part.boolean_like_fill():
            return None
        cond = value.to(torch.bool)
        return ~cond if part.masked_if else cond
    if value.dtype == torch.bool or not value.is_floating_point():
        return None
    keep = value == 0
    masked = value <= _NEG_LARGE
    if not bool(torch.all(keep | masked)):
        return None
    return keep


def combined_keep(parts: Sequence[MaskPart], values: Sequence[torch.Tensor]) -> Optional[torch.Tensor]:
    """The positions kept by all parts, or None when some part is not boolean-like."""
    keep = None
    for part, value in zip(parts, values):
        k = keep_of(part, value)
        if k is None:
            return None
        keep = k if keep is None else keep & k
    return keep


def classify_keep(keep: torch.Tensor, L: int, S: int, bottom_right: bool = True) -> MaskClass:
    """Recognizes causal / sliding-window (top-left, and bottom-right unless
    `bottom_right` is False: a target without it) / no mask in a boolean keep
    matrix broadcastable to [..., L, S]; BIAS when it is something else."""
    if keep.dim() < 2 and keep.numel() != 1:
        return BIAS
    if bool(torch.all(keep)):
        return NONE
    if keep.dim() < 2 or tuple(keep.shape[-2:]) != (L, S):
        return BIAS  # e.g. a [.., 1, S] padding mask: the same for every query row
    flat = keep.reshape(-1, L, S)
    k2 = flat[0]
    if flat.shape[0] > 1 and not bool(torch.all(flat == k2)):
        return BIAS  # differs per batch or head (padding, per-head masks)
    counts = k2.sum(dim=-1)
    if not bool(torch.all(counts > 0)):
        return BIAS  # a row masked entirely: keep the exact fill semantics
    device = str(keep.device)
    # At most four comparisons with cached patterns: causal and the window
    # of the widest row, each top-left and (when S != L) bottom-right.
    for align, off in (("top_left", 0), ("bottom_right", S - L)):
        if align == "bottom_right" and (off == 0 or not bottom_right):
            break
        causal = _causal_pattern(L, S, device, off)
        if torch.equal(k2, causal):
            return MaskClass("causal", None, align)
        w = int(counts.max())
        if torch.equal(k2, causal & ~_causal_pattern(L, S, device, off - w)):
            return MaskClass("sliding_window", w, align)
    return BIAS


@functools.lru_cache(maxsize=16)
def _causal_pattern(L: int, S: int, device: str, diagonal: int = 0) -> torch.Tensor:
    """`j <= i + diagonal` on [L, S] (cached: masks are checked on every call)."""
    return torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal)


def classify(parts: Sequence[MaskPart], values: Sequence[torch.Tensor], L: int, S: int,
             bottom_right: bool = True) -> MaskClass:
    keep = combined_keep(parts, values)
    if keep is None:
        # additive parts that are all zero are no mask at all
        if all(p.mode == "add" for p in parts) and all(
                bool(torch.all(v == 0)) for v in values):
            return NONE
        return BIAS
    return classify_keep(keep, L, S, bottom_right)


def bias_dtype(parts: Sequence[MaskPart], dtypes: Sequence[torch.dtype]) -> torch.dtype:
    """The dtype of the bias operand built from `parts`: an additive float
    tensor used as is keeps its dtype; anything combined is float32."""
    if len(parts) == 1 and parts[0].mode == "add" and parts[0].divisor == 1.0 \
            and dtypes[0] in (torch.float32, torch.float16, torch.bfloat16):
        return dtypes[0]
    return torch.float32


def build_bias(parts: Sequence[MaskPart], values: Sequence[torch.Tensor]) -> torch.Tensor:
    """The additive bias equivalent to `parts` at the first mask's position."""
    if len(parts) == 1 and parts[0].mode == "add" and parts[0].divisor == 1.0 \
            and values[0].dtype in (torch.float32, torch.float16, torch.bfloat16):
        return values[0]
    total = None
    for part, value in zip(parts, values):
        if part.mode == "fill":
            # A fill replaces what came before it (a second fill of the same
            # positions must not add up: that is not masked_fill's result).
            cond = value.to(torch.bool)
            masked = cond if part.masked_if else ~cond
            fill = (_FILL_BIAS if part.boolean_like_fill() and math.isfinite(part.fill)
                    else float(part.fill)) / part.divisor
            if total is None:
                total = torch.zeros(masked.shape, dtype=torch.float32, device=value.device)
            total = torch.where(masked, fill, total)
            continue
        b = value.to(torch.float32)
        if part.divisor != 1.0:
            b = b / part.divisor
        total = b if total is None else total + b
    return total


def bool_mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """SDPA's bool `attn_mask` (True = take part in attention) as an additive
    float32 bias of 0 / -inf."""
    return build_bias([MaskPart("fill", masked_if=False)], [mask])


def sdpa_mask_class(attn_mask: object, causal: bool, q: torch.Tensor, k: torch.Tensor):
    """(MaskClass, bias tensor or None) for `attncc.attention`'s SDPA-style mask
    arguments: `attn_mask` (bool: True = attend, or float: added) or `causal`."""
    if not isinstance(causal, bool):
        raise InputTypeError(f"causal must be a bool, got {type(causal).__name__}")
    if attn_mask is None:
        return (CAUSAL if causal else NONE), None
    if causal:
        raise InputError("give either attn_mask or causal=True, not both "
                         "(as torch's scaled_dot_product_attention)")
    if not isinstance(attn_mask, torch.Tensor):
        raise InputTypeError(f"attn_mask must be a torch.Tensor, got {type(attn_mask).__name__}")
    if attn_mask.device != q.device:
        raise InputError(f"attn_mask is on {attn_mask.device}, q on {q.device}")
    B, H, L = q.shape[:3]
    S = k.shape[2]
    if attn_mask.dim() > 4:
        raise InputError(f"attn_mask has rank {attn_mask.dim()}; it must broadcast to "
                         f"[batch, heads, L, S] = {(B, H, L, S)}")
    try:
        shape = torch.broadcast_shapes(tuple(attn_mask.shape), (B, H, L, S))
    except RuntimeError:
        shape = None
    if shape != (B, H, L, S):
        raise InputError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                         f"[batch, heads, L, S] = {(B, H, L, S)}")
    if attn_mask.dtype == torch.bool:
        part = MaskPart("fill", masked_if=False)
    elif attn_mask.dtype in (torch.float32, torch.float16, torch.bfloat16):
        part = MaskPart("add")
    else:
        raise InputError(f"attn_mask has dtype {attn_mask.dtype}; expected torch.bool (True = "
                         "attend) or a float dtype (added to the scores)")
    cls = classify([part], [attn_mask], L, S)
    bias = build_bias([part], [attn_mask]) if cls == BIAS else None
    return cls, bias
