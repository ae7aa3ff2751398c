"""Evaluating the host side of a captured function with torch.

Nodes of the exported graph that depend only on the function's inputs and on
constants (a mask built with `torch.ones(L, S).tril()`, `mask == 0`,
`q.transpose(1, 2)` of a [B, L, H, D] input, a padding mask from lengths...) are
not compiled: they run in torch, at capture time when they depend on no input
(constants, e.g. to recognize a causal mask; computed once per device and
kept) and at call time otherwise, and their results are passed to the kernel
as graph inputs.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import fx

from .aten import functional
from .trace import Traced


class HostEvaluator:
    """Runs host nodes of `traced` on given user tensors (memoized per call)."""

    def __init__(self, traced: Traced) -> None:
        self.traced = traced
        self._consts: dict[tuple[fx.Node, str], torch.Tensor] = {}
        self._depends: dict[fx.Node, bool] = {}
        self._like: set[fx.Node] = set()

    def constant_like(self, node: fx.Node) -> None:
        """Marks `node` (`torch.full_like(scores, -inf)`, `scores.new_zeros(...)`)
        as reading only the shape and dtype of its first argument, so that it
        is computed without that argument's values."""
        self._like.add(node)

    def _inputs_of(self, node: fx.Node) -> list[fx.Node]:
        ins = node.all_input_nodes
        if node in self._like:
            ins = [a for a in ins if a is not node.args[0]]
        return ins

    def depends_on_inputs(self, node: fx.Node) -> bool:
        if node in self._depends:
            return self._depends[node]
        stack = [node]
        while stack:                       # post-order without recursion
            n = stack.pop()
            if n in self._depends:
                continue
            pending = [a for a in self._inputs_of(n) if a not in self._depends]
            if pending:
                stack.append(n)
                stack.extend(pending)
                continue
            if n.op == "placeholder":
                self._depends[n] = n in self.traced.user_inputs
            else:
                self._depends[n] = any(self._depends[a] for a in self._inputs_of(n))
        return self._depends[node]

    def run(self, nodes: Sequence[fx.Node], tensors: Optional[Sequence[torch.Tensor]],
            device: torch.device, env: Optional[dict] = None) -> list[Any]:
        """Values of `nodes`; `tensors` are the flat user tensors (None when the
        nodes depend on none). `env` memoizes across calls of one evaluation."""
        env = {} if env is None else env
        return [self._eval(n, tensors, device, env) for n in nodes]

    def _eval(self, node: fx.Node, tensors, device, env) -> Any:
        if node in env:
            return env[node]
        # iterative over dependencies to stay clear of the recursion limit
        stack = [node]
        while stack:
            n = stack[-1]
            if n in env:
                stack.pop()
                continue
            missing = [a for a in self._inputs_of(n) if a not in env]
            if missing:
                stack.extend(missing)
                continue
            if self.depends_on_inputs(n):
                env[n] = self._eval_one(n, tensors, device, env)
            else:  # constants are computed once per device
                key = (n, str(device))
                if key not in self._consts:
                    self._consts[key] = self._eval_one(n, tensors, device, env)
                env[n] = self._consts[key]
            stack.pop()
        return env[node]

    def _eval_one(self, n: fx.Node, tensors, device, env) -> Any:
        if n.op == "placeholder":
            if n in self.traced.user_inputs:
                if tensors is None:
                    raise RuntimeError(f"host node {n.name} needs the user inputs")
                return tensors[self.traced.user_inputs[n]]
            return self.traced.constants[n].to(device)
        if n.op != "call_function":
            raise RuntimeError(f"cannot evaluate FX node {n.op} {n.target}")
        trace_device = self.traced.trace_device
        if n in self._like:
            like = n.args[0].meta["val"]
            env = dict(env)
            env[n.args[0]] = torch.empty(tuple(like.shape), dtype=like.dtype, device=device)

        def sub(a):
            if isinstance(a, fx.Node):
                return env[a]
            if isinstance(a, torch.device) and a == trace_device:
                return device
            if isinstance(a, (list, tuple)):
                return type(a)(sub(x) for x in a)
            if isinstance(a, dict):
                return {k: sub(x) for k, x in a.items()}
            return a

        return functional(n.target)(*sub(n.args), **sub(n.kwargs))
