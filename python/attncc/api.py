"""The public API: compile a PyTorch attention function, or call attention directly.

    @attncc.compile                         # or attncc.compile(fn, block_m=32, ...)
    def attn(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        return torch.softmax(s, dim=-1) @ v

    out = attn(q, k, v)                     # captured + compiled for this signature, cached
    attn.lower(q_meta, k_meta, v_meta).ir("tiled")   # IR of any stage, no run needed

    out = attncc.attention(q, k, v, causal=True)      # like F.scaled_dot_product_attention

`attention` compiles per structure, never per batch size or sequence length:
dtype, heads, head dims, mask class, scale, bias broadcast pattern, options,
target, threads, and the bucket of the query length (the query block size,
CompileOptions.query_block); B, L and S are dynamic dims of the kernel, so a
generate loop compiles one kernel for its prefill and one for its decode
steps. `compile(fn)` compiles per input signature: shapes, dtypes and devices
of the tensors, and the values of non-tensor arguments; `compile(fn,
dynamic=True)` leaves batch and lengths to the call (one kernel per structure
and query-length bucket; the function is still traced per shape). Each
compiled function keeps its own cache; `attention` shares one process-wide
cache. Both are bounded LRU caches. `cache_info()` counts kernels compiled and
cache hits in this process.

Masks passed as inputs are values, so their structure is looked at on every
call: a bool mask (True = keep, as in torch) or a 0/-inf float mask that is
causal or a sliding window is compiled as `mask causal` / `sliding_window`
(the kernel then skips masked blocks), one that keeps everything as no mask,
anything else as an additive bias (bool masks become 0/-inf float32). The
check costs one pass over the mask per call; a mask that changes structure
between calls gets a kernel per structure. Meta tensors have no values: their
masks are compiled as biases.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch

from . import pipeline
from .compiler import CompiledAttention, compile_graph, compile_stats, output_spec
from .errors import CompileError, InputError, InputTypeError
from .frontend.capture import (Capture, bind, check_no_grad, check_tensors, signature_of,
                                target_device_type)
from .frontend.convert import Lowered
from .frontend.dynamic import bias_shape, dynamic_graph, qkv_shape
from .frontend.guards import guard_key
from .frontend.qkv_checks import check_qkv
from .frontend.masks import BIAS, CAUSAL, NONE, MaskClass, sdpa_mask_class
from .frontend import fast_path, kv_quant, split_kv
from .frontend.variants import (Variants, causal_bias_align, check_causal_bias,
                                variants_of)
from .graph import Graph
from .options import CompileOptions, OptionError
from .targets import TARGETS

_DTYPE_NAMES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
                torch.float8_e4m3fn: "f8E4M3FN", torch.float8_e5m2: "f8E5M2"}


class _LRU:
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any, count: bool = True) -> Any:
        with self._lock:
            got = self._d.get(key)
            if got is not None:
                self._d.move_to_end(key)
                self.hits += count
                return got
            self.misses += count
            return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)


_API_HITS = {"hits": 0}
_API_LOCK = threading.Lock()


def _api_hit() -> None:
    with _API_LOCK:
        _API_HITS["hits"] += 1


def _threads_key(target: str, opts: CompileOptions) -> Optional[int]:
    """CPU kernels left to torch's thread count are split for the count at
    compile time: a later torch.set_num_threads asks for another kernel."""
    if target == "cpu" and opts.num_threads is None:
        return torch.get_num_threads()
    return None


def _compile_options(target: str, options: dict[str, Any]) -> CompileOptions:
    if not isinstance(target, str) or target not in TARGETS:
        raise OptionError(f"unknown target {target!r}; expected one of {TARGETS}")
    return CompileOptions.from_kwargs(options)


def _stage_names(target: str) -> tuple[str, ...]:
    return pipeline.stage_names(target)


def _check_stage(stop_after: Optional[str], target: str) -> None:
    names = _stage_names(target)
    if stop_after is not None and stop_after not in names:
        raise OptionError(f"unknown stage {stop_after!r} for target {target!r}; expected one "
                          f"of {names}")


# -- attncc.compile -------------------------------------------------------------------------

class _Entry:
    """One input signature of a compiled function: its capture and a kernel
    per classification of its input masks."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.kernels: dict[tuple, tuple[Lowered, CompiledAttention]] = {}
        self.lock = threading.Lock()


