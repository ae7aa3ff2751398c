"""The values of the FX-to-graph conversion (convert.py) and its result:
`Host` and `Lazy` symbols, graph input specs, mask slots, `Lowered`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import fx

from ..graph import Graph, Value
from .masks import MaskClass, MaskPart


@dataclass(frozen=True)
class Host:
    node: fx.Node


@dataclass(frozen=True, eq=False)
class Lazy:
    base: Value
    node: fx.Node                      # the FX node this value stands for
    ops: tuple = ()                    # ("scale", f) | ("cast", dtype) | ("tanh", fx.Node) |
    #                                    ("mask", MaskPart, fx.Node, fx.Node)
    post: tuple = ()                   # layout nodes to run on the kernel output

    def with_op(self, op: tuple, node: fx.Node) -> "Lazy":
        return Lazy(self.base, node, self.ops + (op,), self.post)


@dataclass(frozen=True)
class InputSpec:
    """Where a graph input comes from at call time: a user tensor ('arg'), a
    host node ('host'), a host node transposed ('host_mT'), per-head sinks
    flattened to f32 [H] ('host_sinks'), or a mask slot's bias ('mask')."""

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
