"""`Program`: the interpreter core with the op handlers of every ISA area,
plus the host side (func.func bodies, gpu.launch_func running each block of
the grid in turn) and the entry point run()."""
from __future__ import annotations

import numpy as np
from mlir import ir

from .arith import ArithOps
from .cp_async import CpAsyncOps
from .interpreter import Interpreter
from .lanes import LaneOps
from .machine import MemRef, Shared, SimError, State, identity_strides, uniform
from .mbarrier import MBarrierOps
from .memref import MemrefOps
from .mma import MmaOps
from .tma import TmaOps
from .vector import VectorOps
from .wgmma import WgmmaOps


class Program(Interpreter, ArithOps, VectorOps, MemrefOps, LaneOps, CpAsyncOps, MmaOps,
              WgmmaOps, TmaOps, MBarrierOps):
    """Compiles the ops of a module into closures once; run() executes.

    Program(module, smem_base=0, waive=()): `module` holds the host function(s)
    and the gpu.module of the "gpu" stage; `smem_base` is the byte address of
    dynamic shared memory; `waive` names checks (Program.WAIVABLE) a test
    may waive while a known kernel bug is open."""

    # ---- host side
    def op_func_return(self, o):
        return lambda st: None

    def op_gpu_launch_func(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        pos = 0
        parts = []
        for n in seg:
            parts.append(ins[pos:pos + n])
            pos += n
        # asyncDeps, gx, gy, gz, bx, by, bz, cx, cy, cz, dynSmem, args, asyncObject
        grid, block, smem, args = parts[1:4], parts[4:7], parts[10], parts[11]
        ref = str(o.attributes["kernel"]).lstrip("@").replace("::@", "::")

        def run(st):
            g = [uniform(st.env[x[0]], st, "grid") for x in grid]
            bl = [uniform(st.env[x[0]], st, "block") for x in block]
            nbytes = uniform(st.env[smem[0]], st, "smem") if smem else 0
            if bl[1] != 1 or bl[2] != 1:
                raise SimError("only 1-D thread blocks are modeled")
            kop, ksteps = self.kernels[ref]
            kargs = list(kop.regions[0].blocks[0].arguments)
            vals = [st.env[a] for a in args]
            st.stats["launch"] = dict(grid=g, block=bl, smem=nbytes)
            for bz in range(g[2]):
                for by in range(g[1]):
                    for bx in range(g[0]):
                        ks = State(T=bl[0], env={}, mask=np.ones(bl[0], bool),
                                   shared=Shared.make(nbytes, self.smem_base), block=(bx, by, bz),
                                   grid=tuple(g),
                                   stats=st.stats)
                        for ka, v in zip(kargs, vals):
                            ks.env[self.slot(ka)] = v
                        for s in ksteps:
                            s(ks)
                        if ks.pending or any(ks.groups):
                            self._retire(ks, [c for grp in ks.groups for c in grp] + ks.pending)
                        for grp in ks.mbars.values():
                            for b in range(grp.n):
                                if grp.loads[b]:
                                    raise SimError("the kernel exits with TMA loads in flight that "
                                                   "no thread waited for (" + grp.state(b) + ")")
        return run

    # ---- entry point (global_memref below)
    def run(self, func: str, *arrays: np.ndarray, elts: list[str]) -> dict:
        """Runs host function `func` on numpy arrays (one per memref argument,
        outputs written in place). bf16 data is float32 rounded to bf16."""
        f = self.funcs[func]
        args = list(f.regions[0].blocks[0].arguments)
        st = State(T=1, env={}, mask=np.ones(1, bool))
        for a, arr, elt in zip(args, arrays, elts):
            st.env[self.slot(a)] = global_memref(arr, elt)
        for s in self.host[func]:
            s(st)
        return st.stats


def global_memref(arr: np.ndarray, elt: str) -> MemRef:
    """A host argument: a C-contiguous array as it is; any other view
    (a permuted packed tensor or NHD cache, non-negative strides) as a flat
    view of the memory it spans with its element strides, so that writes
    land in the caller's array."""
    shape = list(arr.shape)
    if arr.flags.c_contiguous:
        return MemRef(arr.reshape(-1), "global", elt, 0, shape, identity_strides(shape))
    item = arr.itemsize
    if any(s < 0 or s % item for s in arr.strides):
        raise SimError(f"argument strides {arr.strides} are not non-negative element strides")
    strides = [s // item for s in arr.strides]
    span = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if arr.size else 0
    flat = np.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(item,))
    return MemRef(flat, "global", elt, 0, shape, strides)