class CompiledFunction:
    """`fn` compiled with attncc: call it like `fn` on torch tensors.

    `.lower(*example_inputs)` returns the `CompiledAttention` for those inputs
    (`.ir(stage)`, `.options`, `.stage_seconds`); the examples may be
    `device="meta"` tensors. `.capture(*example_inputs)` returns the capture
    (`.graph` is the graph-level IR before fusion)."""

    def __init__(self, fn: Callable, target: str, options: CompileOptions,
                 stop_after: Optional[str] = None, cache_size: int = 64,
                 dynamic: Optional[bool] = False) -> None:
        if not callable(fn):
            raise InputTypeError(f"attncc.compile takes a function, got {type(fn).__name__}")
        if isinstance(fn, CompiledFunction):
            fn = fn.fn  # compiling a compiled function again (other target/options)
        self.fn = fn
        self.target = target
        self.options = options
        self.stop_after = stop_after
        if dynamic not in (True, False, None):
            raise InputTypeError(f"dynamic must be True, False or None, got {dynamic!r}")
        self.dynamic = bool(dynamic)
        self._dynamic_kernels = _LRU(cache_size)   # (graph, bucket, threads) -> kernel
        self._cache = _LRU(cache_size)
        self._lock = threading.Lock()
        self._signature = signature_of(fn)
        functools.update_wrapper(self, fn, updated=())

    def __repr__(self) -> str:
        return f"<attncc.compile of {getattr(self.fn, '__qualname__', self.fn)!r} " \
               f"target={self.target!r} {self.options}>"

    def _entry(self, args, kwargs, allow_meta: bool):
        bound = bind(self.fn, args, kwargs, self._signature)
        check_tensors(bound, allow_meta=allow_meta, target=self.target)
        device = bound.tensors[0].device
        # Values fn reads from its globals and closure are baked into the
        # capture: they are guarded (frontend/guards.py).
        key = bound.key + (("guards", guard_key(self.fn)),)
        if isinstance(self.fn, torch.nn.Module):   # dropout etc. depend on the mode
            key = key + (("training", self.fn.training),)
        entry = self._cache.get(key)
        if entry is None:
            with self._lock:
                entry = self._cache.get(key, count=False)
                if entry is None:
                    entry = _Entry(Capture(self.fn, bound, device))
                    self._cache.put(key, entry)
        return bound, entry

    def _kernel(self, entry: _Entry, classes: dict[int, MaskClass]):
        key = (entry.capture._key(classes), _threads_key(self.target, self.options))
        got = entry.kernels.get(key)
        if got is not None:
            _api_hit()
        elif self.dynamic:
            with entry.lock:
                got = entry.kernels.get(key)
                if got is None:
                    got = entry.kernels[key] = self._dynamic_kernel(entry, classes)
        else:
            with entry.lock:
                got = entry.kernels.get(key)
                if got is None:
                    lowered = entry.capture.lowered(classes)
                    compiled = compile_graph(lowered.graph, self.options, self.target,
                                             stop_after=self.stop_after,
                                             fused=entry.capture.fused(classes))
                    got = (lowered, compiled)
                    entry.kernels[key] = got
        return got

    def _dynamic_kernel(self, entry: _Entry, classes: dict[int, MaskClass]):
        """dynamic=True: the capture's graph with batch and lengths dynamic
        (frontend/dynamic.py); signatures that differ only in those sizes
        share one kernel per query-length bucket."""
        lowered = entry.capture.lowered(classes)
        graph = dynamic_graph(entry.capture.fused(classes), lowered.graph.name)
        text = str(graph.module)
        out = output_spec(lowered.graph).shape
        query_len = out[2] if len(out) == 4 else None
        key = (text, self.options.query_block(self.target, query_len),
               _threads_key(self.target, self.options))
        compiled = self._dynamic_kernels.get(key)
        if compiled is None:
            compiled = compile_graph(graph, self.options, self.target,
                                     stop_after=self.stop_after, fused=text,
                                     query_len=query_len)
            self._dynamic_kernels.put(key, compiled)
        else:
            _api_hit()
        return lowered, compiled

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        bound, entry = self._entry(args, kwargs, allow_meta=False)
        env: dict = {}
        classes = entry.capture.classify(bound.tensors, env)
        lowered, compiled = self._kernel(entry, classes)
        if self.stop_after is not None and self.stop_after != _stage_names(self.target)[-1]:
            raise CompileError(f"compiled with stop_after={self.stop_after!r}: there is no "
                               "kernel to run; use .lower(...) to look at the IR")
        inputs = entry.capture.graph_inputs(lowered, bound.tensors, env)
        out = compiled(*inputs)
        return entry.capture.finish(lowered, out, bound.tensors, env)

    def lower(self, *args: Any, **kwargs: Any) -> CompiledAttention:
        """Captures and compiles for these example inputs (real or meta tensors)
        without running; returns the `CompiledAttention`."""
        bound, entry = self._entry(args, kwargs, allow_meta=True)
        classes = entry.capture.classify(bound.tensors, {})
        return self._kernel(entry, classes)[1]

    def capture(self, *args: Any, **kwargs: Any) -> Capture:
        return self._entry(args, kwargs, allow_meta=True)[1].capture

    def cache_info(self) -> dict[str, int]:
        return {"signatures": len(self._cache), "hits": self._cache.hits,
                "misses": self._cache.misses}

    def cache_clear(self) -> None:
        self._cache.clear()


