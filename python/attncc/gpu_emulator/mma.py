"""Warp-level matrix ops: ldmatrix and mma.sync m16n8k16 (f16 / bf16
multiplicands, f32 accumulators). Which lane holds which element comes from
the PTX ISA tables of ptx_isa.py, not from attncc's C++."""
from __future__ import annotations

import numpy as np
from mlir import ir

from . import ptx_isa as isa
from .machine import SimError, State, bits_bf16, parse_type


class MmaOps:
    """nvgpu.ldmatrix, nvgpu.mma.sync, nvvm.mma.sync (mixin of Program)."""

    def op_nvgpu_ldmatrix(self, o):
        m, *idx = self.ins(o)
        out = self.slots_out1(o)
        tiles = ir.IntegerAttr(o.attributes["numTiles"]).value
        trans = ir.BoolAttr(o.attributes["transpose"]).value
        elt = parse_type(str(o.results[0].type)).kind
        # Per lane l and element (j, e): the address lane and the column offset.
        addr_lane = np.zeros((32, tiles, 2), np.int64)
        col_off = np.zeros((32, tiles, 2), np.int64)
        for lane in range(32):
            for j in range(tiles):
                for e in range(2):
                    r, c = isa.ldmatrix_element(lane, e, trans)
                    addr_lane[lane, j, e] = isa.ldmatrix_address_lane(j, r)
                    col_off[lane, j, e] = c

        def run(st):
            if not np.all(st.mask):
                raise SimError("ldmatrix in divergent control flow")
            mr = st.env[m]
            if mr.space != "shared":
                raise SimError("ldmatrix source must be shared memory")
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            W = st.T // 32
            lin_w = lin.reshape(W, 32)
            addrs = lin_w[:, addr_lane] + col_off[None]   # [W, 32, tiles, 2]
            if (lin_w % 8).any():
                raise SimError("ldmatrix row address not 16-byte aligned")
            flat = addrs.reshape(-1)
            sh = st.shared
            reader = np.repeat(np.arange(st.T), tiles * 2)
            self._generic_read(st, flat, reader, "ldmatrix")
            vals = sh.data[flat].reshape(st.T, tiles, 2)
            st.env[out] = vals.astype(np.float16) if elt == "f16" else vals
            st.stats["ldmatrix"] = st.stats.get("ldmatrix", 0) + 1
        return run
    @staticmethod
    def _mma(st: State, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
        """A: [T, 8] a0..a7, B: [T, 4] b0..b3, C: [T, 4] c0..c3 (float32) -> D [T, 4]."""
        W = st.T // 32
        Am = np.zeros((W, 16, 16), np.float32)
        Bm = np.zeros((W, 16, 8), np.float32)
        Cm = np.zeros((W, 16, 8), np.float32)
        A = A.reshape(W, 32, 8)
        B = B.reshape(W, 32, 4)
        C = C.reshape(W, 32, 4)
        for lane in range(32):
            for i in range(8):
                r, c = isa.mma_a(lane, i)
                Am[:, r, c] = A[:, lane, i]
            for i in range(4):
                r, c = isa.mma_b(lane, i)
                Bm[:, r, c] = B[:, lane, i]
                r, c = isa.mma_c(lane, i)
                Cm[:, r, c] = C[:, lane, i]
        Dm = (Am.astype(np.float64) @ Bm.astype(np.float64) + Cm).astype(np.float32)
        D = np.zeros((W, 32, 4), np.float32)
        for lane in range(32):
            for i in range(4):
                r, c = isa.mma_c(lane, i)
                D[:, lane, i] = Dm[:, r, c]
        st.stats["mma"] = st.stats.get("mma", 0) + 1
        return D.reshape(st.T, 4)

    def op_nvgpu_mma_sync(self, o):
        a, b, c = self.ins(o)
        out = self.slots_out1(o)
        shape = list(ir.ArrayAttr(o.attributes["mmaShape"]))
        if [ir.IntegerAttr(x).value for x in shape] != [16, 8, 16]:
            raise SimError("only m16n8k16 is modeled")

        def run(st):
            if not np.all(st.mask):
                raise SimError("mma.sync in divergent control flow")
            A = st.env[a].astype(np.float32).reshape(st.T, 8)   # [r][e] = a_{2r+e}
            B = st.env[b].astype(np.float32).reshape(st.T, 4)
            C = st.env[c].astype(np.float32).reshape(st.T, 4)
            st.env[out] = self._mma(st, A, B, C).reshape(st.T, 2, 2)
        return run

    def op_nvvm_mma_sync(self, o):
        ins = self.ins(o)
        if len(ins) != 10:
            raise SimError("nvvm.mma.sync: expected 4 A, 2 B, 4 C operands")
        out = self.slots_out1(o)

        def unpack(x):
            x = np.asarray(x, np.int64)
            return np.stack([bits_bf16(x & 0xFFFF), bits_bf16((x >> 16) & 0xFFFF)], 1)

        def run(st):
            if not np.all(st.mask):
                raise SimError("mma.sync in divergent control flow")
            A = np.concatenate([unpack(st.env[i]) for i in ins[0:4]], 1)
            B = np.concatenate([unpack(st.env[i]) for i in ins[4:6]], 1)
            C = np.stack([np.asarray(st.env[i], np.float32) for i in ins[6:10]], 1)
            D = self._mma(st, A, B, C)
            st.env[out] = tuple(D[:, i] for i in range(4))
        return run
