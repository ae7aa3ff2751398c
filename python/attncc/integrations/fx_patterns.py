"""Hand-written attention in a dynamo FX graph (torch-level ops), as models
write it (transformers' eager attention):

    s = torch.matmul(q, k.transpose(2, 3)) * scale    # or / d
    s = torch.tanh(s / cap) * cap                      # optional soft-capping
    s = s + mask                                       # optional additive mask
    p = softmax(s, dim=-1[, dtype]).to(dtype)          # casts optional
    p = dropout(p, p=0.0 or training=False)            # optional, identity
    o = torch.matmul(p, v)

gpt-oss's sinks too: `softmax(cat([s, sinks.reshape(1, -1, 1, 1).expand(...)],
-1) - max)[..., :-1]` (the max subtraction leaves any softmax as it is). That
becomes one `torch.ops.attncc.attention(q, k, v, attn_mask=mask, scale=...,
softcap=cap, sinks=sinks)`. A region is replaced only when every intermediate value has
no other user (returned attention weights keep the region as it is), q, k,
v are rank 4 and the output has q's dtype; anything else is left to the
next compiler unchanged, which computes it correctly. Dropout in training
mode is refused: attncc has none, and leaving it would hide that.
"""
from __future__ import annotations

import operator
from typing import Any, Optional

import torch
from torch import fx

from ..errors import InputError

_MATMUL = {torch.matmul, operator.matmul}
_MUL = {operator.mul, torch.mul}
_DIV = {operator.truediv, torch.div, torch.true_divide}
_ADD = {operator.add, torch.add}
_SOFTMAX = {torch.softmax, torch.nn.functional.softmax}
_CASTS = {"to", "type_as", "float"}


def _is(node: Any, functions: set, method: Optional[str] = None) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_function" and node.target in functions:
        return True
    return method is not None and node.op == "call_method" and node.target == method


def _value(node: Any) -> Any:
    return node.meta.get("example_value") if isinstance(node, fx.Node) else node


def _is_tensor(node: Any) -> bool:
    return isinstance(_value(node), torch.Tensor)


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _key_of(node: Any) -> Optional[fx.Node]:
    """k from k.transpose(2, 3) / (-2, -1)."""
    if not _is(node, {torch.transpose}, "transpose") or len(node.args) != 3:
        return None
    dims = tuple(int(d) if isinstance(d, int) else d for d in node.args[1:])
    if dims in ((2, 3), (3, 2), (-2, -1), (-1, -2)) and _only_user(node) is not None:
        return node.args[0]
    return None


def _same(a: Any, b: Any) -> bool:
    return a is b or (not isinstance(a, fx.Node) and not isinstance(b, fx.Node) and a == b)


def _stabilized(node: Any) -> Optional[fx.Node]:
    """x for `x - x.max(dim=-1, keepdim=True)[0]` (or `.values`, `amax`): a
    shift that leaves the softmax as it is."""
    if not _is(node, {operator.sub, torch.sub}, "sub") or len(node.args) != 2:
        return None
    x, m = node.args
    if not isinstance(m, fx.Node) or node.kwargs:    # `scores - 1.0`, sub(alpha=...)
        return None
    if _is(m, {operator.getitem}) and m.args[1] == 0 or \
            (m.op == "call_function" and m.target is getattr and m.args[1] == "values"):
        m = m.args[0]
    if not (_is(m, {torch.max, torch.amax}, "max") or _is(m, set(), "amax")) or \
            m.args[0] is not x or len(m.users) != 1:
        return None
    # Only the row maximum (the last dim) leaves the softmax as it is.
    dim = m.kwargs.get("dim", m.args[1] if len(m.args) > 1 else None)
    if isinstance(dim, (list, tuple)) and len(dim) == 1:
        dim = dim[0]
    if dim not in (-1, _value(x).dim() - 1 if _is_tensor(x) else -1):
        return None
    if set(x.users) != {m, node}:
        return None
    return x


def _sinks_of(node: Any, heads: int) -> Optional[fx.Node]:
    """s for gpt-oss's `s.reshape(1, -1, 1, 1).expand(b, -1, L, -1)` ([Hq] logits)."""
    if not _is(node, set(), "expand") or _only_user(node) is None:
        return None
    r = node.args[0]
    if not _is(r, set(), "reshape") or tuple(r.args[1:]) != (1, -1, 1, 1):
        return None
    s = _value(r.args[0])
    if not isinstance(s, torch.Tensor) or s.dim() != 1 or s.shape[0] != heads:
        return None
    return r.args[0]


def _sink_split(softmax: fx.Node) -> tuple[Any, Optional[fx.Node]]:
    """(scores, sinks) of `softmax(cat([scores, sinks], -1) - max)` (gpt-oss),
    else (the softmax's input, None)."""
    node = softmax.args[0]
    inner = _stabilized(node)
    if inner is not None:
        node = inner
    if _is(node, {torch.cat}) and len(node.args) >= 1 and len(node.args[0]) == 2 and \
            node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) in (-1, 3):
        scores, extra = node.args[0]
        out = _value(softmax)
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            sinks = _sinks_of(extra, out.shape[1])
            if sinks is not None and _only_user(scores) is not None:
                return scores, sinks
        return None, None
    return softmax.args[0], None   # a shift without sinks: left as written


