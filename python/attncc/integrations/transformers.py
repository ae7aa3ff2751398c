"""attncc as a transformers attention implementation.

    import attncc.integrations.transformers as attncc_hf
    attncc_hf.register()            # once per process, before loading models
    model = AutoModelForCausalLM.from_pretrained(..., attn_implementation="attncc")
    # or model.set_attn_implementation("attncc")

Registration is explicit, not a side effect of `import attncc`: importing
transformers takes seconds, and adding a name to another library's global
registry should be something a program asks for.

Two functions are registered under the name:

* the mask function (`AttentionMaskInterface`) is called once per forward
  and per mask type (full / sliding layers). Instead of a dense
  [B, 1, L, S] mask it returns an `AttnccMask`: the structure (no mask,
  causal with its alignment, sliding window) plus the key padding of the
  batch. transformers' own causal and sliding-window mask functions are
  recognised as such (checked on the window's edges); any other mask
  function is evaluated on the index grid and classified. Masks that are
  neither (packed sequences, block-wise overlays) become a dense bool mask.
* the attention function (`AttentionInterface`) turns that into
  `torch.ops.attncc.attention` arguments: `causal` top-left (prefill) or
  bottom-right (chunked prefill with a cache), no mask (decode), a
  `window=(W - 1, 0)` for transformers' `sliding_window=W` (which keeps keys
  `j > i - W`), softcap, and gpt-oss's sinks (`s_aux`). With padding the
  structure and the padding become one bool mask, which attncc classifies.

Continuous batching (`generate_batch`): `enable_continuous_batching(model)`
selects `CB_NAME`, whose function runs each ragged step with
`attncc.varlen_attention` (see docs/integrations.md).

What attncc lacks raises `InputError` naming it: attention weights
(`output_attentions=True`), attention dropout in training, `head_mask`,
`position_bias`, masks that are not tensors (flex's `BlockMask`), and,
through `attncc.attention`, gradients.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import InputError
from .op import attention_call

NAME = "attncc"
# transformers' continuous batching admits "sdpa", "paged|eager" and names that
# contain "flash" (the implementations taking ragged batches); see
# enable_continuous_batching.
CB_NAME = "attncc_flash"


def _transformers():
    try:
        import transformers
        from transformers import AttentionInterface
        from transformers.masking_utils import (AttentionMaskInterface,  # noqa: F401
                                                causal_mask_function, prepare_padding_mask,
                                                sdpa_mask)
        # output_attentions=True is refused by looking at what transformers collects
        from transformers.utils.output_capturing import _active_collector  # noqa: F401
    except ImportError as e:  # transformers missing, or not the 5.x interfaces used here
        raise ImportError("attncc's transformers integration needs transformers 5 "
                          "(AttentionInterface, AttentionMaskInterface, masking_utils, "
                          "output capturing; tested with 5.19 and 5.24): "
                          "pip install 'attncc[transformers]'") from e
    return transformers, AttentionInterface, AttentionMaskInterface


def register(name: str = NAME) -> str:
    """Makes `attn_implementation=name` ("attncc") available to transformers
    models in this process, and `CB_NAME` ("attncc_flash") for continuous
    batching (`enable_continuous_batching`); returns the name. Idempotent."""
    _, attention_interface, mask_interface = _transformers()
    attention_interface.register(name, attncc_attention)
    mask_interface.register(name, attncc_mask)
    attention_interface.register(CB_NAME, attncc_cb_attention)
    mask_interface.register(CB_NAME, attncc_mask)
    return name


# -- the mask function ---------------------------------------------------------------------------

@dataclass(eq=False)
class AttnccMask:
    """A layer type's mask for one forward, as structure.

    Query row `i` (0..L-1) may see key `j` (0..S-1) when `j <= i + delta`
    (causal) and, for a window `W`, `j > i + delta - W`; `structure` is
    "none", "causal", "sliding" or "dense" (then `dense` is the [B, 1, L, S]
    bool mask, True = attend, padding included). `padding` is the [B, S]
    keep-mask of the keys, or None when no key is padding."""

    # transformers asks a prepared mask for `ndim` (4 = prepared, use as is):
    # generate() makes the masks of static caches before the forward.
    ndim = 4

    q_length: int
    kv_length: int
    structure: str
    delta: int = 0
    window: Optional[int] = None
    padding: Optional[torch.Tensor] = None
    dense: Optional[torch.Tensor] = None

    def contiguous(self) -> "AttnccMask":
        """transformers 5.16-5.19 call `.contiguous()` on prepared static-cache masks."""
        return self


def _band(r0: int, r1: int, S: int, delta: int, window: Optional[int],
          device: Any) -> torch.Tensor:
    """Rows [r0, r1) of the [L, S] keep-mask of a causal (window None) or
    sliding-window structure: query row i keeps keys i + delta - window < j <= i + delta."""
    i = torch.arange(r0, r1, device=device)[:, None] + delta
    cols = torch.arange(S, device=device)
    keep = cols <= i
    if window is not None:
        keep &= cols > i - window
    return keep


def _keep(L: int, S: int, delta: int, window: Optional[int], device: Any) -> torch.Tensor:
    return _band(0, L, S, delta, window, device)


def _simplify(structure: str, L: int, S: int, delta: int,
              window: Optional[int]) -> tuple[str, Optional[int]]:
    """Drops what masks nothing: a window wider than every row's reach, a
    causal bound past the last key (decode)."""
    if structure == "sliding" and L - 1 + delta < window:
        structure, window = "causal", None
    if structure == "causal" and delta >= S - 1:
        structure = "none"
    return structure, window


_BAND_ROWS = 256     # rows of the expected band built at a time (2 MiB of bool at S = 8k)


def _is_band(rows: torch.Tensor, delta: int, window: Optional[int]) -> bool:
    """Whether the [L, S] bool `rows` is exactly _keep(L, S, delta, window),
    compared a block of rows at a time: no [L, S] temporaries (at L = S = 8k
    the whole-mask comparison allocated and filled several 64 MiB tensors),
    and a mismatch stops at the first block that has one."""
    L, S = rows.shape
    for r0 in range(0, L, _BAND_ROWS):
        r1 = min(L, r0 + _BAND_ROWS)
        if not torch.equal(rows[r0:r1], _band(r0, r1, S, delta, window, rows.device)):
            return False
    return True


def _structure(pattern: torch.Tensor, L: int, S: int, delta: int,
               local_size: Optional[int]) -> tuple[str, Optional[int]]:
    """Recognizes an evaluated [B, 1, L, S] mask pattern (no padding)."""
    if bool(pattern.all()):
        return "none", None
    first = pattern[0, 0]
    if pattern.shape[0] > 1 and not bool((pattern == first).all()):
        return "dense", None
    # The window first where there is one: its rows below the window match the
    # causal band too, so that test would run far before failing. (A causal
    # pattern matches the window only where the window reaches past every
    # row's keys, which _simplify then calls causal.)
    for window in ((local_size, None) if local_size is not None else (None,)):
        if _is_band(first, delta, window):
            return ("causal", None) if window is None else ("sliding", window)
    return "dense", None


def _closure(fn: Any) -> dict[str, Any]:
    """A function's closure variables by name ({} for none)."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
    if code is None:
        return {}
    try:
        return {n: c.cell_contents for n, c in zip(code.co_freevars, cells)}
    except ValueError:      # an empty cell
        return {}


