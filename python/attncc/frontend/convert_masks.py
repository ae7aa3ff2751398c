"""The masks of the FX-to-graph conversion (mixin of convert.Converter):
mask parts collected on the scores, combined into one mask slot per
attention when the scores are consumed, classified (causal, sliding window,
none, or a bias input) and applied; masked_fill / where / additive masks and
scaled_dot_product_attention's attn_mask."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch
from torch import fx

from ..graph import Value
from . import aten as A
from .lowered import Host, InputSpec, Lazy, Slot
from .masks import BIAS, CAUSAL, NONE, MaskClass, MaskPart, bias_dtype, classify


class MaskHandlers:
    """Mask handling of `Converter` (uses its env, host, graph and inputs)."""

    def mask_input(self, slot_index: int) -> Value:
        key = ("mask", slot_index)
        if key in self._input_values:
            return self._input_values[key]
        slot = self.slots[slot_index]
        spec = InputSpec(f"mask{slot_index}" if slot_index else "mask", "mask", slot=slot_index)
        dt = A.FLOAT_DTYPES[slot.bias_dtype]
        return self._new_input(key, spec, slot.bias_shape, dt, slot.where)

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
            elif op[0] == "tanh" and any(m > i for m in masks):
                # the masks combine at the first one: not across a tanh
                raise self.error(op[1], "a tanh between two masks of the scores is not "
                                        "supported")
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
            cls = classify(parts, values, L, S, self.bottom_right)
        self.used_classes[index] = cls
        return index

    def _apply_mask(self, v: Value, slot_index: int, where: fx.Node) -> Value:
        cls = self.used_classes[slot_index]
        if cls.kind == "none":
            return v
        if cls.kind == "bias":
            b = self.mask_input(slot_index)
            return self.emit(where, lambda: self.g.mask(v, "bias", bias=b))
        return self.emit(where, lambda: self.g.mask(v, cls.kind, window=cls.window,
                                                    align=cls.align))

    def slot_class_for_sdpa(self, mask_node: Optional[fx.Node], causal: bool,
                            node: fx.Node, L: int, S: int) -> tuple[MaskClass, Optional[Value]]:
        """The class of SDPA's attn_mask / is_causal, and the bias input if any."""
        if mask_node is None:
            return (CAUSAL if causal else NONE), None
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
            cls = classify([part], self.host.run([mask_node], None, torch.device("cpu")), L, S,
                           self.bottom_right)
        self.used_classes[index] = cls
        if causal and cls.kind != "none":
            raise self.error(node, "attn_mask together with is_causal=True is not supported")
        if cls.kind == "bias":
            return cls, self.mask_input(index)
        if cls.kind == "none":
            return (CAUSAL if causal else NONE), None
        return cls, None

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
        part = MaskPart("fill", masked_if=masked_if, fill=f)
        if not part.boolean_like_fill():
            # A fill becomes -inf (a structure) or an additive bias: the same as
            # replacing the scores only where the fill dwarfs them.
            raise self.unsupported(node, f"masking with fill value {f:g}: attncc applies a "
                                         "fill as -inf or as an added bias, the same as "
                                         "masked_fill only for -inf or fills at most "
                                         "finfo(float16).min (-65504); use float('-inf') or "
                                         "torch.finfo(dtype).min")
        return self._mask_part(node, xs, part, cond)

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
