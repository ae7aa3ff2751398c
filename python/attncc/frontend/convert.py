"""Mapping an exported FX graph to an attn `Graph`.

The graph is interpreted node by node. Each node becomes one of:

* `Host`: it depends only on inputs and constants (not on a graph op); torch
  computes it (see host.py) if the graph needs it as an input;
* `Lazy`: a graph value plus elementwise ops not yet emitted (scales, casts,
  masks) and layout ops to apply to the kernel's output. Masks are kept
  pending until the scores are consumed (by the softmax) so that several
  masks combine into the one mask `attn.attention` takes, and so that a
  mask's structure (causal, sliding window) can be recognized first.

Operands of the matmuls come from the host side and are *lifted* into the
graph: casts that widen, scales, `repeat_interleave(n, dim=1)` /
`x[:, :, None].expand(...).reshape(...)` / `expand` of one KV head, and the
transpose of K become graph ops (`attn.cast`, `attn.scale`,
`attn.repeat_heads`, `transpose_rhs`), so attn-fuse sees the whole chain; what
is left (a layout change of an input, for example) is computed by torch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch
from torch import fx

from ..errors import CaptureError, GraphError
from ..graph import Graph, Value
from . import aten as A
from .host import HostEvaluator
from .masks import BIAS, MaskClass, MaskPart, bias_dtype, classify
from .trace import Traced, node_location


@dataclass(frozen=True)
class Host:
    node: fx.Node


@dataclass(frozen=True, eq=False)
class Lazy:
    base: Value
    node: fx.Node                      # the FX node this value stands for
    ops: tuple = ()                    # ("scale", f) | ("cast", dtype) | ("mask", MaskPart, fx.Node, fx.Node)
    post: tuple = ()                   # layout nodes to run on the kernel output

    def with_op(self, op: tuple, node: fx.Node) -> "Lazy":
        return Lazy(self.base, node, self.ops + (op,), self.post)


@dataclass(frozen=True)
class InputSpec:
    """Where a graph input comes from at call time: a user tensor ('arg'), a
    host node ('host'), a host node transposed ('host_mT'), or a mask slot's
    bias ('mask')."""

    name: str
    kind: str
    arg: Optional[int] = None
    node: Optional[fx.Node] = None
    slot: Optional[int] = None
    pad: int = 0                       # leading unit dims added (rank-2/3 operands -> rank 4)


@dataclass
class Slot:
    """The mask of one attention: its parts (combined at the first part), the
    host nodes giving each part's tensor, the scores' [L, S], whether it
    depends on the inputs (then it is classified at call time)."""

    parts: tuple[MaskPart, ...]
    nodes: tuple[fx.Node, ...]
    L: int
    S: int
    dynamic: bool
    where: Optional[fx.Node]
    bias_dtype: torch.dtype
    bias_shape: tuple[int, ...]


@dataclass
class Lowered:
    """A captured function as a graph for one classification of its masks."""

    graph: Graph
    inputs: list[InputSpec]
    post: list[fx.Node]                # layout ops on the kernel output, in order
    slots: list[Slot]
    classes: dict[int, MaskClass]
    out_shape: tuple[int, ...] = ()    # the attention result's shape in fn (before `post`)


def _graph_name(name: str) -> str:
    name = re.sub(r"\W", "_", name.split(".")[-1])
    return name if name and not name[0].isdigit() else f"fn_{name}"


class Converter:
    """Builds a `Graph` from `traced`; `classes` fixes the class of each
    input-dependent mask slot (default: bias)."""

    def __init__(self, traced: Traced, host: HostEvaluator, param_names: Sequence[str],
                 classes: Optional[dict[int, MaskClass]] = None,
                 plan: Optional[Sequence[tuple]] = None) -> None:
        self.t = traced
        self.host = host
        self.names = list(param_names)
        self.classes = dict(classes or {})
        self.g = Graph(_graph_name(traced.fn_name))
        self.env: dict[fx.Node, Any] = {}
        self.inputs: list[InputSpec] = []
        self._input_values: dict[tuple, Value] = {}
        self._lifted: dict[fx.Node, Value] = {}
        self._materialized: dict[int, Value] = {}
        self.slots: list[Slot] = []
        self.used_classes: dict[int, MaskClass] = {}
        # (key, spec, shape, dtype) of every graph input, in creation order.
        # Given a plan (from an earlier run), the inputs are created up front in
        # its order: user arguments first, in the function's order.
        self.plan: list[tuple] = []
        for key, spec, shape, dt in plan or ():
            self._new_input(key, spec, shape, dt, None)

    # -- errors -----------------------------------------------------------------
    def error(self, node: Optional[fx.Node], message: str) -> CaptureError:
        where = node_location(node)
        fn = f"{self.t.fn_name} ({self.t.fn_where})"
        if where:
            return CaptureError(f"{where}\n  {message}\n  (capturing {fn})")
        return CaptureError(f"{message} (capturing {fn})")

    def unsupported(self, node: fx.Node, why: str = "") -> CaptureError:
        msg = f"cannot map torch op '{A.op_name(node)}' to attn ops"
        return self.error(node, msg + (f": {why}" if why else ""))

    def emit(self, node: Optional[fx.Node], build: Callable[[], Value]) -> Value:
        try:
            return build()
        except GraphError as e:
            raise self.error(node, str(e)) from None

    # -- driver -----------------------------------------------------------------
    def run(self) -> Lowered:
        result = None
        for node in self.t.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = Host(node)
            elif node.op == "call_function":
                self.env[node] = self.visit(node)
            elif node.op == "output":
                result = node
            else:
                raise self.error(node, f"unsupported FX node kind '{node.op}'")
        outs = list(A.tensor_nodes(result.args))
        if len(outs) != 1:
            raise self.error(None, f"the function returns {len(outs)} tensors; attncc "
                                   "compiles functions that return one attention output")
        out = self.env[outs[0]]
        if not isinstance(out, Lazy):
            raise self.error(outs[0], "not an attention computation: the result does not "
                                      "depend on a matmul or softmax of the inputs")
        value = self.materialize(out, outs[0], allow_post=True)
        self.emit(outs[0], lambda: self.g.output(value))
        pre = out.post[0].args[0] if out.post else out.node   # the value before `post`
        return Lowered(self.g, self.inputs, list(out.post), self.slots, self.used_classes,
                       tuple(A.val(pre).shape))

    def visit(self, node: fx.Node) -> Any:
        t = node.target
        syms = [self.env[n] for n in node.all_input_nodes]
        if t in A.ASSERTS:
            return None
        if t not in A.ANCHORS and all(isinstance(s, Host) for s in syms):
            return Host(node)
        if t in A.LIKE and node.args and isinstance(self.env.get(node.args[0]), Lazy) and \
                all(isinstance(self.env[n], Host) for n in node.all_input_nodes
                    if n is not node.args[0]):
            self.host.constant_like(node)       # e.g. torch.full_like(scores, -inf)
            return Host(node)
        if t in A.MATMUL:
            return self.matmul(node, self.env[node.args[0]], self.env[node.args[1]], False)
        if t in A.EINSUM:
            return self.einsum(node)
        if t in A.SDPA:
            return self.sdpa(node)
        if t in A.SOFTMAX:
            return self.softmax(node)
        lazy = [s for s in syms if isinstance(s, Lazy)]
        if not lazy:
            raise self.unsupported(node)
        if t in A.CASTS:
            return self.cast(node)
        if t in A.MUL or t in A.DIV:
            return self.scale(node)
        if t in A.MASKED_FILL or t in A.WHERE:
            return self.fill_mask(node)
        if t in A.ADD:
            return self.add_mask(node)
        if t in A.DROPOUT:
            p, train = A.arg(node, 1, "p", 0.5), A.arg(node, 2, "train", True)
            if train and p != 0:
                raise self.unsupported(node, f"dropout with p={p} in training mode")
            return self.env[node.args[0]]
        if t in A.LAYOUT:
            return self.layout(node)
        raise self.unsupported(node)

    # -- graph inputs -----------------------------------------------------------
    def _check_dtype(self, node: fx.Node, what: str) -> str:
        v = A.val(node)
        if not isinstance(v, torch.Tensor):
            raise self.error(node, f"{what} is not a tensor")
        if v.dtype not in A.FLOAT_DTYPES:
            raise self.error(node, f"{what} has dtype {v.dtype}; attncc computes on "
                                   "torch.float32, torch.float16 and torch.bfloat16")
        return A.FLOAT_DTYPES[v.dtype]

    def input_for(self, node: fx.Node, transposed: bool = False) -> Value:
        key = ("mT" if transposed else "x", node)
        if key in self._input_values:
            return self._input_values[key]
        v = A.val(node)
        rank = v.dim() if isinstance(v, torch.Tensor) else 0
        pad = 4 - rank if rank in (2, 3) else 0   # [B*H, L, D] / [L, D] operands: rank 4 graph
        if node in self.t.user_inputs and not transposed:
            i = self.t.user_inputs[node]
            name = self.names[i] if i < len(self.names) else node.name
            spec = InputSpec(name, "arg", arg=i, pad=pad)
            what = f"input '{name}'"
        else:
            spec = InputSpec(node.name + ("_mT" if transposed else ""),
                             "host_mT" if transposed else "host", node=node, pad=pad)
            what = f"tensor '{node.name}'"
        dt = self._check_dtype(node, what)
        shape = tuple(v.shape)
        if transposed:
            shape = shape[:-2] + (shape[-1], shape[-2])
        shape = (1,) * pad + shape
        return self._new_input(key, spec, shape, dt, node)

    def _new_input(self, key: tuple, spec: InputSpec, shape: tuple, dt: str,
                   node: Optional[fx.Node]) -> Value:
        value = self.emit(node, lambda: self.g.input(spec.name, shape, dt))
        self.inputs.append(spec)
        self.plan.append((key, spec, shape, dt))
        self._input_values[key] = value
        return value

    def sorted_plan(self) -> list[tuple]:
        """The inputs of this run in the order a graph should take them: user
        tensors in argument order, then tensors torch computes, then masks."""
        order = {n: i for i, n in enumerate(self.t.graph.nodes)}

        def rank(item):
            spec = item[1]
            if spec.kind == "arg":
                return (0, spec.arg)
            if spec.kind == "mask":
                slot = self.slots[spec.slot]
                if len(slot.nodes) == 1 and slot.nodes[0] in self.t.user_inputs \
                        and slot.parts[0].mode == "add":   # a float mask argument, used as is
                    return (0, self.t.user_inputs[slot.nodes[0]])
                return (2, spec.slot)
            return (1, order.get(spec.node, 0), spec.kind)
        return sorted(self.plan, key=rank)

    def mask_input(self, slot_index: int) -> Value:
        key = ("mask", slot_index)
        if key in self._input_values:
            return self._input_values[key]
        slot = self.slots[slot_index]
        spec = InputSpec(f"mask{slot_index}" if slot_index else "mask", "mask", slot=slot_index)
        dt = A.FLOAT_DTYPES[slot.bias_dtype]
        return self._new_input(key, spec, slot.bias_shape, dt, slot.where)

    # -- constants ----------------------------------------------------------------
    def constant_scalar(self, x: Any, node: fx.Node) -> Optional[float]:
        """A Python number, or a host tensor with one element that depends on no
        input (e.g. `torch.tensor(d).sqrt()`), as a float; None otherwise."""
        s = A.scalar_of(x)
        if s is not None:
            return s
        if isinstance(x, fx.Node) and isinstance(self.env.get(x), Host):
            v = A.val(x)
            if isinstance(v, torch.Tensor) and v.numel() == 1 and not self.host.depends_on_inputs(x):
                (c,) = self.host.run([x], None, torch.device("cpu"))
                if c.dtype != torch.bool:
                    return float(c.reshape(()).item())
        return None

    # -- lifting host tensors into the graph -------------------------------------
    def _peel(self, node: fx.Node) -> Optional[tuple]:
        """How a host node can be expressed by a graph op on another host node:
        ('identity', src) | ('cast', src, dtype) | ('scale', src, f) |
        ('repeat', src, n); None when it cannot."""
        if node.op != "call_function":
            return None
        t, v = node.target, A.val(node)
        if not isinstance(v, torch.Tensor):
            return None
        src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        sv = A.val(src)
        if t in A.LAYOUT and src is not None and A.is_identity_layout(node):
            return ("identity", src)
        if t in A.DROPOUT and src is not None and (not A.arg(node, 2, "train", True)
                                                   or A.arg(node, 1, "p", 0.5) == 0):
            return ("identity", src)
        if t in A.CASTS and isinstance(sv, torch.Tensor) and tuple(sv.shape) == tuple(v.shape) \
                and sv.dtype in A.FLOAT_DTYPES and v.dtype in A.FLOAT_DTYPES \
                and A.widening(sv.dtype, v.dtype) and sv.device == v.device:
            return ("identity", src) if sv.dtype == v.dtype else ("cast", src, A.FLOAT_DTYPES[v.dtype])
        if (t in A.MUL or t in A.DIV) and v.dtype in A.FLOAT_DTYPES:
            x, y = node.args[0], node.args[1]
            for tensor, other in ((x, y), (y, x)) if t in A.MUL else ((x, y),):
                tv = A.val(tensor)
                if isinstance(tv, torch.Tensor) and tuple(tv.shape) == tuple(v.shape) \
                        and tv.dtype == v.dtype:
                    f = self.constant_scalar(other, node)
                    if f is not None and f != 0:
                        return ("scale", tensor, f if t in A.MUL else 1.0 / f)
            return None
        n = self._repeat(node)
        if n is not None:
            return ("repeat",) + n
        return None

    def _through_identity(self, node: Any) -> Any:
        while isinstance(node, fx.Node):
            p = self._peel(node)
            if p is None or p[0] != "identity":
                break
            node = p[1]
        return node

    def _repeat(self, node: fx.Node) -> Optional[tuple[fx.Node, int]]:
        """(src, n) when `node` repeats each head of a [B, H, S, D] tensor n times
        along dim 1 (what GQA/MQA do to K and V)."""
        t, v = node.target, A.val(node)
        if not isinstance(v, torch.Tensor) or v.dim() != 4:
            return None
        src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        sv = A.val(src)
        if not isinstance(sv, torch.Tensor):
            return None
        if t in A._ops("repeat_interleave.self_int"):
            reps, dim = A.arg(node, 1, "repeats"), A.arg(node, 2, "dim")
            if isinstance(reps, int) and dim is not None and int(dim) % 4 == 1:
                return src, reps
            return None
        if t in A._ops("expand") and sv.dim() == 4 and sv.shape[1] == 1 and \
                tuple(sv.shape[2:]) == tuple(v.shape[2:]) and sv.shape[0] == v.shape[0]:
            return src, int(v.shape[1])          # MQA: one KV head broadcast
        if t in A._ops("repeat") and sv.dim() == 4 and sv.shape[1] == 1 and \
                list(node.args[1]) == [1, int(v.shape[1]), 1, 1]:
            return src, int(v.shape[1])
        if t in A._ops("view", "reshape", "_unsafe_view", "flatten.using_ints"):
            e = self._through_identity(src)
            if not (isinstance(e, fx.Node) and e.target in A._ops("expand")):
                return None
            ev = A.val(e)
            u = self._through_identity(e.args[0])
            if not (isinstance(u, fx.Node) and u.target in A._ops("unsqueeze")
                    and int(u.args[1]) % 5 == 2):
                return None
            base = u.args[0]
            bv = A.val(base)
            if ev.dim() != 5 or bv.dim() != 4:
                return None
            b, h, n, s, d = ev.shape
            if tuple(bv.shape) == (b, h, s, d) and tuple(v.shape) == (b, h * n, s, d):
                return base, int(n)
        return None

    def lift(self, node: fx.Node) -> Value:
        """A graph value for host node `node`, peeling what the graph can express."""
        if node in self._lifted:
            return self._lifted[node]
        p = self._peel(node)
        if p is None:
            value = self.input_for(node)
        elif p[0] == "identity":
            value = self.lift(p[1])
        elif p[0] == "cast":
            src = self.lift(p[1])
            value = self.emit(node, lambda: self.g.cast(src, p[2]))
        elif p[0] == "scale":
            src = self.lift(p[1])
            value = self.emit(node, lambda: self.g.scale(src, p[2]))
        else:  # repeat
            src = self.lift(p[1])
            value = self.emit(node, lambda: self.g.repeat_heads(src, p[2]))
        self._lifted[node] = value
        return value

    def lift_transposed(self, node: fx.Node) -> Value:
        """A graph value X with `node == X^T` (last two dims): the operand of a
        `transpose_rhs` matmul. A host tensor not written as a transpose is
        transposed by torch."""
        n = self._through_identity(node)
        if A.last2_swap(n):
            return self.lift(n.args[0])
        return self.input_for(n, transposed=True)

    def value(self, sym: Any, node: fx.Node) -> Value:
        if isinstance(sym, Host):
            return self.lift(sym.node)
        if isinstance(sym, Lazy):
            return self.materialize(sym, node)
        raise self.unsupported(node, "operand is not a tensor")

    # -- materializing pending ops --------------------------------------------------
    def materialize(self, lz: Lazy, consumer: fx.Node, allow_post: bool = False) -> Value:
        if lz.post and not allow_post:
            raise self.error(lz.post[0], f"'{A.op_name(lz.post[0])}' changes the layout of a "
                                          "computed tensor; attncc supports layout changes of "
                                          "inputs and of the function's result only")
        key = id(lz)
        if key in self._materialized:
            return self._materialized[key]
        v = lz.base
        masks = [i for i, op in enumerate(lz.ops) if op[0] == "mask"]
        slot_index = self._slot(lz, masks) if masks else None
        for i, op in enumerate(lz.ops):
            if op[0] == "scale":
                f = op[1]
                v = self.emit(op[2] if len(op) > 2 else consumer, lambda: self.g.scale(v, f))
            elif op[0] == "cast":
                dt = op[1]
                v = self.emit(consumer, lambda: self.g.cast(v, dt))
            elif i == masks[0]:
                v = self._apply_mask(v, slot_index, op[3])
        self._materialized[key] = v
        return v

    def _slot(self, lz: Lazy, masks: list[int]) -> int:
        parts, nodes = [], []
        divisor = 1.0
        first = masks[0]
        for i in range(first, len(lz.ops)):
            op = lz.ops[i]
            if op[0] == "scale":
                if op[1] <= 0 and any(m > i for m in masks):
                    raise self.error(lz.ops[masks[-1]][3],
                                     "a non-positive scale between two masks is not supported")
                divisor *= op[1]
            elif op[0] == "mask":
                parts.append(replace(op[1], divisor=divisor))
                nodes.append(op[2])
        where = lz.ops[first][3]
        shape = tuple(A.val(where).shape)
        L, S = shape[-2], shape[-1]
        dyn = any(self.host.depends_on_inputs(n) for n in nodes)
        dtypes = [A.val(n).dtype for n in nodes]
        try:
            bshape = tuple(torch.broadcast_shapes(*(tuple(A.val(n).shape) for n in nodes)))
        except RuntimeError as e:
            raise self.error(where, f"mask shapes do not broadcast: {e}") from None
        slot = Slot(tuple(parts), tuple(nodes), L, S, dyn, where, bias_dtype(parts, dtypes), bshape)
        self.slots.append(slot)
        index = len(self.slots) - 1
        if dyn:
            cls = self.classes.get(index, BIAS)
        else:
            values = self.host.run(list(nodes), None, torch.device("cpu"))
            cls = classify(parts, values, L, S)
        self.used_classes[index] = cls
        return index

    def _apply_mask(self, v: Value, slot_index: int, where: fx.Node) -> Value:
        cls = self.used_classes[slot_index]
        if cls.kind == "none":
            return v
        if cls.kind == "bias":
            b = self.mask_input(slot_index)
            return self.emit(where, lambda: self.g.mask(v, "bias", bias=b))
        return self.emit(where, lambda: self.g.mask(v, cls.kind, window=cls.window))

    def slot_class_for_sdpa(self, mask_node: Optional[fx.Node], causal: bool,
                            node: fx.Node, L: int, S: int) -> tuple[str, Optional[int], Optional[Value]]:
        if mask_node is None:
            return ("causal" if causal else "none"), None, None
        mv = A.val(mask_node)
        if mv.dtype == torch.bool:
            part = MaskPart("fill", masked_if=False)
        elif mv.dtype in A.FLOAT_DTYPES:
            part = MaskPart("add")
        else:
            raise self.error(node, f"attn_mask has dtype {mv.dtype}; expected bool or float")
        dyn = self.host.depends_on_inputs(mask_node)
        slot = Slot((part,), (mask_node,), L, S, dyn, node,
                    bias_dtype([part], [mv.dtype]), tuple(mv.shape))
        self.slots.append(slot)
        index = len(self.slots) - 1
        if dyn:
            cls = self.classes.get(index, BIAS)
        else:
            cls = classify([part], self.host.run([mask_node], None, torch.device("cpu")), L, S)
        self.used_classes[index] = cls
        if causal and cls.kind != "none":
            raise self.error(node, "attn_mask together with is_causal=True is not supported")
        if cls.kind == "bias":
            return "bias", None, self.mask_input(index)
        if cls.kind == "none":
            return ("causal" if causal else "none"), None, None
        return cls.kind, cls.window, None

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

    def softmax(self, node: fx.Node) -> Lazy:
        x = self.env[node.args[0]]
        rank = A.val(node).dim()
        dim = int(node.args[1]) % rank - rank     # negative: graph values may have more dims
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

    def _mask_part(self, node: fx.Node, x: Lazy, part: MaskPart, value_node: fx.Node) -> Lazy:
        if x.post:
            raise self.error(node, "masking a tensor whose layout was changed is not supported")
        if not isinstance(self.env.get(value_node), Host):
            raise self.error(node, "the mask must be computed from inputs and constants, "
                                   "not from the scores")
        if tuple(A.val(node).shape) != tuple(A.val(x.node).shape):
            raise self.error(node, f"the mask {tuple(A.val(value_node).shape)} broadcasts the "
                                   f"scores {tuple(A.val(x.node).shape)} to a larger shape")
        return x.with_op(("mask", part, value_node, node), node)

    def fill_mask(self, node: fx.Node) -> Lazy:
        t = node.target
        if t in A.MASKED_FILL:
            x, cond, fill = node.args[0], node.args[1], node.args[2]
            masked_if = True
        elif t in A._ops("where.ScalarOther") or (
                t in A._ops("where.self") and isinstance(self.env.get(node.args[1]), Lazy)):
            cond, x, fill = node.args
            masked_if = False
        else:  # where.ScalarSelf, where.self with the scores second
            cond, fill, x = node.args
            masked_if = True
        xs = self.env.get(x) if isinstance(x, fx.Node) else None
        if not isinstance(xs, Lazy):
            raise self.unsupported(node, "the masked tensor must be the scores")
        if not isinstance(cond, fx.Node) or A.val(cond).dtype != torch.bool:
            raise self.unsupported(node, "the condition must be a bool tensor")
        f = self.constant_scalar(fill, node)
        if f is None and isinstance(fill, fx.Node) and isinstance(self.env.get(fill), Host) \
                and not self.host.depends_on_inputs(fill):
            (fv,) = self.host.run([fill], None, torch.device("cpu"))
            if fv.numel() > 0 and bool(torch.all(fv == fv.reshape(-1)[0])):
                f = float(fv.reshape(-1)[0])
        if f is None:
            raise self.unsupported(node, "the fill value must be a constant")
        if f >= 0 or math.isnan(f):
            raise self.unsupported(node, f"masking with fill value {f}; expected -inf or a "
                                         "large negative number")
        return self._mask_part(node, xs, MaskPart("fill", masked_if=masked_if, fill=f), cond)

    def add_mask(self, node: fx.Node) -> Lazy:
        a, b = node.args[0], node.args[1]
        alpha = A.arg(node, 2, "alpha", 1)
        sa = self.env.get(a) if isinstance(a, fx.Node) else None
        sb = self.env.get(b) if isinstance(b, fx.Node) else None
        if isinstance(sa, Lazy) and isinstance(sb, Host) and alpha == 1:
            x, bias = sa, b
        elif isinstance(sb, Lazy) and isinstance(sa, Host) and alpha == 1:
            x, bias = sb, a
        else:
            raise self.unsupported(node, "only adding a mask tensor (computed from inputs "
                                         "and constants) to the scores is supported")
        if A.val(bias).dtype not in A.FLOAT_DTYPES:
            raise self.unsupported(node, f"adding a {A.val(bias).dtype} tensor to the scores; "
                                         "an additive mask is a float tensor")
        return self._mask_part(node, x, MaskPart("add"), bias)

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
        kind, window, bias = self.slot_class_for_sdpa(mask, causal, node, L, S)
        out_dt = A.FLOAT_DTYPES.get(A.val(node).dtype)
        return self._lazy(node, self.emit(node, lambda: self.g.attention(
            qv, kv, vv, scale=s, mask=kind, window=window, bias=bias, dtype=out_dt)))

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