# (make, overlay code, causal function, window) -> whether sliding_window_causal_mask_function's
# parts keep exactly the keys q - W < kv <= q on the window's edges. The check
# evaluates the function on ~36 index pairs (~60 us); a decode step calls the
# mask function once per forward, so the verdict is kept for the parts' code
# and window (the same code with the same window computes the same mask).
_WINDOW_CHECKED: dict = {}


def _sliding_window_of(mask_function: Any) -> Optional[int]:
    """W when `mask_function` is transformers' sliding_window_causal_mask_function(W)
    (keys kv_idx with q_idx - W < kv_idx <= q_idx), else None. Recognised by its
    parts (and_masks of sliding_window_overlay(W) and causal_mask_function), then
    checked on the edges of the window at a few rows (once per window and code),
    so that a transformers whose functions mean something else falls back to
    evaluating the mask. Why: the evaluation of a [1, 1, L, S] mask and its
    comparison with the expected pattern took ~0.5 s per forward at L = S = 8192
    (Zen 4), a third of a sliding-window model's 8k generate()."""
    from transformers import masking_utils as mu
    make = getattr(mu, "sliding_window_causal_mask_function", None)
    if make is None:
        return None
    ref = _reference_parts(make)
    if ref is None or getattr(mask_function, "__code__", None) is not ref[0]:
        return None
    parts = _closure(mask_function).get("mask_functions")
    if (not isinstance(parts, tuple) or len(parts) != 2
            or parts[1] is not mu.causal_mask_function
            or getattr(parts[0], "__code__", None) is not ref[1]):
        return None
    window = _closure(parts[0]).get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        return None
    key = (make, ref[1], parts[1], window)
    if key not in _WINDOW_CHECKED:
        _WINDOW_CHECKED[key] = _keeps_window(mask_function, window)
    return window if _WINDOW_CHECKED[key] else None


