"""The ATen ops the frontend knows, grouped by what they mean for attention,
and small helpers to read FX nodes (their example values, tensor arguments)."""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import fx

aten = torch.ops.aten


def _ops(*names: str) -> frozenset:
    """OpOverloads `aten.<name>.<overload>` that exist in this torch."""
    out = set()
    for name in names:
        packet, _, overload = name.partition(".")
        p = getattr(aten, packet, None)
        o = getattr(p, overload or "default", None) if p is not None else None
        if o is not None:
            out.add(o)
    return frozenset(out)


MATMUL = _ops("matmul", "bmm", "mm")
EINSUM = _ops("einsum")
SDPA = _ops("scaled_dot_product_attention")
SOFTMAX = _ops("softmax.int", "_softmax", "_safe_softmax")
# Ops that always become graph ops, even on inputs: they are the computation.
ANCHORS = MATMUL | EINSUM | SDPA | SOFTMAX

ASSERTS = _ops("_assert_tensor_metadata", "_assert_scalar", "_assert_async",
               "_assert_async.msg", "sym_constrain_range_for_size")

CASTS = _ops("to.dtype", "to.dtype_layout", "to.device", "_to_copy", "type_as",
             "_to_dtype")
MUL = _ops("mul.Tensor", "mul.Scalar", "mul_.Tensor", "mul_.Scalar")
DIV = _ops("div.Tensor", "div.Scalar", "div_.Tensor", "div_.Scalar", "true_divide.Tensor",
           "true_divide.Scalar")
ADD = _ops("add.Tensor", "add_.Tensor")
MASKED_FILL = _ops("masked_fill.Scalar", "masked_fill.Tensor", "masked_fill_.Scalar",
                   "masked_fill_.Tensor")
WHERE = _ops("where.self", "where.ScalarOther", "where.ScalarSelf")
# Creation ops that read only the shape, dtype and device of their first argument.
LIKE = _ops("zeros_like", "ones_like", "full_like", "empty_like", "new_full", "new_zeros",
            "new_ones", "new_empty")
DROPOUT = _ops("dropout", "dropout_", "feature_dropout", "alpha_dropout")
TANH = _ops("tanh", "tanh_")
# gpt-oss's sink column: softmax(cat([s, sinks]) - max) [..., :-1]
CAT = _ops("cat", "concat", "concatenate")
ROW_MAX = _ops("max.dim", "amax")
SUB = _ops("sub.Tensor", "sub_.Tensor")
SLICE = _ops("slice.Tensor")

# Views and copies that change nothing when the shape stays the same.
RESHAPES = _ops("view", "reshape", "_unsafe_view", "expand", "flatten.using_ints",
                "unflatten.int", "squeeze.dim", "squeeze.dims", "squeeze", "unsqueeze",
                "contiguous", "clone", "alias", "detach", "detach_", "lift_fresh_copy",
                "view_as", "reshape_as", "expand_as", "slice.Tensor")
PERMUTES = _ops("transpose.int", "permute", "mT", "t", "movedim.int", "swapaxes",
                "swapdims", "numpy_T", "adjoint")
LAYOUT = RESHAPES | PERMUTES

FLOAT_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def val(node: Any) -> Any:
    """The example value export recorded for a node (a FakeTensor, a number...)."""
    if isinstance(node, fx.Node):
        return node.meta.get("val")
    return node


def tensor_nodes(args: Any) -> Iterator[fx.Node]:
    """Nodes among (nested) FX arguments."""
    if isinstance(args, fx.Node):
        yield args
    elif isinstance(args, (list, tuple)):
        for a in args:
            yield from tensor_nodes(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from tensor_nodes(a)


def arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument `index` (positional) or `name` (keyword) of a call node."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def op_name(node: fx.Node) -> str:
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        name = t._schema.name.replace("::", ".")
        return name if t._overloadname == "default" else f"{name}.{t._overloadname}"
    return getattr(t, "__name__", str(t))


def functional(target: Any) -> Any:
    """The out-of-place variant of an in-place ATen op (`masked_fill_` ->
    `masked_fill`); export threads in-place results, so running the functional
    op gives the same values without touching the caller's tensors."""
    if not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
        return target
    base = target._schema.name.split("::")[-1]
    if not base.endswith("_") or base.startswith("_"):
        return target
    packet = getattr(aten, base[:-1], None)
    return getattr(packet, target._overloadname, target) if packet is not None else target


def last2_swap(node: fx.Node) -> bool:
    """True when `node` swaps exactly the last two dimensions of its input."""
    t = node.target
    src = node.args[0] if node.args else None
    r = len(val(src).shape) if isinstance(val(src), torch.Tensor) else None
    if r is None or r < 2:
        return False
    if t in _ops("mT", "adjoint"):
        return True
    if t in _ops("t"):
        return r == 2
    if t in _ops("transpose.int", "swapaxes", "swapdims"):
        a, b = (int(x) % r for x in node.args[1:3])
        return {a, b} == {r - 2, r - 1}
    if t in _ops("permute"):
        perm = [int(p) % r for p in node.args[1]]
        return perm == list(range(r - 2)) + [r - 1, r - 2]
    return False


def is_identity_layout(node: fx.Node) -> bool:
    """A layout op whose output equals its input (same shape; for
    permutations, the identity permutation)."""
    src = node.args[0] if node.args else None
    sv, nv = val(src), val(node)
    if not isinstance(sv, torch.Tensor) or not isinstance(nv, torch.Tensor):
        return False
    if tuple(sv.shape) != tuple(nv.shape) or sv.dtype != nv.dtype:
        return False
    t = node.target
    if t in RESHAPES:
        if t in _ops("slice.Tensor"):
            return True  # same shape: a full slice
        return True
    if t in _ops("transpose.int", "swapaxes", "swapdims"):
        r = len(sv.shape)
        return r == 0 or int(node.args[1]) % r == int(node.args[2]) % r
    if t in _ops("permute"):
        r = len(sv.shape)
        return [int(p) % r for p in node.args[1]] == list(range(r))
    if t in _ops("movedim.int"):
        r = len(sv.shape)
        return int(node.args[1]) % r == int(node.args[2]) % r
    return False


def dtype_bits(dt: torch.dtype) -> int:
    return torch.finfo(dt).bits if dt.is_floating_point else 0


def widening(src: torch.dtype, dst: torch.dtype) -> bool:
    """A float cast that loses nothing (f16/bf16 -> f32, or no change)."""
    if src == dst:
        return True
    return src in (torch.float16, torch.bfloat16) and dst == torch.float32


def scalar_of(x: Any) -> Optional[float]:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    return None