def compile(fn: Optional[Callable] = None, target: str = "cpu", *,
            stop_after: Optional[str] = None, dynamic: Optional[bool] = False,
            **options: Any):
    """Compiles the attention computed by `fn` (plain PyTorch code) for `target`.

    Returns a callable with `fn`'s signature; it compiles once per input
    signature (shapes, dtypes, devices, non-tensor argument values) and caches
    the kernel. `options` are `CompileOptions` fields (block_m, block_n,
    num_stages, unroll, num_threads), validated here. `stop_after` (a stage
    name) stops the pipeline early: such a function can be lowered, not run.
    Usable as a decorator, with or without arguments.

    `dynamic` (as torch.compile's): True compiles a kernel per structure,
    not per shape: the batch size and the sequence lengths are dynamic dims
    of the kernel (a bias keeps its broadcast dims), so calls that differ only
    in them share a kernel, one per query-length bucket
    (CompileOptions.query_block). The function is still traced per input
    shape (tens of ms; its masks and host ops are shape-specific). False (the
    default) and None: a kernel per input signature."""
    opts = _compile_options(target, options)
    _check_stage(stop_after, target)
    if fn is None:
        return lambda f: CompiledFunction(f, target, opts, stop_after, dynamic=dynamic)
    return CompiledFunction(fn, target, opts, stop_after, dynamic=dynamic)


# -- attncc.attention ---------------------------------------------------------------------------

_ATTENTION_CACHE = _LRU(128)


