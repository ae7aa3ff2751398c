"""The interpreter core: compiles the ops of a module into closures once
(one handler `op_<dialect>_<op>` per op name, looked up on the class), with
the value slots, the def-time stamps of the wgmma.fence checks, and the
structured control flow (scf.for / scf.if / scf.yield; divergent scf.if runs
both sides under an active-thread mask).

The op handlers of each ISA area live in mixin classes (arith.py, vector.py,
memref.py, lanes.py, cp_async.py, mma.py, wgmma.py, tma.py, mbarrier.py);
program.py composes them with this core into `Program`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from mlir import ir

from .machine import SimError, uniform

# Ops whose emulation only moves data (no instruction computes a new value on
# the GPU): the def time of their results is that of their operands.
_MOVES = {"llvm.insertvalue", "llvm.extractvalue", "vector.extract", "vector.insert",
          "vector.from_elements", "vector.to_elements", "vector.bitcast", "vector.shape_cast",
          "vector.broadcast", "arith.bitcast", "builtin.unrealized_conversion_cast"}
_NO_DEF = {"arith.constant", "llvm.mlir.constant", "llvm.mlir.undef", "nvvm.wgmma.mma_async",
           "llvm.inline_asm"}


def _walk_names(op, acc: set):
    acc.add(op.name)
    for r in op.regions:
        for b in r.blocks:
            for o in b.operations:
                _walk_names(o.operation, acc)
    return acc


class Interpreter:
    """Compiles the ops of a module into closures once; subclasses (Program)
    add the op handlers and run()."""

    # Checks a test may waive while a known kernel bug is open (by name).
    WAIVABLE = frozenset({"wgmma-a-fence", "wgmma-acc-fence", "mbarrier-init-fence",
                          "tensormap-fence"})

    def __init__(self, module: ir.Module, smem_base: int = 0, waive=()):
        self.module = module  # keeps the ops alive
        self.smem_base = smem_base
        self.waive = frozenset(waive)
        if not self.waive <= self.WAIVABLE:
            raise ValueError(f"unknown checks {sorted(self.waive - self.WAIVABLE)}")
        names = _walk_names(module.operation, set())
        # Def-time stamps of values, for the wgmma.fence checks.
        self.track = any(n.startswith("nvvm.wgmma") or n == "llvm.inline_asm" for n in names)
        self.slots: dict[Any, int] = {}
        self.funcs: dict[str, Any] = {}
        self.kernels: dict[str, Any] = {}
        for op in module.body.operations:
            o = op.operation
            if o.name == "func.func":
                self.funcs[ir.StringAttr(o.attributes["sym_name"]).value] = o
            elif o.name == "gpu.module":
                mod = ir.StringAttr(o.attributes["sym_name"]).value
                for k in o.regions[0].blocks[0].operations:
                    k = k.operation
                    if k.name == "gpu.func":
                        name = ir.StringAttr(k.attributes["sym_name"]).value
                        self.kernels[f"{mod}::{name}"] = (k, self.compile_block(k.regions[0].blocks[0]))
        self.host = {n: self.compile_block(f.regions[0].blocks[0]) for n, f in self.funcs.items()}

    def slot(self, v) -> int:
        s = self.slots.get(v)
        if s is None:
            s = self.slots[v] = len(self.slots)
        return s

    def compile_block(self, block) -> list[Callable]:
        return [self.compile_op(op.operation) for op in block.operations]

    # ---- helpers
    def ins(self, o):
        return [self.slot(v) for v in o.operands]

    def outs(self, o):
        return [self.slot(r) for r in o.results]

    def slots_out1(self, o):
        return self.slot(o.results[0])

    def compile_op(self, o) -> Callable:
        name = o.name
        fn = getattr(self, "op_" + name.replace(".", "_"), None)
        if fn is None:
            raise SimError(f"the emulator does not know {name}")
        run = fn(o)
        if self.track:
            run = self._stamped(o, run)
        return run

    def _stamped(self, o, run):
        """Records when the values an op defines were computed (st.stamp),
        for the wgmma.fence checks; see _MOVES."""
        name = o.name
        outs = self.outs(o)
        if name in ("scf.for", "scf.if", "scf.yield") or name.startswith("nvvm.wgmma"):
            return run  # handled by the op itself
        if name == "memref.store":
            v, m, *idx = self.ins(o)

            def store(st):
                run(st)
                mr = st.env[m]
                if mr.stamps is not None:
                    lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))[st.mask]
                    mr.stamps[np.unique(lin)] = st.stamp.get(v, -1)
            return store
        if not outs:
            return run
        if name in _NO_DEF:
            def nodef(st):
                run(st)
                for x in outs:
                    st.stamp[x] = -1
            return nodef
        if name in _MOVES:
            srcs = self.ins(o)

            def move(st):
                run(st)
                t = max([st.stamp.get(i, -1) for i in srcs], default=-1)
                for x in outs:
                    st.stamp[x] = t
            return move
        if name == "memref.load":
            m, *idx = self.ins(o)

            def load(st):
                run(st)
                mr = st.env[m]
                if mr.stamps is not None:
                    lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))[st.mask]
                    st.stamp[outs[0]] = int(mr.stamps[np.unique(lin)].max()) if lin.size else -1
                else:
                    st.clock += 1
                    st.stamp[outs[0]] = st.clock
            return load

        def compute(st):
            run(st)
            st.clock += 1
            for x in outs:
                st.stamp[x] = st.clock
        return compute

    # ---- scf
    def op_scf_yield(self, o):
        ins = self.ins(o)
        track = self.track

        def run(st):
            st.env["__yield__"] = [st.env[i] for i in ins]
            if track:
                st.env["__ystamp__"] = [st.stamp.get(i, -1) for i in ins]
        return run

    def op_scf_if(self, o):
        (c,) = self.ins(o)
        outs = self.outs(o)
        then_b = self.compile_block(o.regions[0].blocks[0])
        else_b = self.compile_block(o.regions[1].blocks[0]) if len(o.regions[1].blocks) else []

        track = self.track

        def body(st, steps):
            for s in steps:
                s(st)
            return st.env.pop("__yield__", []), st.env.pop("__ystamp__", [-1] * len(outs))

        def merge(cond, x, y):
            if isinstance(x, tuple):
                return tuple(merge(cond, a, b) for a, b in zip(x, y))
            cc = cond.reshape(cond.shape + (1,) * (np.ndim(x) - 1))
            return np.where(cc, x, y)

        def run(st):
            cond = np.broadcast_to(st.env[c], (st.T,))
            act = cond[st.mask]
            if act.size == 0:
                return
            if np.all(act) or not np.any(act):
                res, stamps = body(st, then_b if act[0] else else_b)
                for s, v, t in zip(outs, res, stamps):
                    st.env[s] = v
                    if track:
                        st.stamp[s] = t
                return
            saved = st.mask
            st.mask = saved & cond
            r1, t1 = body(st, then_b)
            st.mask = saved & ~cond
            r2, t2 = body(st, else_b)
            st.mask = saved
            for s, x, y, a, b in zip(outs, r1, r2, t1, t2):
                st.env[s] = merge(cond, x, y)
                if track:
                    st.stamp[s] = max(a, b)
        return run

    def op_scf_for(self, o):
        lb, ub, step, *inits = self.ins(o)
        blk = o.regions[0].blocks[0]
        iv = self.slot(blk.arguments[0])
        iters = [self.slot(a) for a in list(blk.arguments)[1:]]
        outs = self.outs(o)
        steps = self.compile_block(blk)

        track = self.track

        def run(st):
            lo = uniform(st.env[lb], st, "loop bound")
            hi = uniform(st.env[ub], st, "loop bound")
            sp = uniform(st.env[step], st, "loop step")
            vals = [st.env[i] for i in inits]
            stamps = [st.stamp.get(i, -1) for i in inits] if track else []
            for i in range(lo, hi, sp):
                st.env[iv] = np.full(st.T, i, np.int64)
                for s, v in zip(iters, vals):
                    st.env[s] = v
                for s, t in zip(iters, stamps):
                    st.stamp[s] = t
                for s in steps:
                    s(st)
                vals = st.env.pop("__yield__", [])
                stamps = st.env.pop("__ystamp__", [])
            for s, v in zip(outs, vals):
                st.env[s] = v
            for s, t in zip(outs, stamps):
                st.stamp[s] = t
        return run
