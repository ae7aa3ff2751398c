"""Asynchronous global -> shared copies (cp.async, nvgpu.device_async_copy)
and their groups.

A copy reads its source at issue; its data lands only when a
`cp.async.wait_group` (nvgpu.device_async_wait) retires its committed group
(reading a destination before that is an error: "in flight"). A cp.async
issued to a location another thread (or a wgmma) read since the last barrier
is a write-after-read race. Copies still in flight when the kernel exits land
then.
"""
from __future__ import annotations

import numpy as np
from mlir import ir

from .machine import SimError, State


class CpAsyncOps:
    """nvgpu.device_async_copy / create_group / wait (mixin of Program)."""

    def op_nvgpu_device_async_copy(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        dst, ins = ins[0], ins[1:]
        didx, ins = ins[:seg[1]], ins[seg[1]:]
        src, ins = ins[0], ins[1:]
        sidx, ins = ins[:seg[3]], ins[seg[3]:]
        nsrc = ins[0] if seg[4] else None
        ndst = ir.IntegerAttr(o.attributes["dstElements"]).value
        tok = self.slots_out1(o)

        def run(st):
            dm, sm = st.env[dst], st.env[src]
            if dm.space != "shared":
                raise SimError("cp.async destination must be shared memory")
            dl = np.broadcast_to(dm.linear([st.env[i] for i in didx]), (st.T,))
            sl = np.broadcast_to(sm.linear([st.env[i] for i in sidx]), (st.T,))
            n = np.broadcast_to(st.env[nsrc] if nsrc is not None else ndst, (st.T,))
            sh = st.shared
            t = np.nonzero(st.mask)[0]
            e = np.arange(ndst)
            d = dl[t][:, None] + e * dm.unit            # [threads, ndst] (2-byte units)
            has = e[None, :] < n[t][:, None]
            src_idx = np.where(has, sl[t][:, None] + e, 0)
            vals = np.where(has, sm.buf[src_idx], 0).astype(np.float32)
            if np.any(sh.async_r[d] > 0):
                raise SimError("cp.async overwrites shared data an unretired wgmma.mma_async reads "
                               "(missing wgmma.wait_group)")
            # Write-after-read: another thread (or a wgmma) read these since
            # the last barrier.
            bad = (sh.r_epoch[d] == st.epoch) & (sh.r_thread[d] != t[:, None])
            if np.any(bad):
                raise SimError("cp.async overwrites shared data another thread read since the "
                               "last barrier (missing barrier)")
            if np.any(sh.inflight[d]) or np.any(sh.tma_inflight[d]):
                raise SimError("two cp.async in flight to one location")
            sh.inflight[d] = True
            st.pending.append((np.broadcast_to(t[:, None], d.shape), d, vals))
            st.env[tok] = None
            st.stats["cp.async"] = st.stats.get("cp.async", 0) + 1
        return run

    def op_nvgpu_device_async_create_group(self, o):
        tok = self.slots_out1(o)

        def run(st):
            if not np.all(st.mask):
                raise SimError("cp.async.commit_group in divergent control flow")
            st.groups.append(st.pending)
            st.pending = []
            st.env[tok] = None
        return run

    def op_nvgpu_device_async_wait(self, o):
        n = ir.IntegerAttr(o.attributes["numGroups"]).value if "numGroups" in o.attributes else 0

        def run(st):
            while len(st.groups) > n:
                self._retire(st, st.groups.pop(0))
        return run

    @staticmethod
    def _retire(st: State, group):
        sh = st.shared
        for t, d, vals in group:
            sh.data[d] = vals
            sh.inflight[d] = False
            sh.w_epoch[d] = st.epoch
            sh.w_thread[d] = t
            sh.fenced[d] = False   # a generic-proxy write
            sh.tma_src[d] = -1
