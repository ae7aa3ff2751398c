"""Score modifiers of the FX-to-graph conversion (mixin of convert.Converter)
in the plain-PyTorch forms model code writes them:

* the tanh soft-cap, `torch.tanh(s / c) * c` (Gemma 2's eager attention):
  `attn.tanh` between two `attn.scale`s, which attn-fuse folds into
  `softcap c`;
* the sink column of gpt-oss's eager attention,

      sinks = module.sinks.reshape(1, -1, 1, 1).expand(B, -1, L, -1)
      c = torch.cat([s, sinks], dim=-1)
      c = c - c.max(dim=-1, keepdim=True).values
      p = F.softmax(c, dim=-1)[..., :-1]

  which is `attn.softmax ... sinks(%sinks)` on the scores, the sinks a graph
  input of f32 [H] (attn-fuse moves it to `attn.attention`'s `sinks`).

The intermediate values of the sink form are symbols of their own
(`SinkScores`, `RowMax`, `Shifted`, `SinkProbs`); only the next step of the
pattern accepts them, any other use is a CaptureError naming the op, so a
form that is not recognized never computes something else. Subtracting the
row max before a softmax over the same axis (with or without a sink) changes
nothing in exact arithmetic and is dropped: the softmax subtracts its own max.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import fx

from ..graph import Value
from . import aten as A
from .lowered import Host, InputSpec, Lazy


@dataclass(frozen=True, eq=False)
class SinkScores:
    """`cat([scores, sink column], -1)`: the scores and the host node holding
    the per-head sinks (shape [1, H, 1, 1] once padded to rank 4)."""

    scores: Lazy
    sinks: fx.Node
    node: fx.Node


@dataclass(frozen=True, eq=False)
class RowMax:
    """`x.max(dim, keepdim=True)` (`pair`: the (values, indices) of max.dim)
    or `x.amax(dim, keepdim=True)`."""

    src: Any
    node: fx.Node
    pair: bool = False


@dataclass(frozen=True, eq=False)
class Shifted:
    """`x - x.max(-1, keepdim=True)`: only a softmax over the last axis may use it."""

    src: Any
    node: fx.Node


@dataclass(frozen=True, eq=False)
class SinkProbs:
    """The softmax of `SinkScores` with the sink column not yet dropped (the
    graph value already excludes it)."""

    value: Value
    node: fx.Node


SYMBOLS = (SinkScores, RowMax, Shifted, SinkProbs)


class ScoreHandlers:
    """tanh and the sink pattern for `Converter` (uses its env, graph, inputs)."""

    def score_op(self, node: fx.Node) -> Optional[Any]:
        """The symbol for `node` when it is a step of these patterns; None when
        the node is none of them (the caller goes on)."""
        t = node.target
        syms = [self.env.get(n) for n in node.all_input_nodes]
        if t in A.TANH:
            x = self.env.get(node.args[0])
            if not isinstance(x, Lazy):
                raise self.unsupported(node, "tanh of something other than the scores")
            if x.post:
                raise self.error(node, "tanh of a tensor whose layout was changed")
            return x.with_op(("tanh", node), node)
        if t in A.CAT:
            return self._sink_cat(node)
        if t in A.ROW_MAX and isinstance(self.env.get(node.args[0]), (Lazy, SinkScores)):
            return self._row_max(node)
        if t is operator.getitem and isinstance(self.env.get(node.args[0]), RowMax):
            rm = self.env[node.args[0]]
            if rm.pair and node.args[1] == 0:
                return RowMax(rm.src, node)
            return _Indices(node)     # unused max indices; any use is an error below
        if t in A.SUB and any(isinstance(s, RowMax) for s in syms):
            return self._shift(node)
        if t in A.SLICE and isinstance(self.env.get(node.args[0]), SinkProbs):
            return self._drop_sink(node)
        if any(isinstance(s, SYMBOLS + (_Indices,)) for s in syms):
            raise self.unsupported(node, "attncc recognizes a row max only as x - x.max(-1, "
                                         "keepdim=True).values right before a softmax, and a "
                                         "sink column only as softmax(cat([scores, sinks], "
                                         "-1))[..., :-1] followed by the matmul with V")
        return None

    def sink_softmax(self, node: fx.Node, x: SinkScores) -> SinkProbs:
        """Softmax (over the last axis) of the scores with the sink column."""
        v = self.value(x.scores, node)
        sinks = self._sinks_input(x.sinks, node)
        out_dt = A.val(node).dtype
        if out_dt not in A.FLOAT_DTYPES:
            raise self.unsupported(node, f"softmax producing {out_dt}")
        if v.dtype != A.FLOAT_DTYPES[out_dt]:
            v = self.emit(node, lambda: self.g.cast(v, A.FLOAT_DTYPES[out_dt]))
        return SinkProbs(self.emit(node, lambda: self.g.softmax(v, -1, sinks=sinks)), node)

    # -- the steps -----------------------------------------------------------------
    def _sink_cat(self, node: fx.Node) -> SinkScores:
        tensors = list(node.args[0])
        dim = A.arg(node, 1, "dim", 0)
        syms = [self.env.get(n) for n in tensors]
        rank = A.val(node).dim()
        if len(tensors) != 2 or rank != 4 or int(dim) % rank != rank - 1 \
                or not isinstance(syms[0], Lazy) or not isinstance(syms[1], Host):
            raise self.unsupported(node, "the only concatenation of scores attncc knows is "
                                         "gpt-oss's sink column, torch.cat([scores, sinks], "
                                         "dim=-1) on [B, H, L, S] scores")
        scores = syms[0]
        if scores.post:
            raise self.error(node, "concatenating scores whose layout was changed")
        sv, cv = A.val(tensors[1]), A.val(node)
        if sv.shape[-1] != 1:
            raise self.unsupported(node, f"the sink column has shape {tuple(sv.shape)}; "
                                         "expected [B, H, L, 1]")
        base = self._sink_base(tensors[1], int(cv.shape[1]))
        if base is None:
            raise self.unsupported(node, "the sink column must be one value per head broadcast "
                                         "over batch and queries, e.g. sinks.reshape(1, -1, 1, "
                                         "1).expand(B, -1, L, -1) of a [H] tensor")
        if cv.dtype not in A.FLOAT_DTYPES or not A.widening(A.val(base).dtype, cv.dtype):
            raise self.unsupported(node, f"the sinks ({A.val(base).dtype}) are concatenated "
                                         f"as {cv.dtype}")
        if cv.dtype != A.val(scores.node).dtype:       # cat promotes the scores
            if not A.widening(A.val(scores.node).dtype, cv.dtype):
                raise self.unsupported(node, "concatenation narrows the scores")
            scores = scores.with_op(("cast", A.FLOAT_DTYPES[cv.dtype]), scores.node)
        return SinkScores(scores, base, node)

    def _sink_base(self, node: fx.Node, heads: int) -> Optional[fx.Node]:
        """The host node whose values, flattened, are the per-head sinks: the
        column itself or what `expand` broadcasts, when it is [1, H, 1, 1]."""
        n = self._through_identity(node)
        if isinstance(n, fx.Node) and n.target in A._ops("expand", "expand_as"):
            n = n.args[0]
        v = A.val(n)
        if not isinstance(v, torch.Tensor) or v.dim() > 4:
            return None
        shape = (1,) * (4 - v.dim()) + tuple(v.shape)
        return n if shape == (1, heads, 1, 1) else None

    def _sinks_input(self, base: fx.Node, node: fx.Node) -> Value:
        key = ("sinks", base)
        if key in self._input_values:
            return self._input_values[key]
        heads = A.val(base).numel()
        spec = InputSpec(f"{base.name}_sinks", "host_sinks", node=base)
        return self._new_input(key, spec, (heads,), "f32", node)

    def _row_max(self, node: fx.Node) -> RowMax:
        x = self.env[node.args[0]]
        rank = A.val(node.args[0]).dim()
        pair = node.target in A._ops("max.dim")
        dim = A.arg(node, 1, "dim", None)
        keep = A.arg(node, 2, "keepdim", False)
        if isinstance(dim, (list, tuple)):
            dim = dim[0] if len(dim) == 1 else None
        if dim is None or int(dim) % rank != rank - 1 or not keep:
            raise self.unsupported(node, "a max of the scores is recognized only as "
                                         "x.max(dim=-1, keepdim=True) subtracted before the "
                                         "softmax")
        return RowMax(x, node, pair)

    def _shift(self, node: fx.Node) -> Shifted:
        a, b = node.args[0], node.args[1]
        rm = self.env.get(b) if isinstance(b, fx.Node) else None
        alpha = A.arg(node, 2, "alpha", 1)
        if not isinstance(rm, RowMax) or rm.pair or alpha != 1 or self.env.get(a) is not rm.src:
            raise self.unsupported(node, "only x - x.max(dim=-1, keepdim=True).values is "
                                         "recognized (then a softmax over the last axis)")
        return Shifted(rm.src, node)

    def _drop_sink(self, node: fx.Node) -> Lazy:
        probs: SinkProbs = self.env[node.args[0]]
        pv, v = A.val(node.args[0]), A.val(node)
        rank = pv.dim()
        dim = int(A.arg(node, 1, "dim", 0)) % rank
        start = A.arg(node, 2, "start", None)
        end = A.arg(node, 3, "end", None)
        step = A.arg(node, 4, "step", 1)
        S = pv.shape[-1] - 1
        if dim != rank - 1 or start not in (None, 0) or step != 1 or end not in (-1, S) \
                or tuple(v.shape) != tuple(pv.shape[:-1]) + (S,):
            raise self.unsupported(node, "after a softmax with the sink column, attncc expects "
                                         "the sink to be dropped with p[..., :-1]")
        return Lazy(probs.value, node)


@dataclass(frozen=True, eq=False)
class _Indices:
    node: fx.Node