def _cached_options(target: str, options: dict[str, Any]) -> CompileOptions:
    if not isinstance(target, str) or target not in TARGETS:
        raise OptionError(f"unknown target {target!r}; expected one of {TARGETS}")
    return CompileOptions.cached(options)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: Optional[float] = None, attn_mask: Optional[torch.Tensor] = None,
              window: Optional[tuple[int, int]] = None, softcap: Optional[float] = None,
              alibi_slopes: Optional[torch.Tensor] = None, sinks: Optional[torch.Tensor] = None,
              return_lse: bool = False, num_splits: Optional[int] = None,
              k_scale: Any = None, v_scale: Any = None,
              target: str = "cpu", **options: Any) -> Any:
    """`softmax(q @ k^T * scale + mask) @ v` on [batch, heads, seq, head_dim]
    tensors, like `torch.nn.functional.scaled_dot_product_attention`.

    k and v may have fewer heads than q (GQA/MQA: Hq a multiple of Hkv).
    `attn_mask` is a bool tensor (True = take part in attention) or a float
    tensor added to the scores, broadcastable to [B, Hq, L, S]; `causal` is
    top-left aligned like torch's `is_causal`. `scale` defaults to
    1/sqrt(head_dim). Rows whose scores are all masked give zeros. `options`
    are CompileOptions fields; kernels are cached per signature and options.

    Variants (in-kernel; attncc.frontend.variants has the exact semantics):
    torch's `causal_lower_right(L, S)` / `causal_upper_left(L, S)` as
    `attn_mask`; `window=(left, right)` (flash-attn's window_size,
    bottom-right aligned, -1 = unbounded; (-1, -1) is no window); `softcap=c` (c * tanh(s / c));
    `alibi_slopes` and `sinks`, [Hq] float tensors.

    `return_lse=True` returns `(out, lse)`, lse the [B, Hq, L] float32
    log-sum-exp of each row's scaled, masked scores (natural log, as
    flash-attn's; sinks included; -inf for rows no key reaches).
    `num_splits`: the KV range split across workers (flash decoding; CPU
    threads, GPU SMs):
    None chooses from the shapes and threads (frontend/split_kv.py), 1 never
    splits, P in [2, 256] forces P splits.

    Quantized KV (CPU): k and v may be torch.float8_e4m3fn or float8_e5m2
    with `k_scale` / `v_scale`: numbers, one-element tensors, [Hkv] or [B, Hkv]
    tensors (FlashAttention-3's descale); the values are k * k_scale and
    v * v_scale (frontend/kv_quant.py)."""
    sig = None
    if not options and attn_mask is None and alibi_slopes is None and sinks is None and \
            return_lse is False and num_splits is None and target == "cpu" and \
            kv_quant.fast(q, k_scale, v_scale):
        sig = kv_quant.fast_key(fast_path.key(q, k, v, causal, scale, window, softcap),
                                k_scale, v_scale)
        recipe = fast_path.lookup(sig)
        if recipe is not None:
            out = fast_path.run(recipe, q, k, v)
            if out is not None:
                _api_hit()
                return kv_quant.finish(out, out.dtype, v_scale)
    opts = _cached_options(target, options)
    split_kv.check_args(return_lse, num_splits)
    k_scale, v_scale = check_qkv(q, k, v, target, k_scale, v_scale)
    if kv_quant.widened(q, k_scale, v_scale):  # per-head scales, or v_scale on a 16-bit q
        q32, k_scale = kv_quant.widen_query(q, k_scale, q.shape[0])
        got = attention(q32, k, v, causal=causal, scale=scale, attn_mask=attn_mask,
                        window=window, softcap=softcap, alibi_slopes=alibi_slopes, sinks=sinks,
                        return_lse=return_lse, num_splits=num_splits, k_scale=k_scale,
                        target=target, **options)
        return kv_quant.finish(got, q.dtype, v_scale, q.shape[0])
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
                not math.isfinite(scale):
            raise InputError(f"scale must be a finite number, got {scale!r}")
        scale = float(scale)
    if k_scale != 1.0:     # every score times k_scale: one softmax scale (kv_quant.py)
        scale = (q.shape[3] ** -0.5 if scale is None else scale) * k_scale
    check_no_grad((("attn_mask", attn_mask),))
    align = causal_bias_align(attn_mask)
    if align is not None:          # torch's causal_lower_right / causal_upper_left
        if causal:
            raise InputError("give either attn_mask or causal=True, not both")
        check_causal_bias(attn_mask, q.shape[2], k.shape[2])
        cls, bias = CAUSAL, None
    else:
        cls, bias = sdpa_mask_class(attn_mask, causal, q, k)
        align = cls.align            # a bool/float mask recognized as bottom-right causal
    variants, slopes, sink = variants_of(q, causal=cls.kind == "causal", align=align,
                                         window=window,
                                         softcap=softcap, alibi_slopes=alibi_slopes,
                                         sinks=sinks)
    if variants.window is not None and cls.kind not in ("none", "causal"):
        raise InputError("window=(left, right) takes no attn_mask other than a causal one")
    if cls == CAUSAL and q.shape[2] == 1 and variants.align == "bottom_right" \
            and variants.position_free and k.shape[1] != q.shape[1]:
        # A GQA decode step: one query row aligned with the last key sees
        # every key, so no mask, and the heads of a KV head share a query block.
        cls, variants = NONE, dataclasses.replace(variants, align="top_left")
    B, Hq, L, D = q.shape
    Dv = v.shape[3]
    def no_lse():   # rows no key reaches: the sink's logit alone, else -inf
        if sink is not None:
            return sink.view(1, Hq, 1).expand(B, Hq, L).clone()
        return torch.full((B, Hq, L), float("-inf"), device=q.device)
    if B * Hq * L * Dv == 0:
        if return_lse and Dv == 0 and B * Hq * L:
            raise InputError("return_lse needs a value head_dim above 0")
        out = q.new_empty((B, Hq, L, Dv))
        return (out, no_lse()) if return_lse else out
    if D == 0:
        raise InputError("head_dim is 0")
    if k.shape[2] == 0:
        out = q.new_zeros((B, Hq, L, Dv))  # no keys: every score masked, rows of zeros
        return (out, no_lse()) if return_lse else out
    packed = _packed_gqa(q, k, cls, bias) if variants.position_free else None
    if packed is not None:
        # Query heads sharing a KV head become the rows of one query block:
        # each K/V byte is read once per KV head instead of once per query
        # head (decode is bound by those reads). The packed call is the
        # unpacked one's kernel part: its inputs are checked already.
        packed_variants, _, _ = variants_of(packed, causal=False, align=NONE.align, window=None,
                                            softcap=softcap, alibi_slopes=None, sinks=None)
        got = _run_kernel(packed, k, v, None, None, None, NONE, packed_variants,
                          D ** -0.5 if scale is None else scale, target, opts, return_lse,
                          num_splits, sig, (B, Hq, L, Dv))
        got = (got[0].reshape(B, Hq, L, Dv), got[1].reshape(B, Hq, L)) if return_lse else \
            got.reshape(B, Hq, L, Dv)
        return kv_quant.finish(got, q.dtype, v_scale)
    got = _run_kernel(q, k, v, bias, slopes, sink, cls, variants, scale, target, opts,
                      return_lse, num_splits, sig)
    return kv_quant.finish(got, q.dtype, v_scale)


