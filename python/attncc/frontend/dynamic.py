"""Dynamic shapes: the sizes a kernel leaves to the call.

An attention kernel's code depends on dtypes, heads, head dims, the mask and
the options, never on the batch size or the sequence lengths: those become
`?` dims of the graph, and one kernel serves every length. What stays static:
the heads (Hq, Hkv: the KV group is code), the head dims, and in a bias the
dims that broadcast (size 1), because a broadcast dim is read with stride 0.

    qkv_shape((2, 8, 100, 64))                  -> (None, 8, None, 64)
    bias_shape((1, 1, 100, 300), 2, 8, 100, 300) -> (1, 1, None, None)
    dynamic_graph(fused_ir)                      # a captured graph, retyped
"""
from __future__ import annotations

from typing import Optional, Sequence

from mlir import ir

from ..errors import CompileError
from ..graph import Graph

Shape = tuple[Optional[int], ...]


def qkv_shape(shape: Sequence[int]) -> Shape:
    """q, k or v ([B, H, L, D]): batch and length dynamic."""
    B, H, L, D = shape
    return (None, H, None, D)


def bias_shape(shape: Sequence[int], B: int, H: int, L: int, S: int) -> Shape:
    """A bias broadcastable to [B, H, L, S] (aligned right, as torch
    broadcasts): a size-1 dim stays 1 (broadcast), the heads stay, the batch
    and length dims become dynamic."""
    out: list[Optional[int]] = []
    first = 4 - len(shape)
    for i, d in enumerate(shape):
        pos = first + i
        out.append(1 if d == 1 else d if pos == 1 else None)
    return tuple(out)


def _tensor(shape: Shape, element: ir.Type) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(
        [ir.ShapedType.get_dynamic_size() if d is None else d for d in shape], element)


def _shape(t: ir.Type) -> tuple[int, ...]:
    return tuple(ir.RankedTensorType(t).shape)


def dynamic_graph(fused: str, name: str) -> Graph:
    """The graph of a captured function at stage 'fused' (arguments, an
    optional `attn.scale` of the bias, one `attn.attention`) with batch and
    lengths dynamic: the same program for every batch size and length."""
    g = Graph.parse(fused, name)
    with g.context, ir.Location.unknown(g.context):
        block = g.block
        ops = [op.operation for op in block.operations]
        attn = [op for op in ops if op.name == "attn.attention"]
        if len(attn) != 1:
            raise CompileError("dynamic=True: the captured graph is not one attention")
        att = attn[0]
        q_shape, k_shape = _shape(att.operands[0].type), _shape(att.operands[1].type)
        if len(q_shape) != 4 or len(k_shape) != 4:
            raise CompileError("dynamic=True needs rank-4 attention operands")
        B, H, L, _ = q_shape
        S = k_shape[2]

        def role(arg: ir.Value) -> str:
            for use in arg.uses:
                owner = use.owner.operation if hasattr(use.owner, "operation") else use.owner
                if owner.name == "attn.attention":
                    if use.operand_number < 3:
                        return "qkv"
                    # operand 3 is the bias when there is one; slopes and sinks
                    # ([Hq]) keep their shape
                    has_bias = ir.DenseI32ArrayAttr(owner.attributes["operandSegmentSizes"])[3]
                    return "bias" if use.operand_number == 3 and has_bias else "heads"
                if owner.name == "attn.scale":
                    return role(owner.results[0])
            raise CompileError("dynamic=True: a graph argument does not feed the attention")

        types = []
        for arg in block.arguments:
            t = ir.RankedTensorType(arg.type)
            shape = _shape(t)
            r = role(arg)
            new = qkv_shape(shape) if r == "qkv" else shape if r == "heads" else \
                bias_shape(shape, B, H, L, S)
            nt = _tensor(new, t.element_type)
            arg.set_type(nt)
            types.append(nt)
        for op in ops:
            if op.name == "attn.scale":
                op.results[0].set_type(op.operands[0].type)
        out_t = ir.RankedTensorType(att.results[0].type)
        v_shape = _shape(att.operands[2].type)
        att.results[0].set_type(_tensor((None, H, None, v_shape[3]), out_t.element_type))
        g.func.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get(types, [att.results[0].type]))
        try:
            g.module.operation.verify()
        except ir.MLIRError as e:
            raise CompileError(f"dynamic=True: the retyped graph does not verify: {e}") from None
    return g
