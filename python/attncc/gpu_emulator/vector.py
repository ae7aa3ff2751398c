"""Vector values and the llvm-dialect value ops (structs of registers,
constants, undef / poison, the ex2 and rcp intrinsics)."""
from __future__ import annotations

import numpy as np
from mlir import ir

from .machine import SimError, bf16_bits, parse_type, struct_len

class VectorOps:
    """vector.* and llvm.* value handlers (mixin of Program)."""

    # ---- vector
    def op_vector_extract(self, o):
        src, *dyn = self.ins(o)
        if dyn:
            raise SimError("dynamic vector.extract")
        pos = tuple(ir.DenseI64ArrayAttr(o.attributes["static_position"]))
        out = self.slots_out1(o)

        def run(st):
            st.env[out] = st.env[src][(slice(None),) + pos]
        return run

    def op_vector_insert(self, o):
        val, dst, *dyn = self.ins(o)
        if dyn:
            raise SimError("dynamic vector.insert")
        pos = tuple(ir.DenseI64ArrayAttr(o.attributes["static_position"]))
        out = self.slots_out1(o)

        def run(st):
            r = np.array(st.env[dst], copy=True)
            r[(slice(None),) + pos] = st.env[val]
            st.env[out] = r
        return run

    def op_vector_from_elements(self, o):
        ins, out = self.ins(o), self.slots_out1(o)
        shape = parse_type(str(o.results[0].type)).shape

        def run(st):
            st.env[out] = np.stack([np.broadcast_to(st.env[i], (st.T,)) for i in ins], axis=1).reshape((st.T,) + shape)
        return run

    def op_vector_to_elements(self, o):
        (a,), outs = self.ins(o), self.outs(o)

        def run(st):
            x = st.env[a].reshape(st.T, -1)
            for i, s in enumerate(outs):
                st.env[s] = x[:, i]
        return run

    def op_vector_broadcast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        shape = parse_type(str(o.results[0].type)).shape

        def run(st):
            x = np.asarray(st.env[a])
            st.env[out] = np.broadcast_to(x.reshape((st.T,) + (1,) * len(shape)), (st.T,) + shape).copy()
        return run

    def op_vector_bitcast(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        src_t = parse_type(str(o.operands[0].type))
        dst_t = parse_type(str(o.results[0].type))
        if not (src_t.kind in ("bf16", "f16") and src_t.shape == (2,) and dst_t.kind == "int"
                and dst_t.shape == (1,)):
            raise SimError("only vector<2xbf16|f16> -> vector<1xi32> bitcasts are modeled")

        def run(st):
            x = st.env[a]
            if src_t.kind == "bf16":
                b = bf16_bits(x)
            else:
                b = np.asarray(x).astype(np.float16).view(np.uint16).astype(np.uint32)
            st.env[out] = (b[:, 0] | (b[:, 1] << 16)).astype(np.int64).reshape(st.T, 1)
        return run

    def op_vector_store(self, o):
        v, m, *idx = self.ins(o)

        def run(st):
            mr = st.env[m]
            if mr.space != "global":
                raise SimError("vector.store outside global memory")
            x = st.env[v]
            lin = np.broadcast_to(mr.linear([st.env[i] for i in idx]), (st.T,))
            n = x.shape[1]
            t = np.nonzero(st.mask)[0]
            for e in range(n):
                mr.buf[lin[t] + e] = x[t, e]
        return run

    # ---- llvm / nvvm
    # The PTX approximations, modeled as the correctly rounded f32 result:
    # ex2.approx.ftz (max relative error 2^-22 on hardware), rcp.approx.ftz
    # (max 1 ulp) and lg2.approx.ftz. Subnormal inputs and results are not
    # flushed here. exp2 is
    # taken in f64 and rounded once: numpy's own f32 exp2 is not correctly
    # rounded where it dispatches to AVX-512 code (1 ulp off on such hosts).
    _INTRINSICS = {
        "llvm.nvvm.ex2.approx.ftz.f": lambda x: np.exp2(x.astype(np.float64)),
        "llvm.nvvm.ex2.approx.f": lambda x: np.exp2(x.astype(np.float64)),
        "llvm.nvvm.rcp.approx.ftz.f": lambda x: np.float32(1.0) / x,
        # lg2.approx.ftz: max absolute error 2^-22 on hardware (the mantissa's log).
        "llvm.nvvm.lg2.approx.ftz.f": lambda x: np.log2(x.astype(np.float64)),
    }

    def op_llvm_call_intrinsic(self, o):
        name = ir.StringAttr(o.attributes["intrin"]).value
        ins, out = self.ins(o), self.slots_out1(o)
        f = self._INTRINSICS.get(name)
        if f is None:
            raise SimError(f"intrinsic {name}")

        def run(st):
            with np.errstate(over="ignore", divide="ignore"):
                st.env[out] = f(st.env[ins[0]].astype(np.float32)).astype(np.float32)
        return run

    def op_llvm_extractvalue(self, o):
        (a,), out = self.ins(o), self.slots_out1(o)
        pos = list(ir.DenseI64ArrayAttr(o.attributes["position"]))

        def run(st):
            st.env[out] = st.env[a][pos[0]]
        return run

    def op_llvm_insertvalue(self, o):
        c, v = self.ins(o)
        out = self.slots_out1(o)
        pos = list(ir.DenseI64ArrayAttr(o.attributes["position"]))
        if len(pos) != 1:
            raise SimError("nested llvm.insertvalue positions are not modeled")

        def run(st):
            r = list(st.env[c])
            r[pos[0]] = st.env[v]
            st.env[out] = tuple(r)
        return run

    def _llvm_fill(self, o, value: float):
        out = self.slots_out1(o)
        t = str(o.results[0].type)
        n = struct_len(t)
        kind = parse_type(t)
        if n is None and (kind.kind not in ("f32", "int") or kind.shape):
            raise SimError(f"{o.name} of {t}")

        def run(st):
            if n is None:
                st.env[out] = np.full(st.T, value if kind.kind == "f32" else 0,
                                      np.float32 if kind.kind == "f32" else np.int64)
            else:
                st.env[out] = tuple(np.full(st.T, value, np.float32) for _ in range(n))
        return run

    def op_llvm_mlir_zero(self, o):
        return self._llvm_fill(o, 0.0)

    def op_llvm_mlir_undef(self, o):
        return self._llvm_fill(o, np.nan)  # reading it shows up as NaN

    op_llvm_mlir_poison = op_llvm_mlir_undef

    def op_llvm_mlir_constant(self, o):
        out = self.slots_out1(o)
        t = parse_type(str(o.results[0].type))
        attr = o.attributes["value"]
        if t.shape:
            raise SimError("vector llvm.mlir.constant")
        const = (np.float32(ir.FloatAttr(attr).value) if t.kind == "f32"
                 else np.int64(ir.IntegerAttr(attr).value))

        def run(st):
            st.env[out] = np.full(st.T, const)
        return run