# CompileOptions.resolved per (options, target, query block, torch threads):
# a decode loop resolves the same options every step.
_RESOLVED: dict = {}


def _resolved(opts: CompileOptions, target: str, L: int, elt: str, head_dim: int) -> CompileOptions:
    """`opts.resolved` for this call, cached. The dtype and head dim are part
    of it: the GPU's f32 head-dim-128 kernels take 32-key blocks, and the
    split plan must see the block size the kernel gets (compiler._query_facts
    passes the same facts when it compiles)."""
    key = (opts, target, opts.query_block(target, L), torch.get_num_threads(), elt, head_dim)
    got = _RESOLVED.get(key)
    if got is None:
        got = opts.resolved(target, L, elt, head_dim)
        if len(_RESOLVED) < 256:
            _RESOLVED[key] = got
    return got


def _run_kernel(q, k, v, bias, slopes, sink, cls: MaskClass, variants: Variants, scale,
                target: str, opts: CompileOptions, return_lse: bool, num_splits,
                sig: Optional[tuple] = None, unpacked: Optional[tuple] = None):
    """The kernel part of `attention` on checked inputs: the cached kernel for
    this configuration (compiled on a miss), its split plan and workspaces.
    `sig`: the fast path's key of a plain call, which gets this call's recipe
    (`unpacked`: the output's shape when q is GQA-packed)."""
    B, Hq, L, _ = q.shape
    Dv = v.shape[3]
    # The kernel depends on what changes its code, never on B, L or S:
    # those are dynamic dims (frontend/dynamic.py), the query block size is
    # chosen per bucket of L (CompileOptions.query_block).
    S = k.shape[2]
    bias_key = None if bias is None else (bias_shape(bias.shape, B, Hq, L, S), bias.dtype)
    resolved = _resolved(opts, target, L, _DTYPE_NAMES[q.dtype], q.shape[3])
    kind = target_device_type(target)
    workers = _sm_count(q.device) if kind == "cuda" else resolved.num_threads or 1
    plan = split_kv.plan(target, kind, workers, resolved.block_m, resolved.block_n, B, Hq, L, S,
                         q.shape[3], num_splits)
    # K/V views (MLA's V = K[..., :Dv], transposed projections, a slice of a
    # preallocated cache) get a kernel taking any row strides (strided-kv)
    # rather than a copy every call; decode kernels (kv-in-place) always do,
    # so a decode loop keeps one kernel whether its cache is a view or not
    # (measured the same speed, docs/mla.md). Dense K/V prefill keeps dense
    # arguments: its packing copies were 8-10% faster with constant strides.
    strided = kind == "cpu" and (bool(resolved.kv_in_place) or
                                 not (k.is_contiguous() and v.is_contiguous()))
    form = (plan.split_kernel, return_lse or plan.split_kernel, strided)
    key = (Hq, k.shape[1], q.shape[3], Dv, q.dtype, k.dtype, q.device.type, cls, bias_key, scale,
           variants, target, opts, _threads_key(target, opts), resolved.block_m, form)
    compiled = _ATTENTION_CACHE.get(key)
    if compiled is None:
        compiled = _build_attention(q, k, v, bias, cls, scale, target, opts, variants, form)
        _ATTENTION_CACHE.put(key, compiled)
    else:
        _api_hit()
    inputs = [q, k, v] + [t for t in (bias, slopes, sink) if t is not None]
    threads = (resolved.num_threads or 1) if target == "cpu" else 1
    out, extra = split_kv.launch(compiled, inputs, Dv, plan, form[1], threads,
                                 reuse=not return_lse)
    if sig is not None and target == "cpu":
        kernel = compiled if compiled._kernel is None else compiled._kernel
        fast_path.record(sig, fast_path.Recipe(
            kernel, None if unpacked is None else tuple(q.shape), unpacked, plan.split_kernel,
            form[1], resolved.num_threads or 1, resolved.block_m, resolved.block_n, strided))
    return (out, extra[0]) if return_lse else out