def _match(softmax: fx.Node) -> Optional[dict]:
    """The region ending in the P·V matmul after `softmax`, or None."""
    dim = softmax.kwargs.get("dim", softmax.args[1] if len(softmax.args) > 1 else None)
    if dim not in (-1, 3) or len(softmax.args) < 1:
        return None
    scores, sinks = _sink_split(softmax)
    if scores is None:
        return None
    # Forward: (the sink column dropped,) casts and identity dropout up to P·V.
    node = softmax
    if sinks is not None:
        user = _only_user(node)
        if not _is(user, {operator.getitem}) or user.args[1] != (Ellipsis, slice(None, -1, None)):
            return None
        node = user
    while True:
        user = _only_user(node)
        if user is None:
            return None
        if user.op == "call_method" and user.target in _CASTS:
            node = user
        elif _is(user, {torch.nn.functional.dropout}):
            p = user.kwargs.get("p", user.args[1] if len(user.args) > 1 else 0.5)
            training = user.kwargs.get("training", user.args[2] if len(user.args) > 2 else True)
            if p and training:
                raise InputError(f"attention with dropout p={p} in training mode: attncc "
                                 "has no attention dropout; call model.eval()")
            node = user
        elif _is(user, _MATMUL, "matmul") and user.args[0] is node:
            pv = user
            break
        else:
            return None
    # Backward: mask, soft-cap, scale, down to Q·Kᵀ.
    ops: list[tuple[str, Any]] = []
    node = scores
    while not _is(node, _MATMUL, "matmul"):
        if not isinstance(node, fx.Node) or _only_user(node) is None:
            return None
        prev = node.args[0] if node.args else None
        if node.kwargs and not (_is(node, _ADD, "add") and node.kwargs == {"alpha": 1}):
            return None     # add(alpha=3), div(rounding_mode=...): left as written
        if _is(node, _ADD, "add") and len(node.args) == 2:
            # `scores + mask`, as models write it; a bool or integer tensor added
            # to the scores is a number, not attncc's keep-mask: left as written
            mask = _value(node.args[1])
            if not isinstance(mask, torch.Tensor) or mask.dtype not in (
                    torch.float32, torch.float16, torch.bfloat16):
                return None
            ops.append(("add", node.args[1]))
        elif _is(node, _MUL, "mul") and len(node.args) == 2:
            a, b = node.args
            prev, other = (a, b) if _is_tensor(a) and not _is_tensor(b) else (b, a)
            if _is_tensor(other):
                return None
            ops.append(("mul", other))
        elif _is(node, _DIV, "div") and len(node.args) == 2 and not _is_tensor(node.args[1]):
            ops.append(("div", node.args[1]))
        elif _is(node, {torch.tanh}, "tanh"):
            ops.append(("tanh", None))
        else:
            return None
        node = prev
    qk = node
    if _only_user(qk) is None:
        return None
    k = _key_of(qk.args[1])
    if k is None:
        return None
    found = _parse(list(reversed(ops)))
    if found is None:
        return None
    q, v = qk.args[0], pv.args[1]
    values = [_value(x) for x in (q, k, v, pv)]
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in values) or \
            values[3].dtype != values[0].dtype or not attention_shapes(*values[:3]):
        return None
    return dict(q=q, k=k, v=v, out=pv, sinks=sinks, **found)


def attention_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether [B, Hq, L, D] / [B, Hkv, S, D] / [B, Hkv, S, Dv] are shapes
    attncc takes (the same batch, Hq a multiple of Hkv), as far as known
    while compiling; torch's broadcasts (K/V of batch 1 against q of batch
    B, ...) are left to the next compiler. Symbolic sizes (dynamic=True) that
    may be equal count as equal: only what is known to differ is refused (a
    size-1 dim is static, so a broadcast is known)."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true as known

    def same(a, b):
        return not known(a != b)

    return (same(q.shape[0], k.shape[0]) and same(k.shape[0], v.shape[0]) and
            same(k.shape[1], v.shape[1]) and same(k.shape[2], v.shape[2]) and
            same(q.shape[3], k.shape[3]) and not known(q.shape[1] % k.shape[1] != 0))


def _parse(ops: list[tuple[str, Any]]) -> Optional[dict]:
    """[scale] [softcap] [mask], in the order of the computation."""
    scale: Any = 1.0
    scale_div = False
    cap = mask = None
    i = 0
    if i < len(ops) and ops[i][0] in ("mul", "div") and not (
            i + 1 < len(ops) and ops[i + 1][0] == "tanh"):
        scale, scale_div = ops[i][1], ops[i][0] == "div"
        i += 1
    kinds = [o for o, _ in ops]
    if kinds[i:i + 3] == ["div", "tanh", "mul"] and _same(ops[i][1], ops[i + 2][1]):
        cap = ops[i][1]
        i += 3
    if i < len(ops) and ops[i][0] == "add":
        mask = ops[i][1]
        i += 1
    if i != len(ops):
        return None
    return dict(scale=scale, scale_div=scale_div, softcap=cap, mask=mask)


def replace_eager_attention(gm: fx.GraphModule) -> int:
    """Replaces hand-written attention regions with attncc's operator;
    returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op == "output" or not (_is(node, _SOFTMAX, "softmax")):
            continue
        found = _match(node)
        if found is None:
            continue
        out = found["out"]
        with gm.graph.inserting_before(out):
            scale = found["scale"]
            if found["scale_div"]:
                scale = (gm.graph.call_function(operator.truediv, (1.0, scale))
                         if isinstance(scale, fx.Node) else 1.0 / scale)
            elif not isinstance(scale, fx.Node):
                scale = float(scale)
            cap = found["softcap"]
            if cap is not None and not isinstance(cap, fx.Node):
                cap = float(cap)
            new = gm.graph.call_function(
                torch.ops.attncc.attention.default,
                (found["q"], found["k"], found["v"], found["mask"], "none", scale, -1, -1, cap,
                 found["sinks"]))
        new.meta.update(out.meta)
        out.replace_all_uses_with(new)
        gm.graph.erase_node(out)
        count += 1
    if count:
        gm.graph.eliminate_dead_code()   # the region's other nodes
        gm.graph.lint()
        gm.recompile()
    return count
