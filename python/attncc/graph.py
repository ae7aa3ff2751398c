"""A small builder of attn graphs: a `func.func` of attn ops, built op by op.

Every op is verified as soon as it is built, so a wrong shape, rank or dtype
raises `GraphError` carrying MLIR's diagnostic at the call that caused it.

    g = Graph("attention")
    q = g.input("q", (1, 8, 128, 64), "f16")
    k = g.input("k", (1, 8, 128, 64), "f16")
    v = g.input("v", (1, 8, 128, 64), "f16")
    s = g.matmul(q, k, transpose_rhs=True, dtype="f32")
    p = g.softmax(g.mask(g.scale(s, 0.125), "causal"))
    g.output(g.cast(g.matmul(p, g.cast(v, "f32")), "f16"))
    print(g)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from mlir import ir
from mlir.dialects import func

from . import context as _context
from .dialects import attn as attn_d
from .dtypes import dtype_name, mlir_type
from .errors import GraphError

Shape = tuple[Optional[int], ...]
MASK_KINDS = ("none", "causal", "sliding_window", "bias")


@dataclass(frozen=True)
class Value:
    """A tensor in a graph: its shape (None for dynamic) and dtype name."""

    graph: "Graph"
    value: ir.Value
    shape: Shape
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)


def _to_mlir_shape(shape: Shape) -> list[int]:
    return [ir.ShapedType.get_dynamic_size() if d is None else int(d) for d in shape]


class Graph:
    """An attention graph under construction; `str(graph)` prints its IR."""

    def __init__(self, name: str = "attention") -> None:
        self.name = name
        self.context = _context.graph_context()
        self._loc = ir.Location.unknown(self.context)
        with self.context, self._loc:
            self.module = ir.Module.create()
            with ir.InsertionPoint(self.module.body):
                self.func = func.FuncOp(name, ir.FunctionType.get([], []))
            self.block = self.func.add_entry_block()
        self._finished = False

    @classmethod
    def parse(cls, text: str, name: Optional[str] = None) -> "Graph":
        """A finished graph from IR text (one `func.func` returning its output),
        e.g. a captured graph at stage 'fused', to be retyped or compiled."""
        g = cls.__new__(cls)
        g.context = _context.graph_context()
        g._loc = ir.Location.unknown(g.context)
        try:
            g.module = ir.Module.parse(text, g.context)
        except ir.MLIRError as e:
            raise GraphError(f"cannot parse the graph: {e}") from None
        g.func = g.module.body.operations[0]
        g.name = name or ir.StringAttr(g.func.attributes["sym_name"]).value
        g.block = g.func.regions[0].blocks[0]
        g._finished = True
        return g

    # -- plumbing -----------------------------------------------------------
    def _enter(self):
        return _Scope(self)

    def _tensor_type(self, shape: Shape, dtype: str) -> ir.RankedTensorType:
        return ir.RankedTensorType.get(_to_mlir_shape(shape), mlir_type(dtype))

    def _check_value(self, v: Any, what: str) -> Value:
        if not isinstance(v, Value):
            raise GraphError(f"{what} must be a graph Value, got {type(v).__name__}")
        if v.graph is not self:
            raise GraphError(f"{what} belongs to another graph")
        return v

    def _emit(self, build, shape: Shape, dtype: str, what: str) -> Value:
        if self._finished:
            raise GraphError(f"graph '{self.name}' already has its outputs; cannot add {what}")
        with self._enter():
            result = build(self._tensor_type(shape, dtype))
            op = result.owner
            _verify(op, what)
        return Value(self, result, tuple(shape), dtype)

    # -- graph API ------------------------------------------------------------
    def input(self, name: str, shape: Sequence[Optional[int]], dtype: Any) -> Value:
        """Adds a function argument of the given shape and dtype."""
        dt = dtype_name(dtype)
        shape = tuple(shape)
        for d in shape:
            if d is not None and (not isinstance(d, int) or d < 0):
                raise GraphError(f"input '{name}': bad extent {d!r} in shape {shape}")
        with self._enter():
            arg = self.block.add_argument(self._tensor_type(shape, dt), self._loc)
        return Value(self, arg, shape, dt)

    def matmul(self, lhs: Value, rhs: Value, *, transpose_rhs: bool = False,
               dtype: Any = None) -> Value:
        """Batched `lhs @ rhs` (`lhs @ rhs^T` with transpose_rhs)."""
        lhs, rhs = self._check_value(lhs, "lhs"), self._check_value(rhs, "rhs")
        dt = dtype_name(dtype) if dtype is not None else lhs.dtype
        if lhs.rank >= 2 and rhs.rank == lhs.rank:
            n = rhs.shape[-2] if transpose_rhs else rhs.shape[-1]
            shape = lhs.shape[:-1] + (n,)
        else:
            shape = lhs.shape  # the verifier names the rank problem
        return self._emit(
            lambda t: attn_d.matmul(t, lhs.value, rhs.value,
                                    transpose_rhs=True if transpose_rhs else None),
            shape, dt, "attn.matmul")

    def scale(self, x: Value, factor: float) -> Value:
        x = self._check_value(x, "input")
        return self._emit(lambda t: attn_d.scale(x.value, float(factor)), x.shape, x.dtype,
                          "attn.scale")

    def mask(self, x: Value, kind: str, *, bias: Optional[Value] = None,
             window: Optional[int] = None, align: str = "top_left") -> Value:
        """Masks scores: kind 'causal', 'sliding_window' (with window) or 'bias';
        align 'top_left' or 'bottom_right' (row i taken as i + Lk - Lq)."""
        x = self._check_value(x, "scores")
        kind_enum = _mask_kind(kind)
        al = _mask_align(align)
        b = self._check_value(bias, "bias").value if bias is not None else None
        return self._emit(
            lambda t: attn_d.mask(x.value, kind_enum, bias=b, window=window, align=al),
            x.shape, x.dtype, "attn.mask")

    def tanh(self, x: Value) -> Value:
        """Elementwise tanh (soft-capping: `scale(tanh(scale(s, 1 / c)), c)`)."""
        x = self._check_value(x, "input")
        return self._emit(lambda t: attn_d.tanh(x.value), x.shape, x.dtype, "attn.tanh")

    def softmax(self, x: Value, axis: int = -1, *, sinks: Optional[Value] = None) -> Value:
        """Softmax along `axis`; with `sinks` (f32 [H] on [B, H, Lq, Lk] scores) one
        extra logit per head joins each row and its column is dropped."""
        x = self._check_value(x, "input")
        sk = self._check_value(sinks, "sinks").value if sinks is not None else None
        return self._emit(lambda t: attn_d.softmax(x.value, int(axis), sinks=sk), x.shape,
                          x.dtype, "attn.softmax")

    def cast(self, x: Value, dtype: Any) -> Value:
        x = self._check_value(x, "input")
        return self._emit(lambda t: attn_d.cast(t, x.value), x.shape, dtype_name(dtype),
                          "attn.cast")

    def repeat_heads(self, x: Value, repeats: int) -> Value:
        """`torch.repeat_interleave(x, repeats, dim=1)` on [B, H, S, D]."""
        x = self._check_value(x, "input")
        shape = x.shape
        if len(shape) == 4 and shape[1] is not None:
            shape = (shape[0], shape[1] * int(repeats), shape[2], shape[3])
        return self._emit(lambda t: attn_d.repeat_heads(t, x.value, int(repeats)),
                          shape, x.dtype, "attn.repeat_heads")

    def attention(self, q: Value, k: Value, v: Value, *, scale: Optional[float] = None,
                  mask: str = "none", window: Optional[int | tuple[int, int]] = None,
                  bias: Optional[Value] = None, dtype: Any = None,
                  causal_align: str = "top_left", softcap: Optional[float] = None,
                  alibi_slopes: Optional[Value] = None, sinks: Optional[Value] = None) -> Value:
        """The fused op directly. scale defaults to 1/sqrt(head_dim).

        window: an int W (mask 'sliding_window': keys i - W < j <= i) or
        flash-attn's window_size tuple (left, right), -1 = unbounded on that
        side (implies mask 'sliding_window'; with mask 'causal', right is
        capped at 0). causal_align: 'top_left' (torch's is_causal) or
        'bottom_right' (query i aligned with key i + Lk - Lq, KV-cache
        decoding). softcap: c > 0 for c * tanh(s / c) on the scaled scores.
        alibi_slopes, sinks: f32 graph Values of shape [Hq] (ALiBi slopes,
        flash-attn's -slope * |i + Lk - Lq - j|; per-head sink logits)."""
        q, k, v = (self._check_value(x, n) for x, n in ((q, "query"), (k, "key"), (v, "value")))
        if scale is None:
            d = q.shape[-1] if q.rank else None
            if d is None or d <= 0:
                raise GraphError("scale must be given when head_dim is dynamic or zero")
            scale = d ** -0.5
        kind = "bias" if bias is not None and mask == "none" else mask
        sides = None
        if isinstance(window, (tuple, list)):
            if len(window) != 2:
                raise GraphError(f"window must be an int or a (left, right) pair, got {window!r}")
            left, right = (int(x) for x in window)
            if kind == "causal":
                right = 0 if right < 0 else min(right, 0)
            elif kind not in ("none", "sliding_window"):
                raise GraphError(f"a (left, right) window needs mask 'sliding_window', "
                                 f"'causal' or 'none', got {mask!r}")
            kind, sides, window = "sliding_window", [left, right], None
        align = _mask_align(causal_align)
        kind_enum = _mask_kind(kind)
        group = 1
        if q.rank == 4 and k.rank == 4 and q.shape[1] and k.shape[1]:
            group = max(1, q.shape[1] // k.shape[1])
        shape = (q.shape[:3] + v.shape[3:]) if q.rank == 4 and v.rank == 4 else q.shape
        b = self._check_value(bias, "bias").value if bias is not None else None
        sl = self._check_value(alibi_slopes, "alibi_slopes").value \
            if alibi_slopes is not None else None
        sk = self._check_value(sinks, "sinks").value if sinks is not None else None
        cap = float(softcap) if softcap is not None else None
        return self._emit(
            lambda t: attn_d.attention(t, q.value, k.value, v.value, float(scale), kind_enum,
                                       bias=b, alibi_slopes=sl, sinks=sk, align=align,
                                       window=window, window_sides=sides, softcap=cap,
                                       kv_group=group),
            shape, dtype_name(dtype) if dtype is not None else q.dtype, "attn.attention")

    def ragged_attention(self, q: Value, k: Value, v: Value, work: Value, *,
                         block_table: Optional[Value] = None, scale: float,
                         window_sides: Optional[tuple[int, int]] = None,
                         softcap: Optional[float] = None, alibi_slopes: Optional[Value] = None,
                         sinks: Optional[Value] = None) -> Value:
        """`attn.ragged_attention` (ragged batches, paged caches): q [Bq, H, Lq, D],
        k/v [Bk, Hkv, Lk, D] or pages [N, Hkv, P, D] with `block_table`, and
        the i32 `work` table [blocks, 7]; the op's description in
        dialects/attn/AttnRaggedOps.td has the semantics (attncc.ragged builds it)."""
        vals = [self._check_value(x, n) for x, n in ((q, "query"), (k, "key"), (v, "value"),
                                                    (work, "work"))]
        q, k, v, work = vals
        opt = [self._check_value(x, n).value if x is not None else None
               for x, n in ((block_table, "block_table"), (alibi_slopes, "alibi_slopes"),
                            (sinks, "sinks"))]
        group = max(1, q.shape[1] // k.shape[1]) if q.shape[1] and k.shape[1] else 1
        shape = q.shape[:3] + v.shape[3:]
        sides = list(window_sides) if window_sides is not None else None
        return self._emit(
            lambda t: attn_d.ragged_attention(
                t, q.value, k.value, v.value, work.value, float(scale), block_table=opt[0],
                alibi_slopes=opt[1], sinks=opt[2], softcap=softcap, window_sides=sides,
                kv_group=group),
            shape, q.dtype, "attn.ragged_attention")

    def output(self, *values: Value) -> None:
        """Returns `values` from the function; the graph is complete."""
        vals = [self._check_value(v, "output") for v in values]
        if not vals:
            raise GraphError("a graph needs at least one output")
        with self._enter():
            func.ReturnOp([v.value for v in vals])
            args = [a.type for a in self.block.arguments]
            self.func.attributes["function_type"] = ir.TypeAttr.get(
                ir.FunctionType.get(args, [v.value.type for v in vals]))
            _verify(self.module.operation, "the graph")
        self._finished = True

    def __str__(self) -> str:
        return str(self.module)


class _Scope:
    """Enters the graph's context, location and insertion point (before the
    terminator once there is one)."""

    def __init__(self, g: Graph) -> None:
        self.g = g

    def __enter__(self):
        self._cms = [self.g.context, self.g._loc, ir.InsertionPoint(self.g.block)]
        for cm in self._cms:
            cm.__enter__()
        return self

    def __exit__(self, *exc):
        for cm in reversed(self._cms):
            cm.__exit__(*exc)
        return False


def _mask_kind(kind: Any) -> "attn_d.MaskKind":
    name = str(kind)
    if name not in MASK_KINDS:
        raise GraphError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
    return attn_d.MaskKind[name]


def _mask_align(align: Any) -> Optional["attn_d.MaskAlign"]:
    """The MaskAlign attribute (None for the default, top_left)."""
    if align not in ("top_left", "bottom_right"):
        raise GraphError(f"causal_align must be 'top_left' or 'bottom_right', got {align!r}")
    return attn_d.MaskAlign[align] if align != "top_left" else None


def _verify(op: ir.Operation | ir.OpView, what: str) -> None:
    """Raises GraphError with MLIR's diagnostics when `op` fails to verify."""
    try:
        op.verify()
    except ir.MLIRError as e:
        msgs = "; ".join(str(d.message) for d in e.error_diagnostics) or str(e)
        raise GraphError(f"invalid {what}: {msgs}") from None