def _sm_count(device: torch.device) -> int:
    """The device's SM count (split-KV's workers on the GPU)."""
    return torch.cuda.get_device_properties(device).multi_processor_count


def _packed_gqa(q: torch.Tensor, k: torch.Tensor, cls: MaskClass,
                bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """q as [B, Hkv, group * L, D] when the `group` query heads of each KV head
    can share one query block: GQA/MQA without a mask or bias (rows are then
    independent of their position). The output comes back as
    [B, Hkv, group * L, Dv], i.e. [B, Hq, L, Dv] in memory."""
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    if Hkv == Hq or cls != NONE or bias is not None:
        return None
    return q.reshape(B, Hkv, (Hq // Hkv) * L, D)


def _build_attention(q, k, v, bias, cls: MaskClass, scale, target: str,
                     opts: CompileOptions, variants: Variants = Variants(),
                     form: tuple[bool, bool, bool] = (False, False, False)) -> CompiledAttention:
    g = Graph("attention")
    dt = _DTYPE_NAMES[q.dtype]
    B, Hq, L, _ = q.shape
    qv = g.input("q", qkv_shape(q.shape), dt)
    kv = g.input("k", qkv_shape(k.shape), _DTYPE_NAMES[k.dtype])
    vv = g.input("v", qkv_shape(v.shape), _DTYPE_NAMES[v.dtype])
    b = None
    if bias is not None:
        b = g.input("mask", bias_shape(bias.shape, B, Hq, L, k.shape[2]),
                    _DTYPE_NAMES[bias.dtype])
    Hq = q.shape[1]
    slopes = g.input("alibi_slopes", (Hq,), "f32") if variants.alibi else None
    sinks = g.input("sinks", (Hq,), "f32") if variants.sinks else None
    mask = cls.kind if cls.kind != "bias" else "none"
    window: Any = cls.window
    if variants.window is not None:
        mask, window = "sliding_window", variants.window
    o = g.attention(qv, kv, vv, scale=scale, mask=mask, window=window, bias=b,
                    causal_align=variants.align if mask != "none" else "top_left",
                    softcap=variants.softcap, alibi_slopes=slopes, sinks=sinks)
    g.output(o)
    return compile_graph(g, opts, target, query_len=L, split_kv=form[0], lse=form[1],
                         strided_kv=form[2])


def clear_caches() -> None:
    """Empties the process-wide `attention` cache (cache_info's counters go on)."""
    _ATTENTION_CACHE.clear()
    fast_path.clear()


def cache_info() -> dict[str, Any]:
    """Per-process counters (never reset): "compiled", kernels compiled (the
    pipeline run; "compiled_by_target" splits it); "hits", calls served by
    the API's in-memory caches (`attention`'s and the compiled functions');
    "memory_hits" and "disk_hits", kernels the compiler found in the kernel
    caches (CPU and GPU) instead of compiling; "attention_kernels", kernels
    `attention` holds now."""
    stats = compile_stats()
    with _API_LOCK:
        hits = _API_HITS["hits"]
    return {"compiled": sum(stats["compiled"].values()),
            "compiled_by_target": stats["compiled"], "hits": hits,
            "memory_hits": stats["memory_hits"], "disk_hits": stats["disk_hits"],
            "attention_kernels": len(_ATTENTION_CACHE)}
