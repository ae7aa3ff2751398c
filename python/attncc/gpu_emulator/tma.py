"""sm_90a TMA loads (PTX ISA "cp.async.bulk.tensor" tile mode; tensor maps
per cuTensorMapEncodeTiled; the box / out-of-bound / swizzle math is
ptx_isa.py's). The mbarriers they complete on are in mbarrier.py.
  * nvgpu.tma.create.descriptor in the host function makes a `TensorMap`
    (the global tensor, its dims and strides, the box, swizzle, oob fill);
    casts to / from !llvm.ptr pass it through to the kernel, which checks it
    against the descriptor type it expects. The map lives in global memory,
    copied there from the host (MLIR's mgpuTensorMapEncodeTiledMemref,
    attncc's runtime), so a thread must fence it (nvgpu.tma.fence.descriptor:
    fence.proxy.tensormap::generic.acquire) before its TMA loads use it
    (waivable: "tensormap-fence");
  * a TMA load reads its box at issue (zero fill out of bounds) and lands it
    (complete-tx of its bytes) only when some thread waits on its mbarrier
    (see mbarrier.py); loads the completing phase does not cover stay in
    flight; reading their destination is an error ("in flight"), and so is a
    kernel that exits with loads in flight;
  * TMA-written data is visible to the threads that observed the completion
    of its phase (their wait), or to all threads after a later gpu.barrier;
    wgmma / ldmatrix / memref.load reads by other threads are errors;
  * a TMA load into shared memory any thread (or a wgmma) read since the last
    barrier (write-after-read), that an unretired wgmma reads, that another
    copy is still writing, or whose last generic-proxy write was not followed
    by fence.proxy.async is an error; its destination must be aligned as its
    swizzle mode requires (1024 bytes for 128-byte swizzle) in absolute
    shared addresses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from mlir import ir

from . import ptx_isa as isa
from .machine import MemRef, SimError, State, identity_strides, uniform
from .mbarrier import TX_LIMIT, MBarrierGroup

# --------------------------------------------------------------------------- TMA values

_TMAP_TYPE = re.compile(r"tensor = memref<([0-9x]+)x(f16|bf16|f32)[,>].*swizzle = (\w+), "
                        r"l2promo = (\w+), oob = (\w+), interleave = (\w+)")


def parse_tensormap_type(t: str) -> dict:
    """Fields of an !nvgpu.tensormap.descriptor<...> type string."""
    m = _TMAP_TYPE.search(t)
    if not m or "tensormap.descriptor" not in t:
        raise SimError(f"not a tensor map descriptor type: {t}")
    box, elt, swizzle, l2, oob, interleave = m.groups()
    return dict(box=[int(d) for d in box.split("x")], elt=elt, swizzle=swizzle, l2promo=l2,
                oob=oob, interleave=interleave)


@dataclass(eq=False)
class TensorMap:
    """What cuTensorMapEncodeTiled encodes for one global tensor (made by
    nvgpu.tma.create.descriptor in the host function)."""
    buf: np.ndarray     # the flat global buffer
    offset: int         # element offset of the tensor's first element in buf
    elt: str
    enc: dict           # ptx_isa.encode_tensor_map: dims / strides / box innermost first
    kind: dict          # parse_tensormap_type of the descriptor type
    oob: str

class TmaOps:
    """nvgpu.tma.* and the tensor-map casts (mixin of Program)."""

    # ---- TMA and mbarriers (sm_90a)
    def op_nvgpu_tma_create_descriptor(self, o):
        src, *box_slots = self.ins(o)
        out = self.slots_out1(o)
        kind = parse_tensormap_type(str(o.results[0].type))

        def run(st):
            m = st.env[src]
            if not isinstance(m, MemRef) or m.space != "global":
                raise SimError("tma.create.descriptor of a tensor that is not in global memory")
            box = [uniform(st.env[b], st, "box dimension") for b in box_slots]
            if box != kind["box"]:
                raise SimError(f"tma.create.descriptor: box {box} differs from the descriptor "
                               f"type's {kind['box']}")
            if m.elt != kind["elt"]:
                raise SimError(f"tma.create.descriptor: {m.elt} tensor, {kind['elt']} descriptor")
            if kind["oob"] not in ("zero", "nan"):
                raise SimError(f"oob fill {kind['oob']} is not modeled")
            eb = 4 if m.elt == "f32" else 2
            try:
                enc = isa.encode_tensor_map(m.sizes, m.strides, eb, box, kind["swizzle"],
                                            kind["interleave"], base_addr=eb * m.offset)
            except ValueError as e:
                raise SimError(f"cuTensorMapEncodeTiled would fail: {e}")
            st.env[out] = TensorMap(m.buf, m.offset, m.elt, enc, kind, kind["oob"])
            st.stats["tensor maps"] = st.stats.get("tensor maps", 0) + 1
        return run

    def op_builtin_unrealized_conversion_cast(self, o):
        ins, outs = self.ins(o), self.outs(o)
        src_t = [str(v.type) for v in o.operands]
        dst_t = [str(r.type) for r in o.results]
        if len(ins) != 1 or len(outs) != 1 or not any("tensormap.descriptor" in t
                                                       for t in src_t + dst_t):
            raise SimError(f"unrealized_conversion_cast {src_t} -> {dst_t} is not modeled")
        want = parse_tensormap_type(dst_t[0]) if "tensormap.descriptor" in dst_t[0] else None
        (a,), (out,) = ins, outs

        def run(st):
            v = st.env[a]
            if not isinstance(v, TensorMap):
                raise SimError("a tensor map pointer that does not come from tma.create.descriptor")
            if want is not None and v.kind != want:
                raise SimError(f"tensor map argument {v.kind} does not match the descriptor type "
                               f"the kernel expects {want}")
            st.env[out] = v
        return run
    def op_nvgpu_tma_async_load(self, o):
        seg = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        ins = self.ins(o)
        parts, pos = [], 0
        for n in seg:
            parts.append(ins[pos:pos + n])
            pos += n
        (dst,), (bars,), (tmap,), coords, (bid,), mcast, pred = parts
        if mcast:
            raise SimError("TMA multicast is not modeled")
        pred = pred[0] if pred else None

        def run(st):
            t = self._issuers(st, pred)
            if t.size == 0:
                return
            dm, tm, grp = st.env[dst], st.env[tmap], st.env[bars]
            sh = st.shared
            if not isinstance(tm, TensorMap):
                raise SimError("tma.async.load without a tensor map")
            if dm.space != "shared":
                raise SimError("tma.async.load destination must be shared memory")
            if tm.enc["elem_bytes"] != 2:
                raise SimError("TMA loads of 4-byte elements are not modeled (2-byte shared units)")
            if dm.sizes != tm.kind["box"] or dm.elt != tm.elt:
                raise SimError(f"tma.async.load: destination {dm.sizes}x{dm.elt} is not the box "
                               f"{tm.kind['box']}x{tm.elt}")
            if dm.strides != identity_strides(dm.sizes):
                raise SimError(f"tma.async.load: destination strides {dm.strides} are not dense: "
                               f"the box lands densely from the start address")
            dst_addr = sh.base + 2 * dm.offset
            try:
                addr = isa.tma_smem_address(tm.enc, dst_addr).reshape(-1)
            except ValueError as e:
                raise SimError(f"tma.async.load: {e}")
            d = (addr - sh.base) // 2
            if d.min() < 0 or d.max() >= sh.data.size:
                raise SimError("tma.async.load writes outside dynamic shared memory")
            nbytes = isa.tma_box_bytes(tm.enc)
            cs = [self._per_thread(st, c, t) for c in coords]
            for k, (ti, b) in enumerate(zip(t, self._per_thread(st, bid, t))):
                self._mbar_check(st, grp, b, [ti], "tma.async.load")
                xy = [c[k] for c in cs]
                if any(not -(1 << 31) <= c < 1 << 31 for c in xy):
                    raise SimError(f"tma.async.load: coordinates {xy} do not fit in int32")
                src, ok = isa.tma_tile_source(tm.enc, xy)
                fill = np.nan if tm.oob == "nan" else 0.0
                vals = np.where(ok, tm.buf[tm.offset + src], fill).astype(np.float32).reshape(-1)
                if np.any(sh.async_r[d] > 0):
                    raise SimError("TMA load overwrites shared data an unretired wgmma.mma_async "
                                   "reads (missing wgmma.wait_group)")
                if np.any(sh.r_epoch[d] == st.epoch):
                    raise SimError("TMA load overwrites shared data a thread read since the last "
                                   "barrier (write-after-read race: missing barrier)")
                if np.any(sh.inflight[d]) or np.any(sh.tma_inflight[d]):
                    raise SimError("TMA load into shared memory another copy is still writing "
                                   "(two copies in flight to one location)")
                self._mbar_check_next_phase(st, grp, b, ti, "tma.async.load")
                fenced = st.tmap_fenced.get(id(tm))
                if (fenced is None or not fenced[ti]) and "tensormap-fence" not in self.waive:
                    raise SimError(
                        "tma.async.load through a tensor map the host copied to global memory, "
                        "without a fence.proxy.tensormap::generic.acquire (nvgpu.tma.fence."
                        "descriptor) by the issuing thread in this block (CUDA Programming Guide, "
                        "TMA: a fence before any thread accesses a tensor map copied to global "
                        "memory with cudaMemcpy)")
                if not grp.init_fenced[b] and "mbarrier-init-fence" not in self.waive:
                    raise SimError(
                        f"tma.async.load completes (complete-tx, async proxy) on mbarrier {b}, "
                        f"whose mbarrier.init (generic proxy) no fence.proxy.async.shared::cta or "
                        f"fence.mbarrier_init by the initializing thread made visible to the async "
                        f"proxy (CUDA Programming Guide, TMA: 'make initialized barrier visible in "
                        f"async proxy')")
                if not np.all(sh.fenced[d]):
                    raise SimError("TMA load overwrites shared data written through the generic "
                                   "proxy without a fence.proxy.async")
                sh.tma_inflight[d] = True
                grp.loads[b].append((d, vals, nbytes))
                st.stats["tma"] = st.stats.get("tma", 0) + 1
                st.stats["tma.oob"] = st.stats.get("tma.oob", 0) + int(ok.size - ok.sum())
        return run

    def op_nvgpu_tma_fence_descriptor(self, o):
        (tmap,) = self.ins(o)

        def run(st):
            tm = st.env[tmap]
            if not isinstance(tm, TensorMap):
                raise SimError("tma.fence.descriptor without a tensor map")
            st.tmap_fenced.setdefault(id(tm), np.zeros(st.T, bool))[st.mask] = True
        return run

    def op_nvgpu_tma_prefetch_descriptor(self, o):
        return lambda st: None   # a cache hint

    def _land_tma(self, st: State, grp: MBarrierGroup, b: int, load):
        """One TMA load's data lands; complete-tx of its bytes on barrier b."""
        d, vals, nbytes = load
        sh = st.shared
        sh.data[d] = vals
        sh.tma_inflight[d] = False
        sh.w_epoch[d] = -1       # an async-proxy write; visibility via the mbarrier
        sh.w_thread[d] = -1
        sh.fenced[d] = True
        sh.fence_epoch[d] = -1
        st.completions.append((grp, b, int(grp.phase[b])))
        sh.tma_src[d] = len(st.completions) - 1
        grp.tx[b] -= nbytes
        if grp.tx[b] < -TX_LIMIT:
            raise SimError(f"mbarrier tx-count out of range ({grp.state(b)})")
    def _check_tma_visible(self, st: State, idx, readers, what: str, per_element: bool = True):
        """TMA-landed data must have its mbarrier phase's completion observed
        by each reading thread (or a gpu.barrier after some thread did)."""
        sh = st.shared
        src = sh.tma_src[idx]
        sel = src >= 0
        if not np.any(sel):
            return
        for cid in np.unique(src[sel]):
            grp, b, ph = st.completions[cid]
            r = readers[src == cid] if per_element else readers
            if np.any(grp.observed[b, r] <= ph):
                raise SimError(f"{what} reads TMA-loaded data without having waited on its "
                               f"mbarrier {b} (phase {ph}; missing mbarrier.try_wait.parity by "
                               f"the reading threads or a barrier after it)")
