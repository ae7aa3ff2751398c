"""Memrefs over the three memory spaces (global, shared, private) and the
race checks of generic-proxy reads of shared memory.

Shared memory is checked for races the way the hardware could expose them:
  * a thread reading shared data written by another thread (or a cp.async it
    issued) since the last barrier is a read-after-write race;
  * reading data a cp.async or TMA load has not finished writing is an error
    ("in flight"), and so is reading TMA-loaded data before its mbarrier
    phase was observed (see tma.py).
Shared memory starts at byte address `Shared.base` (what
memref.extract_aligned_pointer_as_index of gpu.dynamic_shared_memory returns;
0 unless Program(smem_base=...)); wgmma descriptors, TMA destinations and
swizzles use these absolute addresses.
"""
from __future__ import annotations

import re

import numpy as np
from mlir import ir

from .machine import (DYN, MemRef, SimError, State, identity_strides, memref_elt, memref_shape,
                      np_dtype, parse_type, uniform)


class MemrefOps:
    """memref.* handlers and gpu.dynamic_shared_memory (mixin of Program)."""

    def op_gpu_dynamic_shared_memory(self, o):
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = MemRef(st.shared, "shared", "i8", 0, [DYN], [1])  # aligned pointer: base
        return run

    # ---- memref
    def op_memref_view(self, o):
        src, shift, *sizes = self.ins(o)
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        shape, elt = memref_shape(t), memref_elt(t)
        if elt not in ("f16", "bf16", "f32"):
            raise SimError("only f16/bf16/f32 views of shared memory are modeled")
        unit = 2 if elt == "f32" else 1   # 2-byte units per element

        def run(st):
            m = st.env[src]
            b = uniform(st.env[shift], st, "view byte shift")
            if b % (2 * unit):
                raise SimError("misaligned view")
            # The shift lives in the aligned pointer (the result's layout offset is 0).
            st.env[out] = MemRef(m.buf, m.space, elt, b // 2, list(shape),
                                 [s * unit for s in identity_strides(shape)],
                                 ptr_elems=m.ptr_elems + b // 2, unit=unit)
        return run

    def op_memref_alloca(self, o):
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        shape = memref_shape(t)
        ety = re.match(r"memref<(?:[0-9]+x)*(vector<[^>]+>|[a-z0-9]+)", t).group(1)
        vt = parse_type(ety)

        def run(st):
            n = int(np.prod(shape))
            buf = np.zeros((st.T, n) + vt.shape, dtype=np_dtype(vt.kind))
            st.env[out] = MemRef(buf, "private", vt.kind, 0, list(shape), identity_strides(shape),
                                 stamps=np.full(n, -1, np.int64) if self.track else None)
        return run

    def op_memref_subview(self, o):
        src, *dyn = self.ins(o)
        out = self.slots_out1(o)
        offs = list(ir.DenseI64ArrayAttr(o.attributes["static_offsets"]))
        sizes = list(ir.DenseI64ArrayAttr(o.attributes["static_sizes"]))
        strides = list(ir.DenseI64ArrayAttr(o.attributes["static_strides"]))
        rtype = str(o.results[0].type)
        rshape = memref_shape(rtype)

        def run(st):
            m = st.env[src]
            it = iter(dyn)
            vals = []
            for group in (offs, sizes, strides):
                vals.append([uniform(st.env[next(it)], st, "subview operand") if x == DYN else x
                             for x in group])
            o_, s_, k_ = vals
            offset = m.offset + sum(a * b for a, b in zip(o_, m.strides))
            nstr = [a * b for a, b in zip(k_, m.strides)]
            # Rank reduction: drop unit dims not in the result.
            keep = [i for i, s in enumerate(s_) if not (s == 1 and len(s_) > len(rshape))]
            while len(keep) > len(rshape):
                for i in keep:
                    if s_[i] == 1:
                        keep.remove(i)
                        break
            st.env[out] = MemRef(m.buf, m.space, m.elt, offset, [s_[i] for i in keep],
                                 [nstr[i] for i in keep], ptr_elems=m.ptr_elems, stamps=m.stamps,
                                 unit=m.unit)
        return run

    def op_memref_cast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            st.env[out] = st.env[a]
        return run

    def op_memref_extract_aligned_pointer_as_index(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)

        def run(st):
            m = st.env[a]
            if m.space != "shared":
                raise SimError("extract_aligned_pointer_as_index is modeled for shared memory only")
            # Byte address in the shared window: the dynamic shared memory base
            # plus the byte shift of memref.view (2-byte elements).
            st.env[out] = np.full(st.T, m.buf.base + 2 * m.ptr_elems, np.int64)
        return run

    def op_memref_extract_strided_metadata(self, o):
        (a,), outs = self.ins(o), self.outs(o)
        rank = (len(outs) - 2) // 2

        def run(st):
            m = st.env[a]
            if len(m.sizes) != rank:
                raise SimError("extract_strided_metadata: rank mismatch")
            st.env[outs[0]] = MemRef(m.buf, m.space, m.elt, m.ptr_elems, [], [], ptr_elems=m.ptr_elems,
                                     stamps=m.stamps, unit=m.unit)
            # Elements past the aligned pointer (hardware: the layout offset);
            # offsets and strides in elements, not 2-byte units.
            st.env[outs[1]] = np.full(st.T, (m.offset - m.ptr_elems) // m.unit, np.int64)
            for i in range(rank):
                st.env[outs[2 + i]] = np.full(st.T, m.sizes[i], np.int64)
                st.env[outs[2 + rank + i]] = np.full(st.T, m.strides[i] // m.unit, np.int64)
        return run

    def op_memref_dim(self, o):
        m, d = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = np.full(st.T, st.env[m].sizes[uniform(st.env[d], st, "dim")], np.int64)
        return run

    def op_memref_load(self, o):
        m, *idx = self.ins(o)
        out = self.slots_out1(o)

        def run(st):
            mr = st.env[m]
            lin = mr.linear([st.env[i] for i in idx])
            if mr.space == "private":
                st.env[out] = mr.buf[np.arange(st.T), np.broadcast_to(lin, (st.T,))]
            elif mr.space == "global":
                safe = np.where(st.mask, lin, 0)
                st.env[out] = mr.buf[safe]
            else:
                # Shared (generic proxy), with the race checks of ldmatrix.
                t = np.nonzero(st.mask)[0]
                flat = np.broadcast_to(lin, (st.T,))[t]
                if flat.size and (flat.min() < 0 or flat.max() >= mr.buf.data.size):
                    raise SimError("memref.load outside dynamic shared memory")
                self._generic_read(st, flat, t, "memref.load")
                v = np.zeros(st.T, np.float32)
                v[t] = mr.buf.data[flat]
                st.env[out] = v.astype(np.float16) if mr.elt == "f16" else v
        return run

    def op_memref_store(self, o):
        v, m, *idx = self.ins(o)

        def run(st):
            mr = st.env[m]
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            val = st.env[v]
            if mr.space == "private":
                t = np.arange(st.T)[st.mask]
                mr.buf[t, lin[st.mask]] = np.asarray(val)[st.mask] if np.ndim(val) else val
            elif mr.space == "global":
                mr.buf[lin[st.mask]] = np.asarray(val)[st.mask]
            else:
                raise SimError("memref.store to shared memory is not modeled")
        return run

    def op_memref_dealloc(self, o):
        return lambda st: None

    def op_memref_expand_shape(self, o):
        src, *dyn = self.ins(o)
        out = self.slots_out1(o)
        oshape = list(ir.DenseI64ArrayAttr(o.attributes["static_output_shape"]))
        if dyn or DYN in oshape:
            raise SimError("memref.expand_shape with dynamic sizes is not modeled")
        reassoc = [[ir.IntegerAttr(d).value for d in ir.ArrayAttr(g)]
                   for g in ir.ArrayAttr(o.attributes["reassociation"])]

        def run(st):
            m = st.env[src]
            if len(reassoc) != len(m.sizes):
                raise SimError("expand_shape: reassociation does not match the source rank")
            sizes, strides = [], []
            for i, dims in enumerate(reassoc):
                if int(np.prod([oshape[d] for d in dims])) != m.sizes[i]:
                    raise SimError(f"expand_shape: {[oshape[d] for d in dims]} does not cover "
                                   f"source dim {i} of size {m.sizes[i]}")
                acc, ss = m.strides[i], []
                for d in reversed(dims):
                    ss.append(acc)
                    acc *= oshape[d]
                sizes += [oshape[d] for d in dims]
                strides += list(reversed(ss))
            st.env[out] = MemRef(m.buf, m.space, m.elt, m.offset, sizes, strides,
                                 ptr_elems=m.ptr_elems, stamps=m.stamps, unit=m.unit)
        return run
    def _generic_read(self, st: State, flat, reader, what: str):
        """Race checks of a generic-proxy read of shared elements `flat` by
        threads `reader` (same shape); records the reads."""
        sh = st.shared
        if np.any(sh.inflight[flat]):
            raise SimError(f"{what} reads shared memory a cp.async has not finished writing "
                           "(missing cp.async.wait_group)")
        if np.any(sh.tma_inflight[flat]):
            raise SimError(f"{what} reads shared memory a TMA load has not finished writing "
                           "(in flight: no mbarrier wait completed the phase that covers it)")
        self._check_tma_visible(st, flat, reader, what)
        raw = (sh.w_epoch[flat] == st.epoch) & (sh.w_thread[flat] != reader)
        if np.any(raw):
            raise SimError(f"{what} reads shared data another thread wrote since the last "
                           "barrier (missing barrier)")
        same = sh.r_epoch[flat] == st.epoch
        sh.r_thread[flat] = np.where(same & (sh.r_thread[flat] != reader), -2, reader)
        sh.r_epoch[flat] = st.epoch