_REFERENCE_PARTS: dict = {}


def _reference_parts(make: Any) -> Optional[tuple[Any, Any]]:
    """(code of the function `make` returns, code of its overlay part), or None
    when it is not built from two parts."""
    if make not in _REFERENCE_PARTS:
        reference = make(2)
        parts = _closure(reference).get("mask_functions")
        ok = isinstance(parts, tuple) and len(parts) == 2 and hasattr(parts[0], "__code__")
        _REFERENCE_PARTS[make] = (reference.__code__, parts[0].__code__) if ok else None
    return _REFERENCE_PARTS[make]


def _keeps_window(mask_function: Any, window: int) -> bool:
    """Whether `mask_function` keeps exactly q - window < kv <= q on the edges
    of the window at a few rows."""
    rows = torch.tensor([0, 1, window - 1, window, window + 1, 3 * window + 7])
    q = rows.repeat_interleave(6)
    kv = q + torch.tensor([-window - 1, -window, -window + 1, -1, 0, 1]).repeat(len(rows))
    zero = torch.zeros_like(q)
    got = mask_function(zero, zero, q, kv)
    return torch.equal(torch.as_tensor(got, dtype=torch.bool), (kv > q - window) & (kv <= q))


def attncc_mask(batch_size: int, q_length: int, kv_length: int, q_offset: Any = 0,
                kv_offset: int = 0, mask_function: Any = None,
                attention_mask: Optional[torch.Tensor] = None, local_size: Optional[int] = None,
                use_vmap: bool = False, device: Any = "cpu", **kwargs: Any) -> AttnccMask:
    """transformers' mask interface (the arguments of `sdpa_mask`)."""
    from transformers.masking_utils import (causal_mask_function, prepare_padding_mask,
                                            sdpa_mask)
    if isinstance(attention_mask, AttnccMask):   # made by generate() already
        return attention_mask
    if mask_function is None:
        mask_function = causal_mask_function
    q_offset, kv_offset = int(q_offset), int(kv_offset)  # static caches pass tensors
    delta = q_offset - kv_offset
    padding = prepare_padding_mask(attention_mask, kv_length, kv_offset)
    if padding is not None:
        padding = padding[:, kv_offset:kv_offset + kv_length].to(torch.bool)
        if bool(padding.all()):
            padding = None
    known_window = None if mask_function is causal_mask_function else \
        _sliding_window_of(mask_function)
    if mask_function is causal_mask_function:
        structure, window, pattern = "causal", None, None
    elif known_window is not None:
        structure, window, pattern = "sliding", known_window, None
    else:
        pattern = sdpa_mask(batch_size, q_length, kv_length, q_offset, kv_offset,
                            mask_function=mask_function, attention_mask=None,
                            allow_is_causal_skip=False, allow_is_bidirectional_skip=False,
                            use_vmap=use_vmap, device=device)
        structure, window = _structure(pattern, q_length, kv_length, delta, local_size)
    dense = None
    if structure == "dense":
        dense = pattern if padding is None else pattern & padding[:, None, None, :]
    else:
        structure, window = _simplify(structure, q_length, kv_length, delta, window)
    return AttnccMask(q_length, kv_length, structure, delta, window, padding, dense)


# -- the attention function ----------------------------------------------------------------------

def _check_supported(module: Any, dropout: float, kwargs: dict) -> None:
    if dropout:
        raise InputError(f"attncc has no attention dropout (dropout={dropout} in training "
                         "mode): call model.eval() or set the config's attention_dropout to 0")
    for name in ("head_mask", "position_bias"):
        if kwargs.get(name) is not None:
            raise InputError(f"attncc does not support {name}")
    if kwargs.get("output_attentions"):
        raise InputError("attncc computes no attention weights (output_attentions=True): "
                         "use attn_implementation='eager' to get them")
    from transformers.utils.output_capturing import _active_collector  # checked in register()
    collecting = _active_collector.get()
    if collecting is not None and "attentions" in collecting:
        raise InputError("attncc computes no attention weights (output_attentions=True): "
                         "use attn_implementation='eager' to get them")


