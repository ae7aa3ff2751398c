"""Handlers of the attention ops of the FX-to-graph conversion (mixin of
convert.Converter): matmul / einsum, softmax, casts, scales, layout ops and
scaled_dot_product_attention."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from torch import fx

from ..graph import Value
from . import aten as A
from .convert_scores import Shifted, SinkScores
from .lowered import Host, Lazy


class OpHandlers:
    """Op handlers of `Converter` (uses its env, host, graph and lifting)."""

    # -- op handlers -----------------------------------------------------------------
    def _lazy(self, node: fx.Node, value: Value) -> Lazy:
        return Lazy(value, node)

    def matmul(self, node: fx.Node, lhs: Any, rhs: Any, rhs_transposed: bool) -> Lazy:
        qk_like = isinstance(lhs, Host)
        lv = self.value(lhs, node)
        if isinstance(rhs, Host):
            if rhs_transposed:
                rv, t = self.lift(rhs.node), True
            elif qk_like:
                rv, t = self.lift_transposed(rhs.node), True
            else:
                rv, t = self.lift(rhs.node), False
        elif isinstance(rhs, Lazy):
            t = rhs_transposed
            if not t and len(rhs.post) == 1 and A.last2_swap(rhs.post[0]):
                rhs, t = Lazy(rhs.base, rhs.node, rhs.ops, ()), True
            rv = self.materialize(rhs, node)
        else:
            raise self.unsupported(node, "operand is not a tensor")
        dt = A.val(node).dtype
        if dt not in A.FLOAT_DTYPES:
            raise self.unsupported(node, f"matmul producing {dt}")
        return self._lazy(node, self.emit(
            node, lambda: self.g.matmul(lv, rv, transpose_rhs=t, dtype=A.FLOAT_DTYPES[dt])))

    def einsum(self, node: fx.Node) -> Lazy:
        eq, operands = node.args[0], list(node.args[1])
        if len(operands) != 2:
            raise self.unsupported(node, f"einsum '{eq}' with {len(operands)} operands")
        ranks = [A.val(o).dim() for o in operands]
        t = _einsum_matmul(eq, ranks)
        if t is None:
            raise self.unsupported(
                node, f"einsum '{eq}' is not a batched matmul over the last dimension "
                      "(e.g. 'bhqd,bhkd->bhqk' or 'bhqk,bhkd->bhqd')")
        return self.matmul(node, self.env[operands[0]], self.env[operands[1]], t)

    def softmax(self, node: fx.Node) -> Any:
        x = self.env[node.args[0]]
        rank = A.val(node).dim()
        dim = int(node.args[1]) % rank - rank     # negative: graph values may have more dims
        if isinstance(x, (Shifted, SinkScores)):
            if dim != -1:
                raise self.unsupported(node, "a softmax after subtracting the row max or "
                                             "with the sink column must be over the last axis")
            if isinstance(x, Shifted):            # softmax(x - max(x)) == softmax(x)
                x = x.src
            if isinstance(x, SinkScores):
                return self.sink_softmax(node, x)
        v = self.value(x, node)
        out_dt = A.val(node).dtype
        if out_dt not in A.FLOAT_DTYPES:
            raise self.unsupported(node, f"softmax producing {out_dt}")
        if v.dtype != A.FLOAT_DTYPES[out_dt]:   # softmax(x, dtype=float32), _softmax(half_to_float)
            v = self.emit(node, lambda: self.g.cast(v, A.FLOAT_DTYPES[out_dt]))
        return self._lazy(node, self.emit(node, lambda: self.g.softmax(v, dim)))

    def cast(self, node: fx.Node) -> Lazy:
        x = self.env[node.args[0]]
        if not isinstance(x, Lazy):
            raise self.unsupported(node)
        sv, v = A.val(node.args[0]), A.val(node)
        if v.device != sv.device:
            raise self.unsupported(node, "moving a computed tensor to another device")
        if v.dtype == sv.dtype:
            return x
        if v.dtype not in A.FLOAT_DTYPES:
            raise self.unsupported(node, f"cast to {v.dtype}")
        return x.with_op(("cast", A.FLOAT_DTYPES[v.dtype]), node)

    def scale(self, node: fx.Node) -> Lazy:
        t = node.target
        a, b = node.args[0], node.args[1]
        sa = self.env.get(a) if isinstance(a, fx.Node) else None
        sb = self.env.get(b) if isinstance(b, fx.Node) else None
        if isinstance(sa, Lazy) and not isinstance(sb, Lazy):
            x, other = sa, b
        elif t in A.MUL and isinstance(sb, Lazy) and not isinstance(sa, Lazy):
            x, other = sb, a
        else:
            raise self.unsupported(node, "only scaling by a constant is supported")
        f = self.constant_scalar(other, node)
        if f is None:
            raise self.unsupported(node, "the scale must be a constant (a Python number or a "
                                         "one-element tensor built from constants)")
        if tuple(A.val(node).shape) != tuple(A.val(x.node).shape):
            raise self.unsupported(node, "the scale broadcasts the scores to a new shape")
        if t in A.DIV:
            if f == 0:
                raise self.unsupported(node, "division by zero")
            f = 1.0 / f
        out = x.with_op(("scale", f, node), node)
        if A.val(node).dtype != A.val(x.node).dtype:   # e.g. f16 scores * f32 0-dim tensor
            out = out.with_op(("cast", A.FLOAT_DTYPES[A.val(node).dtype]), node)
        return out

    def layout(self, node: fx.Node) -> Lazy:
        x = self.env[node.args[0]]
        if not isinstance(x, Lazy):
            raise self.unsupported(node)
        if not x.post and A.is_identity_layout(node):
            return Lazy(x.base, node, x.ops, x.post)
        return Lazy(x.base, node, x.ops, x.post + (node,))

    def sdpa(self, node: fx.Node) -> Lazy:
        q, k, v = node.args[0:3]
        mask = A.arg(node, 3, "attn_mask", None)
        dropout = A.arg(node, 4, "dropout_p", 0.0)
        causal = bool(A.arg(node, 5, "is_causal", False))
        scale = A.arg(node, 6, "scale", None)
        if dropout:
            raise self.unsupported(node, f"dropout_p={dropout}")
        for name, x in (("query", q), ("key", k), ("value", v), ("attn_mask", mask)):
            if x is not None and not isinstance(self.env.get(x), Host):
                raise self.error(node, f"scaled_dot_product_attention's {name} must be computed "
                                       "from inputs and constants, not by another attention op")
        qn, qs, _ = self._sdpa_operand(q, scale_ok=True, repeat_ok=False)
        kn, ks, kr = self._sdpa_operand(k, scale_ok=True, repeat_ok=True)
        vn, _, vr = self._sdpa_operand(v, scale_ok=False, repeat_ok=True)
        if kr != vr:  # repeat both or neither: let torch repeat the odd one
            kn, ks, _ = self._sdpa_operand(k, scale_ok=True, repeat_ok=False)
            vn, _, _ = self._sdpa_operand(v, scale_ok=False, repeat_ok=False)
        D = A.val(q).shape[-1]
        s = float(scale) if scale is not None else 1.0 / math.sqrt(D)
        s *= qs * ks
        qv, kv, vv = self.input_for(qn), self.input_for(kn), self.input_for(vn)
        L, S = A.val(q).shape[-2], A.val(k).shape[-2]
        cls, bias = self.slot_class_for_sdpa(mask, causal, node, L, S)
        out_dt = A.FLOAT_DTYPES.get(A.val(node).dtype)
        return self._lazy(node, self.emit(node, lambda: self.g.attention(
            qv, kv, vv, scale=s, mask=cls.kind, window=cls.window, bias=bias, dtype=out_dt,
            causal_align=cls.align)))

    def _sdpa_operand(self, node: fx.Node, scale_ok: bool, repeat_ok: bool):
        """The host node to pass to attn.attention, with the scales and head
        repeats peeled off it (those become its scale and kv_group)."""
        f, n = 1.0, 1
        while True:
            p = self._peel(node)
            if p is None:
                break
            if p[0] == "identity":
                node = p[1]
            elif p[0] == "scale" and scale_ok:
                f *= p[2]
                node = p[1]
            elif p[0] == "repeat" and repeat_ok:
                n *= p[2]
                node = p[1]
            else:
                break
        return node, f, n


def _einsum_matmul(eq: str, ranks: Sequence[int]) -> Optional[bool]:
    """For a two-operand einsum that is a batched matmul contracting the last
    dimension of the lhs: True when the rhs is given as [..., n, k] (`A @ B^T`),
    False when [..., k, n] (`A @ B`); None for anything else."""
    eq = eq.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "").replace("...", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        if "..." in lhs:
            out = "..." + out
    ops = lhs.split(",")
    if len(ops) != 2:
        return None
    filler = "0123456789"

    def expand(s: str, rank: int) -> Optional[str]:
        if "..." not in s:
            return s
        n = rank - (len(s) - 3)
        return s.replace("...", filler[:n]) if n >= 0 else None

    a, b = expand(ops[0], ranks[0]), expand(ops[1], ranks[1])
    if a is None or b is None:
        return None
    if "..." in out:
        out = out.replace("...", filler[:ranks[0] - (len(ops[0]) - 3)])
    r = len(out)
    if len(a) != r or len(b) != r or r < 2 or len(set(a)) != r or len(set(b)) != r:
        return None
    batch, i, j = out[:-2], out[-2], out[-1]
    if a[:-2] != batch or b[:-2] != batch or a[-2] != i:
        return None
    c = a[-1]
    if c in out:
        return None
    if b[-2:] == j + c:
        return True
    if b[-2:] == c + j:
        return False
    return None
