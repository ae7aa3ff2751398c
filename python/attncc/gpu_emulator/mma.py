"""Warp-level matrix ops: ldmatrix, mma.sync m16n8k16 (f16 / bf16
multiplicands, f32 accumulators), mma.sync m16n8k8 .tf32 and
cvt.rna.tf32.f32 (nvvm.convert.float.to.tf32). Which lane holds which element comes from
the PTX ISA tables of ptx_isa.py, not from attncc's C++."""
from __future__ import annotations

import numpy as np
from mlir import ir

from . import ptx_isa as isa
from .machine import SimError, State, bits_bf16, parse_type


def _table(f, n):
    """(rows [32, n], cols [32, n]) of a fragment table of ptx_isa."""
    t = np.array([[f(lane, i) for i in range(n)] for lane in range(32)], np.int64)
    return t[..., 0], t[..., 1]


_TF32_A = _table(isa.mma_tf32_a, 4)
_TF32_B = _table(isa.mma_tf32_b, 2)
_C_16x8 = _table(isa.mma_c, 4)


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

    @staticmethod
    def _mma_tf32(st: State, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
        """mma.m16n8k8 .tf32: A [T, 4], B [T, 2] (TF32 values as float32),
        C [T, 4] -> D [T, 4], per the m16n8k8 tables of ptx_isa."""
        W = st.T // 32
        a, b, c = _TF32_A, _TF32_B, _C_16x8
        Am = np.zeros((W, 16, 8), np.float64)
        Bm = np.zeros((W, 8, 8), np.float64)
        Cm = np.zeros((W, 16, 8), np.float64)
        Am[:, a[0], a[1]] = A.reshape(W, 32, 4)
        Bm[:, b[0], b[1]] = B.reshape(W, 32, 2)
        Cm[:, c[0], c[1]] = C.reshape(W, 32, 4)
        Dm = (Am @ Bm + Cm).astype(np.float32)
        st.stats["mma.tf32"] = st.stats.get("mma.tf32", 0) + 1
        return Dm[:, c[0], c[1]].reshape(st.T, 4)

    @staticmethod
    def _tf32_operand(st: State, x) -> np.ndarray:
        """A .b32 register read as a TF32 operand: only the upper 19 bits
        count (the PTX ISA expects TF32-format operands; the low 13 bits are
        dropped here); operands that had any of them set
        (not produced by cvt.rna.tf32.f32) are counted in stats, since
        rounding is then truncation, not round-to-nearest."""
        bits = np.asarray(x, np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        low = (bits & np.uint64(0x1FFF)) != 0
        if np.any(low):
            st.stats["tf32.unrounded"] = st.stats.get("tf32.unrounded", 0) + int(low.sum())
        return (bits & np.uint64(0xFFFFE000)).astype(np.uint32).view(np.float32)

    def op_nvvm_convert_float_to_tf32(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        rnd = str(o.attributes["rnd"]) if "rnd" in o.attributes else ""
        if "rna" not in rnd:
            raise SimError(f"nvvm.convert.float.to.tf32: only the rna rounding is modeled, got {rnd}")
        if "sat" in o.attributes and "none" not in str(o.attributes["sat"]):
            raise SimError("nvvm.convert.float.to.tf32: saturation is not modeled")

        def run(st):
            bits = np.asarray(st.env[a], np.float32).view(np.uint32)
            st.env[out] = isa.cvt_rna_tf32(bits).astype(np.int64)
        return run

    def op_nvvm_mma_sync(self, o):
        ins = self.ins(o)
        if len(ins) != 10:
            raise SimError("nvvm.mma.sync: expected 4 A, 2 B, 4 C operands")
        out = self.slots_out1(o)
        ptx_a = str(o.attributes["multiplicandAPtxType"]) if "multiplicandAPtxType" in o.attributes else ""
        shape = str(o.attributes["shape"])
        if "tf32" in ptx_a:
            if "k = 8" not in shape or "m = 16" not in shape or "n = 8" not in shape:
                raise SimError(f"nvvm.mma.sync .tf32: only m16n8k8 is modeled, got {shape}")
            ptx_b = (str(o.attributes["multiplicandBPtxType"])
                     if "multiplicandBPtxType" in o.attributes else "")
            if "tf32" not in ptx_b:
                raise SimError("nvvm.mma.sync: A is .tf32, B is not")

            def run_tf32(st):
                if not np.all(st.mask):
                    raise SimError("mma.sync in divergent control flow")
                A = np.stack([self._tf32_operand(st, st.env[i]) for i in ins[0:4]], 1)
                B = np.stack([self._tf32_operand(st, st.env[i]) for i in ins[4:6]], 1)
                C = np.stack([np.asarray(st.env[i], np.float32) for i in ins[6:10]], 1)
                D = self._mma_tf32(st, A, B, C)
                st.env[out] = tuple(D[:, i] for i in range(4))
            return run_tf32
        if "bf16" not in ptx_a or "k = 16" not in shape:
            raise SimError(f"nvvm.mma.sync: only bf16 m16n8k16 and tf32 m16n8k8 are modeled "
                           f"({ptx_a}, {shape})")

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
