"""Threads and lanes: thread / block ids, block-wide barriers and warp
shuffles. All threads of a block run in lockstep; a warp is 32 consecutive
threads, so warp-collective ops see the whole warp."""
from __future__ import annotations

import numpy as np

from .machine import SimError, uniform


class LaneOps:
    """gpu.thread_id / block_id / barrier / shuffle / return (mixin of Program)."""

    # ---- gpu
    def op_gpu_thread_id(self, o):
        out = self.slots_out1(o)
        dim = str(o.attributes["dimension"])

        def run(st):
            st.env[out] = np.arange(st.T, dtype=np.int64) if dim.endswith("x>") else np.zeros(st.T, np.int64)
        return run

    def op_gpu_block_id(self, o):
        out = self.slots_out1(o)
        d = "xyz".index(str(o.attributes["dimension"])[-2])

        def run(st):
            st.env[out] = np.full(st.T, st.block[d], np.int64)
        return run

    def op_gpu_barrier(self, o):
        def run(st):
            if not np.all(st.mask):
                raise SimError("gpu.barrier in divergent control flow")
            st.epoch += 1
            # Completed mbarrier phases one thread observed are ordered
            # before everything any thread does after the barrier.
            for grp in st.mbars.values():
                grp.observed[:] = grp.observed.max(axis=1, keepdims=True)
            st.stats["barriers"] = st.stats.get("barriers", 0) + 1
        return run

    def op_gpu_shuffle(self, o):
        v, off, width = self.ins(o)
        out, valid = self.outs(o)
        mode = str(o.attributes["mode"])
        if "xor" not in mode:
            raise SimError(f"shuffle mode {mode}")

        def run(st):
            x = st.env[v]
            k = uniform(st.env[off], st, "shuffle offset")
            if uniform(st.env[width], st, "shuffle width") != 32:
                raise SimError("shuffle width must be 32")
            lanes = np.arange(st.T)
            src = (lanes // 32) * 32 + ((lanes % 32) ^ k)
            st.env[out] = x[src]
            st.env[valid] = np.ones(st.T, bool)
        return run

    def op_gpu_return(self, o):
        return lambda st: None

    op_gpu_terminator = op_gpu_return
