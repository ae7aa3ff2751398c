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

This module holds the `Converter` core (the node-by-node driver, graph inputs,
constants, lifting host tensors, materializing pending ops); the handlers of
the attention ops are in convert_ops.py, masks in convert_masks.py, the
values and the result (`Lowered`) in lowered.py.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional, Sequence

import torch
from torch import fx

from ..errors import CaptureError, GraphError
from ..graph import Graph, Value
from . import aten as A
from .convert_masks import MaskHandlers
from .convert_ops import OpHandlers
from .convert_scores import ScoreHandlers
from .host import HostEvaluator
from .lowered import Host, InputSpec, Lazy, Lowered, Slot
from .masks import MaskClass
from .trace import Traced, node_location

__all__ = ["Converter", "Host", "InputSpec", "Lazy", "Lowered", "Slot"]


def _graph_name(name: str) -> str:
    name = re.sub(r"\W", "_", name.split(".")[-1])
    return name if name and not name[0].isdigit() else f"fn_{name}"


class Converter(OpHandlers, MaskHandlers, ScoreHandlers):
    """Builds a `Graph` from `traced`; `classes` fixes the class of each
    input-dependent mask slot (default: bias); `bottom_right`: whether constant
    masks may be recognised as bottom-right aligned (the target has it)."""

    def __init__(self, traced: Traced, host: HostEvaluator, param_names: Sequence[str],
                 classes: Optional[dict[int, MaskClass]] = None,
                 plan: Optional[Sequence[tuple]] = None, bottom_right: bool = True) -> None:
        self.t = traced
        self.bottom_right = bottom_right
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
        sym = self.score_op(node)          # tanh, the sink column (convert_scores.py)
        if sym is not None:
            return sym
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
            elif op[0] == "tanh":
                v = self.emit(op[1], lambda: self.g.tanh(v))
            elif i == masks[0]:
                v = self._apply_mask(v, slot_index, op[3])
        self._materialized[key] = v
        return v