def _args_of_mask(mask: AttnccMask, L: int, S: int,
                  device: torch.device) -> tuple[Optional[torch.Tensor], str, tuple[int, int]]:
    """(attn_mask, causal, window) for torch.ops.attncc.attention."""
    if (mask.q_length, mask.kv_length) != (L, S):
        raise InputError(f"the attncc mask was made for (L, S) = ({mask.q_length}, "
                         f"{mask.kv_length}) but the attention gets ({L}, {S})")
    if mask.structure == "dense":
        return mask.dense, "none", (-1, -1)
    if mask.padding is None:
        if mask.structure == "none":
            return None, "none", (-1, -1)
        if mask.structure == "causal" and mask.delta == 0:
            return None, "top_left", (-1, -1)
        if mask.structure == "causal" and mask.delta == S - L:
            return None, "bottom_right", (-1, -1)
        if mask.structure == "sliding" and mask.delta == S - L:
            return None, "none", (mask.window - 1, 0)
    keep = None
    if mask.structure != "none":
        keep = _keep(L, S, mask.delta, mask.window, device)[None, None]
    if mask.padding is not None:
        pad = mask.padding[:, None, None, :].to(device)
        keep = pad if keep is None else keep & pad
    return keep, "none", (-1, -1)


def attncc_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: Any, dropout: float = 0.0,
                     scaling: Optional[float] = None, sliding_window: Optional[int] = None,
                     softcap: Optional[float] = None, s_aux: Optional[torch.Tensor] = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: query [B, Hq, L, D], key/value
    [B, Hkv, S, D] (after the cache update); returns ([B, L, Hq, Dv], None)."""
    _check_supported(module, dropout, kwargs)
    L, S = query.shape[2], key.shape[2]
    if isinstance(attention_mask, AttnccMask):
        mask, causal, window = _args_of_mask(attention_mask, L, S, query.device)
    elif attention_mask is None:
        # No mask function ran (e.g. a model calling the layer directly): the
        # module says whether it is causal, as for sdpa; the cache's keys
        # come first, so causal is bottom-right aligned.
        mask, causal, window = None, "none", (-1, -1)
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        if is_causal and sliding_window is not None:
            window = (int(sliding_window) - 1, 0)
        elif is_causal and L > 1:
            causal = "top_left" if L == S else "bottom_right"
    elif isinstance(attention_mask, torch.Tensor):
        mask, causal, window = attention_mask, "none", (-1, -1)   # a user's 4D mask
    else:
        raise InputError(f"attncc takes attention masks made by its own mask function or "
                         f"tensors, got {type(attention_mask).__name__}")
    sinks = None
    if s_aux is not None:
        sinks = s_aux.to(torch.float32)
    out = attention_call(query, key, value, mask, causal, None if scaling is None else
                         float(scaling), window[0], window[1],
                         None if softcap is None else float(softcap), sinks)
    return out.transpose(1, 2).contiguous(), None


# -- continuous batching (generate_batch) ---------------------------------------------------------

_CB_CALLS = {"calls": 0, "plans": 0}
# The plans (attncc.plan_varlen) of the last step: the layers of a step that
# share a cache group (full attention, or one sliding window) get the same
# cumulative lengths, so a step checks and schedules each group's batch once,
# as vLLM's backend does with its metadata. A plan is reused while the
# lengths' contents are equal (compared, not trusted by identity or version
# counter: a plan is a pure function of them, and a tensor written in place
# through numpy does not bump its version), so a stale plan cannot be served.
_CB_PLAN: list = []         # (cu_q, cu_k, max_q, max_k, plan), newest first
_CB_PLANS_KEPT = 4          # cache groups of one step (full, sliding, ...)
_CB_LOCK = threading.Lock()


def _step_plan(cu_q: torch.Tensor, cu_k: torch.Tensor, max_q: int, max_k: int):
    from .. import ragged
    with _CB_LOCK:
        kept = list(_CB_PLAN)
    for hq, hk, mq, mk, plan in kept:
        if (mq, mk) == (max_q, max_k) and torch.equal(hq, cu_q) and torch.equal(hk, cu_k):
            return plan
    plan = ragged.plan_varlen(cu_q, cu_k, max_q, max_k)
    with _CB_LOCK:
        _CB_PLAN.insert(0, (cu_q.clone(), cu_k.clone(), max_q, max_k, plan))
        del _CB_PLAN[_CB_PLANS_KEPT:]
        _CB_CALLS["plans"] += 1
    return plan


def cb_calls() -> int:
    """Ragged batches run by attncc's continuous-batching function in this
    process (tests use it to prove attncc ran)."""
    return _CB_CALLS["calls"]


def cb_plans() -> int:
    """Plans (attncc.plan_varlen) made by the continuous-batching function in
    this process: one per step and cache group (the layers of a group share it)."""
    return _CB_CALLS["plans"]


def enable_continuous_batching(model: torch.nn.Module) -> str:
    """Points `model` (and its sub-models) at `CB_NAME`, the implementation
    transformers' continuous batching (`generate_batch`, `init_continuous_batching`)
    accepts, and returns it. Ragged steps run `attncc.varlen_attention`; calls
    without ragged arguments (`generate()`) run as under "attncc".

    The config field is set directly: transformers' `set_attn_implementation`
    and `from_pretrained` try to import any name containing "flash" as a
    flash-attn package or a hub kernel, while continuous batching admits only
    such names (besides sdpa and eager)."""
    register()
    model.config._attn_implementation = CB_NAME   # transformers sets sub-configs too
    return CB_NAME


def attncc_cb_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: Any, dropout: float = 0.0,
                        scaling: Optional[float] = None, sliding_window: Optional[int] = None,
                        softcap: Optional[float] = None, s_aux: Optional[torch.Tensor] = None,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The attention function under `CB_NAME`. A continuous-batching step packs
    its requests (prefill chunks and decode tokens) into one sequence: query
    [1, Hq, Tq, D], key/value [1, Hkv, Tk, D] read from the paged cache, with
    `cu_seq_lens_q/k` and `max_length_q/k`; each request is causal with its
    new tokens last (bottom-right), as flash-attn's varlen function."""
    cache = kwargs.get("cache")
    if cache is not None:
        # transformers <= 5.19 passes the paged cache to the attention function,
        # which writes the step's keys and reads the batch's (later versions do
        # it in the layer); like flash-attn's wrapper, update it here
        from transformers.generation.continuous_batching import PagedAttentionCache
        if isinstance(cache, PagedAttentionCache):
            key, value = cache.update(key_states=key, value_states=value,
                                      layer_idx=module.layer_idx, kwargs=kwargs)
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if kwargs.get("block_table") is not None:
        raise InputError("attncc does not take transformers' block-table decode path "
                         "(flash_attn_with_kvcache); it reads the batch's keys as a ragged batch")
    if cu_q is None or cu_k is None:
        return attncc_attention(module, query, key, value, attention_mask, dropout, scaling,
                                sliding_window, softcap, s_aux, **kwargs)
    _check_supported(module, dropout, kwargs)
    if query.shape[0] != 1 or key.shape[0] != 1:
        raise InputError(f"a ragged batch is packed into batch 1, got query "
                         f"{tuple(query.shape)} and key {tuple(key.shape)}")
    from ..ragged import varlen_attention
    cu_q, cu_k = cu_q.to(torch.int32), cu_k.to(torch.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])     # rows past these are padding
    q, k, v = (t[0, :, :n].transpose(0, 1) for t, n in ((query, tq), (key, tk), (value, tk)))
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    window = None
    if sliding_window is not None:     # keys j > i - W, as flash-attn's window_size
        w = int(sliding_window) - 1
        window = (w, 0 if is_causal else w)
    max_q, max_k = (kwargs.get(n) for n in ("max_length_q", "max_length_k"))
    if max_q is None:
        max_q = int((cu_q[1:] - cu_q[:-1]).max()) if cu_q.numel() > 1 else 0
    if max_k is None:
        max_k = int((cu_k[1:] - cu_k[:-1]).max()) if cu_k.numel() > 1 else 0
    plan = _step_plan(cu_q, cu_k, int(max_q), int(max_k))
    out = varlen_attention(q, k, v, plan=plan, causal=bool(is_causal),
                           scale=None if scaling is None else float(scaling), window=window,
                           softcap=None if softcap is None else float(softcap),
                           sinks=None if s_aux is None else s_aux.to(torch.float32))
    _CB_CALLS["calls"] += 1
    if tq == query.shape[2]:
        return out.unsqueeze(0), None
    full = out.new_zeros(1, query.shape[2], *out.shape[1:])
    full[0, :tq] = out
    return full, None
