"""Launch-size expressions: how a GPU kernel's grid (and dynamic shared
memory) follows from its arguments' shapes.

attncc.targets.gpu reads them from the host function of stage 'gpu' and
stores them in the kernel's launch metadata as JSON-friendly values: an int,
["dim", arg, axis] (a size of argument `arg`), or [op, lhs, rhs] with op one of
OPS. The CUDA launcher (runtime/cuda.py) evaluates them for each call.
"""
from __future__ import annotations

from typing import Any, Sequence

OPS = ("add", "sub", "mul", "div", "ceildiv", "rem", "min", "max")


def eval_expr(e: Any, shapes: Sequence[Sequence[int]]) -> int:
    """Evaluates a grid expression for argument shapes (division by zero gives 0:
    an empty grid, never an exception mid-launch)."""
    if isinstance(e, int):
        return e
    op = e[0]
    if op == "dim":
        return int(shapes[e[1]][eval_expr(e[2], shapes)])
    a, b = eval_expr(e[1], shapes), eval_expr(e[2], shapes)
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a // b if b else 0,
            "ceildiv": -(-a // b) if b else 0, "rem": a % b if b else 0,
            "min": min(a, b), "max": max(a, b)}[op]
